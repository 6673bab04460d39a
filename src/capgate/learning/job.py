"""One training job for one site (docs/learning.md): fine-tune a model on the site's
labels, score it on a held-out slice against the site's current engine, and promote it
into the store's registry or record why not.

Run as its own low-priority process, one at a time across a deployment (the store's
`learning` lock):

    python -m capgate.learning.job --store URL --data DIR --site SITE [--model PATH]
        [--engines capgate,ddddocr] [--epochs N] [--threads 1] [--target 0.97]
        [--lock-seconds 120]

It needs torch (training/README.md, "Install the training stack"); serving never imports
this module. Everything it prints is plain lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capgate.learning.rules import SCORE_FLOOR, choose_agreement, choose_threshold, promotion
from capgate.ocr.dataset import Labelled, split
from capgate.ocr.engine import DEFAULT_MODEL, OcrEngine
from capgate.ocr.model_files import ModelFileError, resolve_base
from capgate.store.sites import DEFAULT_SITE, SiteStore

LOCK = "learning"  # the store's lock that one job at a time holds
FINETUNE_HOLDOUT = 0.15  # of the training part: what picks the epoch kept
READ_BATCH = 64  # held-out images per run of a model


@dataclass(frozen=True)
class JobOutcome:
    """What a job did: promoted `version` of the site's model (None: rejected), why (the
    line in the site's history), and the figures it measured."""

    site: str
    promoted: bool
    version: int | None
    reason: str
    figures: dict[str, Any]


class LockLost(RuntimeError):
    """Another holder took the learning lock while this job worked."""


def _print(line: str) -> None:
    print(line, flush=True)  # Flushed: a log file or a pipe shows each line as it comes.


def _right(text: str, label: str) -> bool:
    return text.lower() == label.lower()


async def train_site(
    store: SiteStore,
    site: str,
    *,
    model: Path | None = None,
    engines: Sequence[str] = ("capgate",),
    epochs: int = 20,
    threads: int = 1,
    target: float = 0.97,
    now: Callable[[], float] = time.time,
    log: Callable[[str], None] = _print,
) -> JobOutcome:
    """Train, score and promote (or reject) a candidate model for `site`.

    The site's labels, oldest first, are split: every fifth is held out to score on, the
    rest fine-tune `model` (a model folder or .onnx with its .json and .pt; None: the
    shipped model) for `epochs` passes, its own 15% picking the epoch kept. The candidate
    and the site's current engine (its serving model in the registry, else the generalist
    chain of `engines` on `model`, or on the registry's generalist model) read the
    held-out images; the candidate is promoted if it has a threshold that keeps its
    answers right `target` of the time and reads more of them right
    (`capgate.learning.rules`). `now` dates what the registry and history record.
    Raises ModelFileError if `model` cannot be fine-tuned from."""
    started = time.monotonic()
    # Never the site's serving model: as labels grow (and the oldest are dropped) the
    # fifth held out shifts, and a model that trained on some of today's held-out labels
    # would score itself, and choose its threshold, on answers it learnt by heart.
    base = resolve_base(model) if model is not None else DEFAULT_MODEL
    samples = [
        Labelled(f"task-{x.task_id}", x.image, x.text) for x in await store.site_labels(site)
    ]
    labels = len(samples)
    train, scoring = split(samples)
    del samples
    log(
        f"site {site}: {labels} labels, {len(train)} to train on,"
        f" {len(scoring)} held out to score the candidate"
    )
    figures: dict[str, Any] = {"labels": labels, "held_out": len(scoring)}
    if not scoring:
        return await _reject(
            store,
            site,
            f"rejected: {labels} labels are too few to train and score on",
            figures,
            now,
            log,
        )
    with tempfile.TemporaryDirectory(prefix="capgate-learning-") as tmp:
        folder = Path(tmp)
        candidate = folder / "candidate"
        try:
            report = await asyncio.to_thread(
                _finetune, train, candidate, base, epochs, threads, log
            )
        except ModelFileError:
            raise
        except ValueError as exc:
            return await _reject(
                store, site, f"rejected: cannot train on these labels: {exc}", figures, now, log
            )
        del train
        figures.update(
            train_images=report.train_images,
            finetune_held_out=report.test_images,
            skipped=report.skipped,
            epochs=report.epochs,
            best_epoch=report.best_epoch,
            accuracy_before=round(report.accuracy_before, 4),
            accuracy_after=round(report.accuracy_after, 4),
        )
        readings = await asyncio.to_thread(_readings, candidate / "model.onnx", scoring, threads)
        scored = [
            (score, _right(text, s.label))
            for (score, text), s in zip(readings, scoring, strict=True)
        ]
        candidate_right = sum(ok for _, ok in scored)
        generalists, chain_texts = await _read_generalists(
            store, scoring, folder, model, engines, threads
        )
        current = await _read_own_model(store, site, scoring, folder, threads, log)
        current_name, current_right = current or (
            generalists,
            sum(_right(text, s.label) for text, s in zip(chain_texts, scoring, strict=True)),
        )
        threshold = choose_threshold(scored, target, SCORE_FLOOR)
        promoted, reason = promotion(candidate_right, current_right, len(scoring), threshold)
        agreement = None
        if threshold is not None:
            agreeing = [
                (score, ok, bool(text) and text.lower() == chain.lower())
                for (score, ok), (_, text), chain in zip(scored, readings, chain_texts, strict=True)
            ]
            agreement = choose_agreement(agreeing, threshold, target)
        figures.update(
            candidate_right=candidate_right,
            current_right=current_right,
            current_engine=current_name,
            target=target,
            threshold=None if threshold is None else threshold.score,
            kept=0 if threshold is None else threshold.kept,
            coverage=0.0 if threshold is None else round(threshold.coverage, 4),
            precision=None if threshold is None else round(threshold.precision, 4),
            # Answers under the threshold that stand where the generalists read the same
            # (solvers/ocr.py); None: they go upstream.
            agreement_precision=None if agreement is None else round(agreement.precision, 4),
            agreed=0 if agreement is None else agreement.agreed,
            coverage_with_agreement=None if agreement is None else round(agreement.coverage, 4),
            seconds=round(time.monotonic() - started, 1),
        )
        log(
            f"site {site}: the candidate read {candidate_right}/{len(scoring)} held-out labels"
            f" right, the current engine ({current_name}) {current_right}/{len(scoring)}"
        )
        if not promoted or threshold is None:
            return await _reject(store, site, reason, figures, now, log)
        onnx, spec = await asyncio.to_thread(_candidate_files, candidate, site, figures)
    published = await store.publish_model(
        site,
        onnx,
        spec,
        threshold.score,
        threshold.precision,
        figures,
        now(),
        reason,
        labels=labels,
    )
    log(f"site {site}: model version {published.version} serves now; {reason}")
    return JobOutcome(site, True, published.version, reason, figures)


