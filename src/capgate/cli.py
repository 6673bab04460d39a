"""The command line: capgate serve | keys | solve | worker | ocr (and the operator
commands of cli_admin: providers | tasks | doctor)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from capgate import __version__
from capgate.cli_admin import AdminError, add_commands
from capgate.cli_sites import add_command as add_sites_command
from capgate.clock import OffsetClock, SystemClock
from capgate.config import Settings, load_settings
from capgate.datafolder import secure_data_folder
from capgate.keys import check_chosen_key, hash_secret, new_secret
from capgate.logs import configure as configure_logging
from capgate.model import format_money, parse_money
from capgate.store import Store, store_from_url

DEFAULT_BOOTSTRAP_BALANCE = "10"


class CliError(Exception):
    """An error the user can fix, shown as one line."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the capgate command line and return its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except (CliError, AdminError, ValueError) as exc:
        print(f"capgate: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="capgate", description="A self-hosted captcha task gateway."
    )
    parser.add_argument("--version", action="version", version=f"capgate {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND")

    def with_settings(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="TOML config file")
        p.add_argument("--data", type=Path, help="data directory (default ./capgate-data)")
        p.add_argument("--store", help="store URL: sqlite (default), sqlite:///PATH, memory")

    serve = commands.add_parser("serve", help="run the server")
    with_settings(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the port (default 1)"
    )
    serve.add_argument(
        "--server",
        choices=HTTP_SERVERS,
        help="the HTTP server: granian (RSGI) or uvicorn (ASGI); default: the setting"
        " http_server (granian)",
    )
    serve.set_defaults(run=_serve)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(metavar="ACTION", required=True)
    create = key_commands.add_parser("create", help="create a key and print its secret")
    with_settings(create)
    create.add_argument("--balance", default="0", help="starting balance in USD (default 0)")
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument(
        "--worker", action="store_true", help="a worker key: may lease tasks (capgate worker)"
    )
    create.add_argument(
        "--dialect",
        help="the dialect the root paths speak for this key (default: the Anti-Captcha family)",
    )
    create.add_argument(
        "--allow-ip",
        action="append",
        default=[],
        metavar="CIDR",
        help="a network the key may be used from (repeatable; default: anywhere)",
    )
    create.add_argument(
        "--site",
        help="the site of this key's image tasks that name none (no websiteURL or module):"
        " what learning learns them as (docs/learning.md)",
    )
    create.set_defaults(run=_keys_create)
    listing = key_commands.add_parser("list", help="list keys, balances and spend")
    with_settings(listing)
    listing.set_defaults(run=_keys_list)

    solve = commands.add_parser(
        "solve", help="read captcha images: with the local OCR engine, or through a server"
    )
    solve.add_argument("images", nargs="+", type=Path, help="image files or folders of them")
    solve.add_argument(
        "--model",
        type=Path,
        help="read with this model: the folder `capgate ocr train` wrote, or its .onnx file"
        " (default: the shipped model)",
    )
    solve.add_argument(
        "--data",
        type=Path,
        metavar="SERVER_DATA",
        help="read with the model installed in this server data directory"
        " (`capgate ocr train --install`)",
    )
    solve.add_argument("--server", help="send the images to this capgate server instead")
    solve.add_argument("--key", help="the client API key for --server")
    solve.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="tasks at once on a server (default: %(default)s)",
    )
    solve.add_argument(
        "--format",
        default="text",
        help="text (one answer per line), csv or json (default: %(default)s)",
    )
    solve.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    options = solve.add_argument_group(
        "task options", "what a task may say about its answer, read as the server reads them"
    )
    options.add_argument(
        "--numeric",
        type=int,
        choices=(0, 1, 2),
        default=0,
        help="1: digits only, 2: letters only, 0: any (default: %(default)s)",
    )
    options.add_argument(
        "--min-length", type=int, default=0, help="the fewest characters (default: 0, any)"
    )
    options.add_argument(
        "--max-length", type=int, default=0, help="the most characters (default: 0, any)"
    )
    options.add_argument("--phrase", action="store_true", help="two or more words")
    options.add_argument("--math", action="store_true", help="a sum: answer with its value")
    solve.set_defaults(run=_solve)

    worker = commands.add_parser(
        "worker", help="lease image tasks from a capgate server and read them with local OCR"
    )
    worker.add_argument("--server", required=True, help="the server's base URL")
    worker.add_argument("--key", required=True, help="a worker key (keys create --worker)")
    worker.add_argument("--types", default="ImageToText", help="task types (only ImageToText)")
    worker.add_argument("--batch", type=int, default=8, help="tasks to lease at a time")
    worker.add_argument("--lease-seconds", type=float, default=30.0)
    worker.add_argument("--model", type=Path, help="an ONNX model other than the shipped one")
    worker.set_defaults(run=_worker)

    ocr = commands.add_parser("ocr", help="the local OCR model")
    ocr_commands = ocr.add_subparsers(metavar="ACTION", required=True)
    train = ocr_commands.add_parser(
        "train",
        help="fine-tune the model on your own labelled captchas (needs capgate[train])",
        description="Fine-tune the OCR model on your own labelled captchas, keep the epoch"
        " that reads the held-out images best, and write it to --out (training/README.md).",
    )
    train.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder of labelled images: labels.csv (file,label) or the label in each file name",
    )
    train.add_argument(
        "--out",
        type=Path,
        default=Path("capgate-ocr-model"),
        help="output folder; never replaced without --force (default: %(default)s)",
    )
    train.add_argument("--force", action="store_true", help="replace the model already in --out")
    train.add_argument(
        "--base",
        type=Path,
        help="the model to start from: a folder `capgate ocr train` wrote (or its .onnx),"
        " with its model.pt beside it (default: the shipped model)",
    )
    train.add_argument(
        "--epochs", type=int, default=20, help="passes over the images (default: %(default)s)"
    )
    train.add_argument(
        "--holdout",
        type=float,
        default=0.2,
        metavar="FRACTION",
        help="share of the images held out to measure and pick the best epoch, spread"
        " evenly in name order (default: %(default)s: every fifth)",
    )
    train.add_argument(
        "--batch", type=int, default=32, help="images per training step (default: %(default)s)"
    )
    train.add_argument(
        "--no-augment",
        action="store_true",
        help="train on the images as they are, not tilted, scaled and noised a little each"
        " epoch (augmentation reads held-out captchas better from a few hundred images)",
    )
    train.add_argument(
        "--lr", type=float, default=1e-3, help="the peak learning rate (default: %(default)s)"
    )
    train.add_argument(
        "--seed", type=int, default=0, help="seed of the shuffling (default: %(default)s)"
    )
    train.add_argument(
        "--threads",
        type=int,
        default=_cpus(),
        help="CPU threads (default: %(default)s, the CPUs this process may use)",
    )
    train.add_argument(
        "--install",
        type=Path,
        metavar="SERVER_DATA",
        help="also install the model for the server with this data directory",
    )
    train.set_defaults(run=_ocr_train)
    install = ocr_commands.add_parser(
        "install",
        help="serve a model on every node that shares this store, without a restart",
        description="Put a model in the store's model registry as the generalist model:"
        " every server node that shares the store reads image captchas with it within"
        " model_poll_seconds, without a restart (docs/learning.md). --shipped goes back to"
        " the model each node is configured with (ocr_model, or the shipped one).",
    )
    with_settings(install)
    chosen = install.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        "model", type=Path, nargs="?", help="the model: its folder or its .onnx (.json beside it)"
    )
    chosen.add_argument("--shipped", action="store_true", help="stop serving the installed model")
    install.set_defaults(run=_ocr_install)
    add_commands(commands, with_settings)
    add_sites_command(commands, with_settings)
    return parser


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    overrides = {"data": args.data, "store": args.store, **extra}
    return load_settings(args.config, overrides=overrides)


