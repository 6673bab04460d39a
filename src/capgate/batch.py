"""Batch solving for `capgate solve`: many image files, read by the embedded OCR engine or
sent to a capgate server, with a progress bar, a summary, and answers as text, CSV or JSON.

Answers come out in the order the files were given, whatever order they finished in.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"})
FORMATS = ("text", "csv", "json")


@dataclass
class Answer:
    """What one file got: its answer, or the error that stopped it."""

    file: str
    answer: str | None
    confidence: float | None
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class TaskOptions:
    """What an ImageToText task may say about its answer (the vendors' options), read
    locally exactly as the server's OCR solver reads them."""

    numeric: int = 0  # 1: digits only, 2: letters only
    min_length: int = 0  # 0: no bound
    max_length: int = 0
    phrase: bool = False
    math: bool = False

    def check(self) -> None:
        """Raise ValueError, in one line, for options no task could mean."""
        if self.numeric not in (0, 1, 2):
            raise ValueError("numeric must be 0 (any), 1 (digits only) or 2 (letters only)")
        if not 0 <= self.min_length <= 64 or not 0 <= self.max_length <= 64:
            raise ValueError("the length limits must be between 0 (none) and 64")
        if self.max_length and self.min_length > self.max_length:
            raise ValueError(
                f"the minimum length ({self.min_length}) is above the maximum ({self.max_length})"
            )
        if self.phrase and self.math:
            raise ValueError("a task is a phrase or a sum, not both")

    def params(self) -> dict[str, Any]:
        """The options as a task's params (createTask's names), those that are set."""
        given = {
            "numeric": self.numeric,
            "minLength": self.min_length,
            "maxLength": self.max_length,
            "phrase": self.phrase,
            "math": self.math,
        }
        return {name: value for name, value in given.items() if value}


def image_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the images inside each folder named (sorted, recursively)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            found.append(path)  # A missing file is reported as that file's error.
    return found


async def solve_locally(
    files: list[Path],
    model: Path | None,
    threads: int = 1,
    options: TaskOptions | None = None,
) -> AsyncIterator[tuple[int, Answer]]:
    """Read each file with the embedded engine (in a thread, so the progress bar moves),
    within the task options as the server's OCR solver reads them."""
    from capgate.ocr.engine import OcrEngine
    from capgate.ocr.grammar import evaluate
    from capgate.solvers.ocr import constraints_for

    engine = OcrEngine(model, threads=threads)
    options = options or TaskOptions()
    constraints = constraints_for(options.params())

    def read(path: Path) -> Answer:
        started = time.perf_counter()
        try:
            result = engine.read(path.read_bytes(), constraints=constraints)
        except OSError as exc:
            return Answer(str(path), None, None, 0.0, exc.strerror or str(exc))
        except ValueError as exc:
            return Answer(str(path), None, None, time.perf_counter() - started, str(exc))
        seconds = time.perf_counter() - started
        text: str | None = result.text
        if options.math and result.text:
            text = evaluate(result.text)
            if text is None:  # As the server answers: the model read no sum.
                error = f"{result.text!r} is not a sum"
                return Answer(str(path), None, round(result.confidence, 4), seconds, error)
        return Answer(str(path), text, round(result.confidence, 4), seconds)

    for index, path in enumerate(files):
        yield index, await asyncio.to_thread(read, path)


async def solve_on_server(
    files: list[Path],
    server: str,
    key: str,
    concurrency: int,
    options: TaskOptions | None = None,
) -> AsyncIterator[tuple[int, Answer]]:
    """Send each file to a capgate server as an ImageToText task with `options`,
    `concurrency` at a time."""
    from capgate.client import AsyncClient, CaptchaError, ImageToText

    queue: asyncio.Queue[tuple[int, Answer]] = asyncio.Queue()
    slots = asyncio.Semaphore(max(1, concurrency))
    o = options or TaskOptions()

    async def one(client: AsyncClient, index: int, path: Path) -> None:
        async with slots:
            started = time.perf_counter()
            try:
                image = await asyncio.to_thread(path.read_bytes)
                task = ImageToText(
                    image,
                    numeric=o.numeric,
                    min_length=o.min_length,
                    max_length=o.max_length,
                    phrase=o.phrase,
                    math=o.math,
                )
                solution = await client.solve(task)
                answer = Answer(str(path), solution.value, None, time.perf_counter() - started)
            except OSError as exc:
                answer = Answer(str(path), None, None, 0.0, exc.strerror or str(exc))
            except CaptchaError as exc:
                answer = Answer(str(path), None, None, time.perf_counter() - started, str(exc))
            await queue.put((index, answer))

    async with AsyncClient(server, key) as client:
        jobs = [asyncio.create_task(one(client, i, p)) for i, p in enumerate(files)]
        try:
            for _ in files:
                yield await queue.get()
        finally:
            for job in jobs:
                job.cancel()


async def run(
    answers: AsyncIterator[tuple[int, Answer]],
    total: int,
    progress: bool,
    on_error: Callable[[Answer], None],
) -> list[Answer]:
    """Collect every answer in input order, drawing a progress bar on stderr if asked."""
    results: list[Answer | None] = [None] * total
    if not progress:
        async for index, answer in answers:
            results[index] = answer
            if answer.error:
                on_error(answer)
        return [a for a in results if a is not None]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        job = bar.add_task("solving", total=total)
        async for index, answer in answers:
            results[index] = answer
            if answer.error:
                bar.console.print(f"capgate: error: {answer.file}: {answer.error}")
            bar.advance(job)
    return [a for a in results if a is not None]


def render(answers: list[Answer], form: str) -> str:
    """The answers as text (one answer per line, empty for a failure), CSV or JSON."""
    if form == "json":
        return json.dumps([asdict(a) for a in answers], indent=2) + "\n"
    if form == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["file", "answer", "confidence", "seconds", "error"])
        for a in answers:
            confidence = "" if a.confidence is None else a.confidence
            writer.writerow([a.file, a.answer or "", confidence, f"{a.seconds:.4f}", a.error or ""])
        return out.getvalue()
    return "".join(f"{a.answer or ''}\n" for a in answers)


def summary(answers: list[Answer], seconds: float) -> str:
    """One line: how many, how many answered, how fast."""
    answered = sum(a.error is None for a in answers)
    rate = len(answers) / seconds if seconds > 0 else 0.0
    return (
        f"capgate: {len(answers)} images, {answered} answered,"
        f" {len(answers) - answered} failed in {seconds:.1f} s ({rate:.0f} images/s)"
    )


def stderr_is_terminal() -> bool:
    """Whether a progress bar can be drawn."""
    return sys.stderr.isatty()
