"""The local OCR solver: image-to-text captchas read on the CPU in a process pool.

The recognizer is CPU-bound, so it runs in worker processes and the event loop never waits
on it. Each worker loads the engines of `ocr_engines` once (capgate's ONNX model, and
ddddocr where it is installed: `capgate.ocr.chain`) and runs them with one thread each.

An answer's confidence is the chain's: calibrated (the probability that it is right) for
the shipped model and ddddocr, the raw score for a fine-tuned model that has no
calibration. The dispatcher compares it with `ocr_min_confidence` and a task's
`recognizingThreshold`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import string
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capgate.learning.served import ServedModels
from capgate.model import ErrorCode, Solution, Task, TaskType
from capgate.ocr.chain import Chain, build, describe, resolve
from capgate.ocr.engine import Constraints, OcrEngine
from capgate.ocr.grammar import evaluate, phrase_grammar, sum_grammar
from capgate.solvers.base import SolveError, Solver

log = logging.getLogger("capgate.ocr")

_chain: Chain | None = None
_chain_model: Path | None = None
_engines: tuple[str, ...] = ("capgate",)
# Site models this worker has loaded, by file (a new version is a new file): the newest
# few only, since each holds an ONNX session.
_site_engines: OrderedDict[Path, OcrEngine] = OrderedDict()
SITE_ENGINES_KEPT = 8
_broken_site_models: set[Path] = set()  # told once; a new version is a new file


def _load_engine(model: Path | None = None, engines: Sequence[str] = ("capgate",)) -> None:
    global _chain, _chain_model, _engines
    _die_with_parent()
    chain = build(engines, model)
    chain.warm()
    _chain, _chain_model, _engines = chain, model, tuple(engines)


def _die_with_parent() -> None:
    """Have Linux kill this worker when the server dies, even by SIGKILL, so a crashed
    server leaves no orphan behind (the pool's own shutdown never runs then)."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # The server died before the line above took effect.
        os._exit(0)


@dataclass(frozen=True)
class SiteRead:
    """A site model to try first: its file, the raw score at or above which its answer
    stands, the confidence such an answer gets, its registry version, and the confidence
    of an answer under the threshold that the generalist chain read the same (None: such
    answers do not stand; see learning.rules.choose_agreement)."""

    path: Path
    threshold: float
    precision: float
    version: int
    agreement: float | None = None


def _read(
    image: bytes,
    constraints: Constraints,
    model: Path | None = None,
    site: SiteRead | None = None,
) -> tuple[str, float, int | None]:
    """(text, confidence, the site model's version if it answered). `model`: the
    generalist model the chain reads with (a change reloads the chain)."""
    if _chain is None or model != _chain_model:
        _load_engine(model, _engines)
    assert _chain is not None
    engine = _site_engine(site.path) if site is not None else None
    if site is not None and engine is not None:
        result = engine.read(image, constraints=constraints)  # ValueError: not an image
        if result.text and result.confidence >= site.threshold:
            return result.text, site.precision, site.version
        answer = _chain.read(image, constraints)
        if site.agreement is not None and result.text.lower() == answer.text.lower() != "":
            return result.text, site.agreement, site.version  # the site's own case
        return answer.text, answer.confidence, None
    answer = _chain.read(image, constraints)
    return answer.text, answer.confidence, None


def _site_engine(path: Path) -> OcrEngine | None:
    """The site model at `path`, loaded once; None if it cannot be loaded (the
    generalists then read its site's tasks, and the failure is logged)."""
    engine = _site_engines.get(path)
    if engine is None:
        if path in _broken_site_models:
            return None
        try:
            engine = OcrEngine(path, calibrated=False)
        except Exception:
            log.exception("the site model %s cannot be loaded; the generalists read", path)
            _broken_site_models.add(path)
            return None
        _site_engines[path] = engine
        while len(_site_engines) > SITE_ENGINES_KEPT:
            _site_engines.popitem(last=False)
    _site_engines.move_to_end(path)
    return engine


_SUM = sum_grammar()


def constraints_for(params: Mapping[str, Any]) -> Constraints:
    """What a task's options allow the decoder to answer.

    `numeric` as the vendors define it (1: digits only, 2: letters only), the length
    bounds `minLength` / `maxLength` (0 or absent: unbounded), `math` (a sum, read as one
    and then evaluated) and `phrase` (two or more words).
    """
    if _flag(params.get("math")):
        return Constraints(grammar=_SUM)
    numeric = params.get("numeric")
    allowed = (
        {1: string.digits, 2: string.ascii_letters}.get(numeric)
        if isinstance(numeric, int)
        else None
    )
    if _flag(params.get("phrase")):
        words = allowed or string.digits + string.ascii_letters
        return Constraints(allowed, grammar=phrase_grammar(words))
    return Constraints(allowed, _bound(params.get("minLength")), _bound(params.get("maxLength")))


def _flag(value: Any) -> bool:
    # The vendors' SDKs send true, 1 or "1" for an option that is on.
    return value is True or (not isinstance(value, bool) and value in (1, "1", "true"))


def _bound(value: Any) -> int:
    # Junk (null, "", false, negative numbers) means no bound, as the vendors treat it.
    if isinstance(value, bool) or not isinstance(value, int | str):
        return 0
    try:
        number = int(value)
    except ValueError:
        return 0
    return number if 0 < number <= 64 else 0


class OcrSolver(Solver):
    """Reads image-to-text captchas with the local engines: the shipped CRNN model (or
    the operator's), then ddddocr if `engines` has it ("auto": where it is installed).
    ValueError for an engine it does not know or cannot load."""

    name = "ocr"
    types = frozenset({TaskType.IMAGE_TO_TEXT})

    def __init__(
        self,
        processes: int = 1,
        model: Path | None = None,
        engines: Sequence[str] = ("auto",),
        served: ServedModels | None = None,
        site_of: Callable[[Task], Awaitable[str | None]] | None = None,
    ) -> None:
        self.processes = max(1, processes)
        self.model = model
        self.engines = resolve(engines)
        # The registry's models (docs/learning.md): a task's site model reads first, and
        # the operator's generalist model replaces `model` while one is serving.
        self.served = served
        self._site_of = site_of
        self._pool: ProcessPoolExecutor | None = None

    def accepts(self, task_type: TaskType, params: Mapping[str, Any]) -> bool:
        return task_type is TaskType.IMAGE_TO_TEXT

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: forking a process that runs an event loop and threads is unsafe.
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_load_engine,
            initargs=(self.model, self.engines),
        )

    async def start(self) -> None:
        log.info("local OCR engines: %s", describe(self.engines, self.model))
        self._pool = self._new_pool()
        # Warm every worker so the first task does not pay for loading the model.
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._pool, _noop) for _ in range(self.processes))
        )

    async def stop(self) -> None:
        if self._pool is not None:
            # Join the workers: a pool left behind leaks its semaphores at exit.
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: pool.shutdown(wait=True, cancel_futures=True)
            )

    async def solve(self, task: Task) -> Solution:
        if task.body is None:
            raise SolveError(ErrorCode.CAPTCHA_UNSOLVABLE, "The task has no image")
        if self._pool is None:
            raise SolveError(ErrorCode.INTERNAL, "The OCR engine is not running", retry=True)
        model, site = self.model, None
        if self.served is not None:
            default = self.served.default
            model = default.path if default is not None else self.model
            site_name = (
                await self._site_of(task) if self._site_of and self.served.has_sites else None
            )
            local = self.served.get(site_name)
            if local is not None:
                site = SiteRead(
                    local.path, local.threshold, local.precision, local.version, local.agreement
                )
        loop = asyncio.get_running_loop()
        try:
            text, confidence, version = await loop.run_in_executor(
                self._pool, _read, task.body, constraints_for(task.params), model, site
            )
        except ValueError as exc:
            raise SolveError(
                ErrorCode.CAPTCHA_UNSOLVABLE, f"The image cannot be read: {exc}"
            ) from None
        except BrokenProcessPool:
            # A worker died (killed, out of memory): start a fresh pool, let the task retry.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            raise SolveError(ErrorCode.INTERNAL, "The OCR worker died", retry=True) from None
        if not text:
            raise SolveError(ErrorCode.CAPTCHA_UNSOLVABLE, "No text was found in the image")
        if _flag(task.params.get("math")):
            value = evaluate(text)
            if value is None:  # The grammar reads only sums: a model that knows no signs.
                raise SolveError(ErrorCode.CAPTCHA_UNSOLVABLE, f"{text!r} is not a sum")
            text = value
        # A site with a model of its own, which was unsure: the generalists' answer waits
        # for upstream's (docs/learning.md).
        unsure = site is not None and version is None
        return Solution(text=text, confidence=confidence, site_model=version, unsure=unsure)


def _noop() -> None:
    """Runs in each worker once, forcing the initializer to load the model."""