async def _with_store(settings: Settings) -> Store:
    store = store_from_url(settings.store, settings.data, durability=settings.durability)
    await store.open()
    return store


# --- serve ----------------------------------------------------------------------------


HTTP_SERVERS = ("granian", "uvicorn")


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args, host=args.host, port=args.port)
    server = args.server or settings.http_server
    if server not in HTTP_SERVERS:
        raise CliError(f"http_server: unknown server {server!r} (known: {', '.join(HTTP_SERVERS)})")
    # Refused before anything is written: a guessable key, or limits that mean nothing.
    check_chosen_key("admin_key", settings.admin_key)
    check_chosen_key("CAPGATE_BOOTSTRAP_KEY", os.environ.get("CAPGATE_BOOTSTRAP_KEY", ""))
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    if args.workers > 1 and (settings.store == "memory" or settings.test_clock):
        raise CliError("--workers needs a shared store and the real clock")
    if settings.request_read_timeout_seconds <= 0 or settings.keep_alive_seconds <= 0:
        raise CliError("request_read_timeout_seconds and keep_alive_seconds must be above 0")
    if settings.max_connections < 1:
        raise CliError("max_connections must be at least 1")
    secure_data_folder(settings.data, settings.store)
    configure_logging(settings.log_level, settings.log_format)
    if settings.store != "memory":
        asyncio.run(_bootstrap_key(settings))
    _announce_dashboard(settings)
    if server == "granian":
        return _serve_granian(args, settings)
    return _serve_uvicorn(args, settings)