async def _reject(
    store: SiteStore,
    site: str,
    reason: str,
    figures: dict[str, Any],
    now: Callable[[], float],
    log: Callable[[str], None],
) -> JobOutcome:
    figures.setdefault("seconds", None)
    await store.reject_candidate(site, reason, now(), labels=figures["labels"])
    log(f"site {site}: {reason}")
    return JobOutcome(site, False, None, reason, figures)


def _candidate_files(folder: Path, site: str, figures: dict[str, Any]) -> tuple[bytes, bytes]:
    """The candidate's ONNX bytes, and its model.json with what the job measured."""
    document = json.loads((folder / "model.json").read_text())
    document["learned"] = {"site": site, **figures}
    return (folder / "model.onnx").read_bytes(), (json.dumps(document, indent=2) + "\n").encode()


def _finetune(
    train: Sequence[Labelled],
    out: Path,
    base: Path,
    epochs: int,
    threads: int,
    log: Callable[[str], None],
) -> Any:  # a FinetuneReport: torch is imported only here
    from capgate.ocr.training import finetune

    return finetune(
        train, out, base=base, epochs=epochs, holdout=FINETUNE_HOLDOUT, threads=threads, log=log
    )


def _readings(onnx: Path, scoring: Sequence[Labelled], threads: int) -> list[tuple[float, str]]:
    """(raw score, text) of a model's reading of each held-out image."""
    engine = OcrEngine(onnx, threads=threads, calibrated=False)
    read: list[tuple[float, str]] = []
    for i in range(0, len(scoring), READ_BATCH):
        results = engine.read_batch([s.image for s in scoring[i : i + READ_BATCH]])
        read.extend((r.confidence, r.text) for r in results)
    return read


def _read_candidate(
    onnx: Path, scoring: Sequence[Labelled], threads: int
) -> list[tuple[float, bool]]:
    """(raw score, right) of the candidate's reading of each held-out image."""
    return [
        (score, _right(text, s.label))
        for (score, text), s in zip(_readings(onnx, scoring, threads), scoring, strict=True)
    ]


def _count_model(onnx: Path, scoring: Sequence[Labelled], threads: int) -> int:
    return sum(ok for _, ok in _read_candidate(onnx, scoring, threads))


def _chain_texts(
    names: Sequence[str], model: Path | None, scoring: Sequence[Labelled], threads: int
) -> list[str]:
    from capgate.ocr.chain import build

    chain = build(names, model, threads=threads)
    texts: list[str] = []
    for s in scoring:
        try:
            texts.append(chain.read(s.image).text)
        except ValueError:  # an image an engine cannot take: no answer
            texts.append("")
    return texts


