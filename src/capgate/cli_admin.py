"""Operator commands: `capgate providers`, `capgate tasks` (read a running server's
/admin/overview) and `capgate doctor` (checks this machine's config, store, OCR and
providers without starting a server)."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec

from capgate.config import Settings, load_settings
from capgate.datafolder import secure_data_folder
from capgate.keys import check_chosen_key
from capgate.model import format_money
from capgate.overview import Overview
from capgate.store.sites import DEFAULT_SITE


class AdminError(Exception):
    """A problem the operator can fix, shown as one line."""


def add_commands(commands: Any, with_settings: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the operator commands to the CLI's subcommands."""
    providers = commands.add_parser(
        "providers", help="solvers and providers of a running server: health, latency, spend"
    )
    _with_server(providers)
    providers.set_defaults(run=_providers)

    tasks = commands.add_parser("tasks", help="recent tasks of a running server")
    _with_server(tasks)
    tasks.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    tasks.add_argument("--failed", action="store_true", help="only failed tasks")
    tasks.set_defaults(run=_tasks)

    doctor = commands.add_parser(
        "doctor", help="check the config, the store, the OCR engine and every provider"
    )
    with_settings(doctor)
    doctor.set_defaults(run=_doctor)


def _with_server(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default="http://127.0.0.1:8080", help="the server's base URL")
    parser.add_argument(
        "--admin-key",
        help="the admin key (default: $CAPGATE_ADMIN_KEY, else DATA/admin.key)",
    )
    parser.add_argument(
        "--data", type=Path, default=Path("capgate-data"), help="where to find admin.key"
    )


def _overview(args: argparse.Namespace, recent: int = 20) -> Overview:
    key = args.admin_key or os.environ.get("CAPGATE_ADMIN_KEY", "")
    if not key:
        path = args.data / "admin.key"
        if not path.exists():
            raise AdminError("no admin key: pass --admin-key, set CAPGATE_ADMIN_KEY or --data")
        key = path.read_text().strip()
    url = args.server.rstrip("/") + "/admin/overview"
    try:
        response = httpx.get(
            url, params={"recent": recent}, headers={"authorization": f"Bearer {key}"}
        )
    except httpx.HTTPError as exc:
        raise AdminError(f"cannot reach {args.server}: {exc}") from None
    if response.status_code == 401:
        raise AdminError(f"{args.server} refused the admin key")
    if response.status_code != 200:
        raise AdminError(f"{url} answered HTTP {response.status_code}")
    try:
        return msgspec.json.decode(response.content, type=Overview)
    except msgspec.DecodeError as exc:
        raise AdminError(f"{url} answered something that is not an overview: {exc}") from None


def _providers(args: argparse.Namespace) -> int:
    overview = _overview(args)
    print(
        f"{'solver':<20} {'kind':<9} {'breaker':<10} {'answered':>8} {'failed':>7}"
        f" {'success':>8} {'p50':>9} {'p90':>9} {'spend':>10}"
    )
    for s in overview.solvers:
        success = "-" if s.success_ratio is None else f"{s.success_ratio:.0%}"
        print(
            f"{s.name:<20} {s.kind:<9} {s.breaker:<10} {s.answered:>8} {s.failed:>7}"
            f" {success:>8} {_secs(s.p50_seconds):>9} {_secs(s.p90_seconds):>9}"
            f" {format_money(s.spend):>10}"
        )
    print(f"queue depth {overview.queue_depth}; figures over the server's last 1000 tasks")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    overview = _overview(args, recent=max(1, min(args.limit, 1000)))
    tasks = overview.failures if args.failed else overview.recent
    print(
        f"{'id':>8}  {'created':<8} {'type':<22} {'status':<8} {'solver':<16} {'tries':>5}  error"
    )
    for t in tasks[: args.limit]:
        created = time.strftime("%H:%M:%S", time.gmtime(t.created_at))
        error = f"{t.error_code}: {t.error_description}" if t.error_code else ""
        print(
            f"{t.id:>8}  {created:<8} {t.type:<22} {t.status:<8} {(t.solver or '-'):<16}"
            f" {t.attempts:>5}  {error}"
        )
    return 0


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