def _serve_granian(args: argparse.Namespace, settings: Settings) -> int:
    """granian, through its RSGI interface (capgate.api.rsgi)."""
    from capgate.api import rsgi
    from capgate.api.app import App

    if args.workers == 1:
        clock = OffsetClock() if settings.test_clock else SystemClock()
        rsgi.serve(App(settings, clock))
    else:
        os.environ.update(settings_environment(args, settings))
        rsgi.serve_workers(settings, args.workers)
    return 0


def _serve_uvicorn(args: argparse.Namespace, settings: Settings) -> int:
    """uvicorn, through ASGI (capgate.api.app), with capgate's read deadlines."""
    import uvicorn

    from capgate.api.app import App
    from capgate.api.http import ReadDeadlineProtocol

    ReadDeadlineProtocol.configure(settings)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # uvicorn's httptools protocol, with a deadline on reading each request and a
        # bound on its headers (capgate.api.http).
        "http": "capgate.api.http:ReadDeadlineProtocol",
        "timeout_keep_alive": settings.keep_alive_seconds,
        "limit_concurrency": settings.max_connections,
        "lifespan": "on",
        "log_level": settings.log_level.lower(),
        "log_config": None,  # keep capgate's handlers: uvicorn logs through them
        "access_log": False,
        "server_header": False,
        "date_header": False,
    }
    if args.workers == 1:
        clock = OffsetClock() if settings.test_clock else SystemClock()
        uvicorn.Server(uvicorn.Config(App(settings, clock), **options)).run()
    else:
        # Each process builds its own app from the same settings, handed over as
        # environment variables that the child processes read back.
        os.environ.update(settings_environment(args, settings))
        uvicorn.run(
            "capgate.api.app:app_from_environment",
            factory=True,
            workers=args.workers,
            **options,
        )
    return 0


def _announce_dashboard(settings: Settings) -> None:
    """Make the admin key before any server process starts (so all share it); say where it
    is, never what it is: logs are no place for a secret."""
    from capgate.keys import admin_key

    admin_key(settings.admin_key, settings.data)
    where = "admin_key in the config" if settings.admin_key else settings.data / "admin.key"
    logging.getLogger("capgate").info(
        "dashboard at http://%s:%d/dashboard; log in with the admin key (%s)",
        settings.host,
        settings.port,
        where,
    )