async def _read_generalists(
    store: SiteStore,
    scoring: Sequence[Labelled],
    folder: Path,
    model: Path | None,
    engines: Sequence[str],
    threads: int,
) -> tuple[str, list[str]]:
    """The generalist chain (named) as the server runs it, and its reading of each
    held-out image: the site's engine while it has no model of its own, and the second
    key of a site model's answers under its threshold (rules.choose_agreement)."""
    generalist = model
    default = (await store.serving_models()).get(DEFAULT_SITE)
    if generalist is None and default is not None and "capgate" in engines:
        generalist = await _fetch(store, DEFAULT_SITE, default.version, folder / "generalist")
    texts = await asyncio.to_thread(_chain_texts, engines, generalist, scoring, threads)
    return "+".join(engines), texts


async def _read_own_model(
    store: SiteStore,
    site: str,
    scoring: Sequence[Labelled],
    folder: Path,
    threads: int,
    log: Callable[[str], None],
) -> tuple[str, int] | None:
    """The site's serving model (named) and how many held-out images it reads right;
    None if it has none (the generalists are then its engine)."""
    own = (await store.serving_models()).get(site)
    if own is None:
        return None
    onnx = await _fetch(store, own.site, own.version, folder / "current")
    if onnx is None:
        log(f"site {site}: its model version {own.version} has no files; scoring the generalists")
        return None
    right = await asyncio.to_thread(_count_model, onnx, scoring, threads)
    return f"site model v{own.version}", right


async def _fetch(store: SiteStore, site: str, version: int, folder: Path) -> Path | None:
    """A registry version's files written to `folder`; its model.onnx (None if dropped)."""
    files = await store.model_files(site, version)
    if files is None:
        return None
    return await asyncio.to_thread(_write_model, folder, *files)


def _write_model(folder: Path, onnx: bytes, spec: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(onnx)
    (folder / "model.json").write_bytes(spec)
    return folder / "model.onnx"


# --- the process ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m capgate.learning.job",
        description="Train, score and promote (or reject) a model for one site.",
    )
    p.add_argument("--store", default="sqlite", help="store URL (default: %(default)s)")
    p.add_argument("--data", type=Path, default=Path("capgate-data"), help="data directory")
    p.add_argument("--site", required=True, help="the site to train a model for")
    p.add_argument("--model", type=Path, help="the model to fine-tune (default: the shipped one)")
    p.add_argument(
        "--engines", default="auto", help="the generalist engines, comma-separated (default: auto)"
    )
    p.add_argument("--epochs", type=int, default=20, help="passes (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default: %(default)s)")
    p.add_argument("--target", type=float, default=0.97, help="precision (default: %(default)s)")
    p.add_argument(
        "--lock-seconds", type=float, default=120.0, help="lock lease (default: %(default)s)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one job (see the module); 0 when it promoted or rejected a candidate, or when
    another job holds the lock; 1 when it failed; 2 for a bad argument."""
    args = _parser().parse_args(argv)
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: no os.nice here
        os.nice(19)
    from capgate.ocr.chain import resolve

    try:
        engines = resolve(args.engines.split(","))
        if args.model is not None:
            resolve_base(args.model)
    except ValueError as exc:
        print(f"capgate learning job: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        return asyncio.run(_run(args, engines))
    except Exception as exc:
        print(
            f"capgate learning job failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True
        )
        return 1


async def _run(args: argparse.Namespace, engines: Sequence[str]) -> int:
    from capgate.store import store_from_url

    store = store_from_url(args.store, Path(args.data))
    await store.open()
    try:
        holder = f"{socket.gethostname()}:{os.getpid()}"
        seconds = float(args.lock_seconds)
        if not await store.hold_lock(LOCK, holder, seconds, time.time()):
            _print(f"site {args.site}: another learning job holds the lock; nothing to do")
            return 0
        lost = threading.Event()

        def log(line: str) -> None:
            if lost.is_set():  # finetune logs every epoch: this stops it there
                raise LockLost("another holder took the learning lock")
            _print(line)

        renewing = asyncio.create_task(_renew(store, holder, seconds, lost))
        try:
            job = asyncio.create_task(
                train_site(
                    store,
                    args.site,
                    model=args.model,
                    engines=engines,
                    epochs=args.epochs,
                    threads=args.threads,
                    target=args.target,
                    log=log,
                )
            )
            try:
                await job
            except LockLost as exc:
                _print(f"site {args.site}: stopped: {exc}")
                return 1
            return 0
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            with contextlib.suppress(Exception):
                await store.release_lock(LOCK, holder)
    finally:
        await store.close()


async def _renew(store: SiteStore, holder: str, seconds: float, lost: threading.Event) -> None:
    """Renew the lock every third of its lease; set `lost` if another holder has it."""
    while True:
        await asyncio.sleep(seconds / 3)
        try:
            held = await store.hold_lock(LOCK, holder, seconds, time.time())
        except Exception as exc:  # The store is away for a moment: try again next time.
            _print(f"could not renew the learning lock: {exc}")
            continue
        if not held:
            _print("another holder took the learning lock: stopping")
            lost.set()
            return


if __name__ == "__main__":
    sys.exit(main())
