"""`capgate sites`: what learning did for each site (docs/learning.md), read from the store,
so it shows the same whichever node it runs beside."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from capgate.config import load_settings
from capgate.learning.report import SiteView, gather_sites
from capgate.model import format_money
from capgate.store import store_from_url


def add_command(commands: Any, with_settings: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add `capgate sites` to the CLI's subcommands."""
    sites = commands.add_parser(
        "sites",
        help="per site: labels, its learned model, accuracy, local share, spend saved",
        description="Per site: labels kept, the model serving it, its held-out and live"
        " accuracy, the share answered locally and the upstream spend saved. With a SITE,"
        " its history of promotions, rejected candidates and demotions too.",
    )
    with_settings(sites)
    sites.add_argument("site", nargs="?", help="show this site's history")
    sites.set_defaults(run=_sites)


def _sites(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, overrides={"data": args.data, "store": args.store})

    async def read() -> list[SiteView]:
        store = store_from_url(settings.store, settings.data)
        await store.open()
        try:
            return await gather_sites(store, history=50 if args.site else 1)
        finally:
            await store.close()

    views = asyncio.run(read())
    if args.site:
        chosen = [v for v in views if v.site == args.site.lower()]
        if not chosen:
            print(f"no site {args.site} seen yet")
            return 1
        views = chosen
    if not views:
        print("no site seen yet (learning is off, or no image task named a site)")
        return 0
    print(
        f"{'site':<32} {'labels':>6} {'model':>5} {'held-out':>8} {'kept':>9}"
        f" {'live (audits)':>14} {'local':>6} {'by model':>8} {'upstream':>8} {'saved':>9}"
    )
    for v in views:
        live = f"{_share(v.live_accuracy)} ({v.audits})"
        model = f"v{v.model_version}" if v.model_version else "-"
        print(
            f"{v.site:<32} {v.labels:>6} {model:>5}"
            f" {_share(v.heldout_accuracy):>8} {v.kept_text():>9} {live:>14}"
            f" {_share(v.local_share):>6}"
            f" {v.by_model:>8} {v.upstream:>8} {format_money(v.saved):>9}"
        )
    print("kept: the held-out share the model answers itself (with agreeing answers too)")
    if args.site:
        for event in views[0].history:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event.at))
            print(
                f"{when} UTC  {event.kind:<8} v{event.version}  {event.labels} labels:"
                f" {event.reason}"
            )
    return 0


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