def settings_environment(args: argparse.Namespace, settings: Settings) -> dict[str, str]:
    """The settings a command line gave, as the CAPGATE_* variables that rebuild them."""
    env = {"CAPGATE_DATA": str(settings.data.resolve()), "CAPGATE_STORE": settings.store}
    if args.config is not None:
        env["CAPGATE_CONFIG"] = str(Path(args.config).resolve())
    return env


async def _bootstrap_key(settings: Settings) -> None:
    """Make sure a new server can be used: create the bootstrap key, or a first key."""
    store = await _with_store(settings)
    try:
        wanted = os.environ.get("CAPGATE_BOOTSTRAP_KEY", "")
        balance = parse_money(
            os.environ.get("CAPGATE_BOOTSTRAP_BALANCE", "") or DEFAULT_BOOTSTRAP_BALANCE
        )
        now = SystemClock().now()
        if wanted:
            if await store.key_by_hash(hash_secret(wanted)) is None:
                await store.create_key("bootstrap", hash_secret(wanted), balance, now)
            return
        if await store.list_keys():
            return
        secret = new_secret()
        await store.create_key("first", hash_secret(secret), balance, now)
        print(
            f"capgate: created the first API key (balance {format_money(balance, 2)}):\n"
            f"    {secret}\n"
            "capgate: it is shown only this once; keep it (or create more with"
            " 'capgate keys create').",
            flush=True,
        )
    finally:
        await store.close()


# --- keys -----------------------------------------------------------------------------


def _keys_create(args: argparse.Namespace) -> int:
    from capgate.dialects import JSON_DIALECTS

    settings = _settings(args)
    balance = parse_money(args.balance)
    if balance < 0:
        raise CliError("a balance cannot be negative")
    if args.dialect is not None and args.dialect not in JSON_DIALECTS:
        raise CliError(f"unknown dialect {args.dialect!r}; known: {', '.join(JSON_DIALECTS)}")
    networks = []
    for given in args.allow_ip:
        try:
            networks.append(str(ipaddress.ip_network(given.strip(), strict=False)))
        except ValueError:
            raise CliError(f"--allow-ip {given!r} is not an address or a network (CIDR)") from None
    site = None
    if args.site is not None:
        from capgate.learning.sites import site_name

        site = site_name(args.site)
        if site is None:
            raise CliError(
                f"--site {args.site!r} is no site name: a host name or a model name"
                " (letters, digits, '.', '-', '_')"
            )
    secure_data_folder(settings.data, settings.store)

    async def create() -> str:
        store = await _with_store(settings)
        try:
            secret = new_secret()
            await store.create_key(
                args.name,
                hash_secret(secret),
                balance,
                SystemClock().now(),
                args.dialect,
                args.worker,
                networks,
                site=site,
            )
            return secret
        finally:
            await store.close()

    print(asyncio.run(create()))
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    secure_data_folder(settings.data, settings.store)

    async def listing() -> None:
        store = await _with_store(settings)
        try:
            keys = await store.list_keys()
        finally:
            await store.close()
        print(f"{'id':>4}  {'name':<16} {'hash':<14} {'balance':>12} {'spent':>12}  dialect")
        for key in keys:
            print(
                f"{key.id:>4}  {key.name[:16]:<16} {key.key_hash.hex()[:12] + '..':<14}"
                f" {format_money(key.balance):>12} {format_money(key.spent):>12}"
                f"  {key.dialect or 'anticaptcha'}{'  (worker)' if key.worker else ''}"
                + (f"  from {', '.join(key.allow_ips)}" if key.allow_ips else "")
            )

    asyncio.run(listing())
    return 0


# --- solve ----------------------------------------------------------------------------