# --- doctor -----------------------------------------------------------------------------


def _doctor(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, overrides={"data": args.data, "store": args.store})
    except ValueError as exc:
        print(f"FAIL config: {exc}")
        return 1
    try:
        check_chosen_key("admin_key", settings.admin_key)
        # The store check below opens (maybe creates) the data: the owner's alone.
        secure_data_folder(settings.data, settings.store)
    except ValueError as exc:
        print(f"FAIL config: {exc}")
        return 1
    print(f"ok   config: {args.config or 'defaults'}; data {settings.data}; store {settings.store}")
    results = asyncio.run(_checks(settings))
    for ok, line in results:
        print(f"{'ok  ' if ok else 'FAIL'} {line}")
    failed = sum(not ok for ok, _ in results)
    print("all checks passed" if not failed else f"{failed} check(s) failed")
    return 1 if failed else 0


async def _checks(settings: Settings) -> list[tuple[bool, str]]:
    results: list[tuple[bool, str]] = [await _check_store(settings)]
    if settings.ocr:
        results.append(_check_ocr(settings))
    for provider in settings.providers:
        results.append(await _check_provider(settings, provider.name))
    return results


async def _check_store(settings: Settings) -> tuple[bool, str]:
    from capgate.store import store_from_url

    try:
        store = store_from_url(settings.store, settings.data)
        await store.open()
        try:
            keys, depth = len(await store.list_keys()), await store.queue_depth()
            serving = await store.serving_models()
        finally:
            await store.close()
    except Exception as exc:
        return False, f"store {settings.store}: {type(exc).__name__}: {exc}"
    installed = serving.pop(DEFAULT_SITE, None)
    generalist = (
        f"version {installed.version} of the registry ({installed.scores.get('source', '?')})"
        if installed is not None
        else "the configured one (no model installed in the registry)"
    )
    sites = ", ".join(f"{site} v{m.version}" for site, m in sorted(serving.items())[:10])
    return True, (
        f"store {settings.store}: {keys} keys, {depth} tasks queued; every node reads with"
        f" the generalist model {generalist}; {len(serving)} site models serving"
        f"{': ' + sites if sites else ''}"
    )


def _check_ocr(settings: Settings) -> tuple[bool, str]:
    import io

    from PIL import Image, ImageDraw

    from capgate.ocr.engine import OcrEngine

    try:
        started = time.perf_counter()
        engine = OcrEngine(settings.ocr_model_path, threads=1)
        image = Image.new("RGB", (120, 40), "white")
        ImageDraw.Draw(image).text((10, 12), "A7K2", fill="black")
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        engine.read(buffer.getvalue())
        seconds = time.perf_counter() - started
    except Exception as exc:
        return False, f"ocr: the model cannot run: {type(exc).__name__}: {exc}"
    model = settings.ocr_model_path or "the shipped model"
    from capgate.ocr.chain import describe, resolve

    try:
        engines = describe(resolve(settings.ocr_engines), settings.ocr_model_path)
    except ValueError as exc:
        return False, f"ocr: {exc}"
    return True, f"ocr: {model} loads and reads ({seconds * 1000:.0f} ms); engines: {engines}"


async def _check_provider(settings: Settings, name: str) -> tuple[bool, str]:
    from capgate.providers.upstream import UpstreamProvider

    config = next(p for p in settings.providers if p.name == name)
    if not config.api_key:
        return False, f"provider {name}: ${config.key_env or '(key_env)'} is not set"
    provider = UpstreamProvider(config)
    try:
        await provider.start()
        balance = await provider.balance()
    except Exception as exc:
        return False, f"provider {name} ({provider.base_url}): {exc}"
    finally:
        await provider.stop()
    shown = "no balance method" if balance is None else f"balance {balance:.4f}"
    return True, f"provider {name} ({config.kind}, {provider.base_url}): reachable, {shown}"