def _solve(args: argparse.Namespace) -> int:
    from capgate import batch
    from capgate.ocr.model_files import installed_model, resolve_model

    if args.format not in batch.FORMATS:
        raise CliError(f"--format must be one of {', '.join(batch.FORMATS)}")
    if args.server and not args.key:
        raise CliError("--server needs --key (a client API key)")
    if args.server and (args.model or args.data):
        raise CliError("--model and --data pick a local model: not with --server")
    if args.model and args.data:
        raise CliError("give --model or --data, not both")
    options = batch.TaskOptions(
        args.numeric, args.min_length, args.max_length, args.phrase, args.math
    )
    options.check()
    model = None
    if args.model:
        model = resolve_model(args.model)
    elif args.data:
        model = installed_model(args.data)
        if model is None and not args.quiet:
            print(
                f"capgate: no model installed in {args.data / 'ocr'}; reading with the shipped one",
                file=sys.stderr,
            )
    files = batch.image_files(args.images)
    if not files:
        raise CliError("no images found in what was given")
    answers = (
        batch.solve_on_server(files, args.server, args.key, args.concurrency, options)
        if args.server
        else batch.solve_locally(files, model, options=options)
    )
    progress = batch.stderr_is_terminal() and not args.quiet

    def error(answer: batch.Answer) -> None:
        print(f"capgate: error: {answer.file}: {answer.error}", file=sys.stderr)

    started = time.perf_counter()
    results = asyncio.run(batch.run(answers, len(files), progress, error))
    sys.stdout.write(batch.render(results, args.format))
    if not args.quiet:
        print(batch.summary(results, time.perf_counter() - started), file=sys.stderr)
    return 1 if any(a.error for a in results) else 0


def _worker(args: argparse.Namespace) -> int:
    from capgate.remote_worker import RemoteWorker

    types = [t.strip() for t in args.types.split(",") if t.strip()]
    if types != ["ImageToText"]:
        raise CliError("this worker reads images: --types ImageToText")
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with RemoteWorker(
        args.server, args.key, batch=args.batch, lease_seconds=args.lease_seconds, model=args.model
    ) as worker:
        worker.run_forever()
    return 0


def _cpus() -> int:
    """The CPUs this process may run on (`capgate ocr train --threads`'s default)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


MODEL_FILES = ("model.json", "model.pt", "model.onnx")  # .onnx last: it is what servers look for


def _ocr_train(args: argparse.Namespace) -> int:
    from capgate.ocr.engine import DEFAULT_MODEL
    from capgate.ocr.model_files import load_training_data, resolve_base

    # Everything that can be wrong with what was given is told before any training starts.
    for name, value, low in (("epochs", args.epochs, 1), ("batch", args.batch, 1)):
        if value < low:
            raise CliError(f"--{name} must be at least {low}")
    if args.threads < 1:
        raise CliError("--threads must be at least 1")
    if not 0 < args.holdout < 1:
        raise CliError("--holdout must be a fraction between 0 and 1, such as 0.2")
    if not args.lr > 0:
        raise CliError("--lr must be above 0")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file, not a folder")
    if not args.force and any((out / name).exists() for name in MODEL_FILES):
        raise CliError(f"{out} already holds a model: give another --out, or --force to replace it")
    if args.install is not None and args.install.exists() and not args.install.is_dir():
        raise CliError(f"--install {args.install} is a file, not a server data directory")
    base = resolve_base(args.base or DEFAULT_MODEL)
    samples = load_training_data(args.data)
    try:
        from capgate.ocr.augment import AUGMENTATION
        from capgate.ocr.training import duration, finetune
    except ImportError as exc:
        raise CliError(
            f"training needs torch and onnx ({exc}); training/README.md says how to install"
            " them for the CPU"
        ) from None
    report = finetune(
        samples,
        out,
        base=base,
        epochs=args.epochs,
        batch=args.batch,
        lr=args.lr,
        holdout=args.holdout,
        threads=args.threads,
        seed=args.seed,
        augmentation=None if args.no_augment else AUGMENTATION,
    )
    kept = (
        f"epoch {report.best_epoch} of {report.epochs} kept"
        if report.best_epoch
        else "no epoch beat the starting model: kept it"
    )
    print(
        f"trained on {report.train_images} images, held out {report.test_images}"
        f" ({report.skipped} skipped: labels outside the alphabet) in"
        f" {duration(report.seconds)}; held-out exact match {report.accuracy_before:.1%} ->"
        f" {report.accuracy_after:.1%} ({kept})"
    )
    print(f"model written to {out} (try it: capgate solve --model {out} IMAGES...)")
    if args.install is not None:
        secure_data_folder(args.install)
        target = args.install / "ocr"
        replaced = (target / "model.onnx").exists()
        target.mkdir(parents=True, exist_ok=True)
        for name in MODEL_FILES:
            shutil.copyfile(out / name, target / name)
        version = _publish_installed(args.install, ModelFiles.read(target / "model.onnx"))
        served = (
            f"the servers of its store serve it as version {version} within seconds, no restart"
            if version is not None
            else "a server started with it reads with it"
        )
        print(
            f"installed for the server with data directory {args.install}"
            f"{', replacing the model there' if replaced else ''} ({served});"
            f" read with it: capgate solve --data {args.install} IMAGES..."
        )
    return 0


def _publish_installed(data: Path, model: ModelFiles) -> int | None:
    """Publish a model installed in `data` to the SQLite store there, if it has one (a
    server with another store: `capgate ocr install`). Its registry version, or None."""
    if not (data / "capgate.db").is_file():
        return None

    async def publish() -> int:
        store = store_from_url("sqlite", data)
        await store.open()
        try:
            return await _publish_default(store, model)
        finally:
            await store.close()

    return asyncio.run(publish())


async def _publish_default(store: Store, model: ModelFiles) -> int:
    from capgate.store.sites import DEFAULT_SITE

    published = await store.publish_model(
        DEFAULT_SITE,
        model.onnx,
        model.spec,
        threshold=0.0,
        precision=0.0,
        scores={"source": model.source},
        now=time.time(),
        reason=f"installed from {model.source}",
        labels=0,
    )
    return published.version


@dataclasses.dataclass(frozen=True)
class ModelFiles:
    """A model's files, read before an async step needs them."""

    onnx: bytes
    spec: bytes
    source: str

    @classmethod
    def read(cls, onnx: Path) -> ModelFiles:
        return cls(onnx.read_bytes(), onnx.with_suffix(".json").read_bytes(), str(onnx.resolve()))


def _ocr_install(args: argparse.Namespace) -> int:
    from capgate.ocr.model_files import ModelFileError, resolve_model
    from capgate.store.sites import DEFAULT_SITE

    settings = _settings(args)
    model = None
    if not args.shipped:
        try:
            model = ModelFiles.read(resolve_model(args.model))
        except ModelFileError as exc:
            raise CliError(str(exc)) from None

    async def run() -> str:
        store = await _with_store(settings)
        try:
            if model is not None:
                version = await _publish_default(store, model)
                return (
                    f"model {model.source} is version {version} of the generalist model in store"
                    f" {settings.store}: every node serves it within"
                    f" {settings.model_poll_seconds:g} s"
                )
            serving = (await store.serving_models()).get(DEFAULT_SITE)
            if serving is None:
                return "no installed model is serving: the nodes read with their own already"
            await store.demote_model(
                DEFAULT_SITE, serving.version, "back to the configured model", time.time()
            )
            return (
                f"version {serving.version} no longer serves: every node reads with its"
                " configured model (ocr_model, or the shipped one) within"
                f" {settings.model_poll_seconds:g} s"
            )
        finally:
            await store.close()

    print(asyncio.run(run()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
