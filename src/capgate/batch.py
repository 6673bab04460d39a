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
    files: list[Path], model: Path | None, threads: int = 1
) -> AsyncIterator[tuple[int, Answer]]:
    """Read each file with the embedded engine (in a thread, so the progress bar moves)."""
    from capgate.ocr.engine import OcrEngine

    engine = OcrEngine(model, threads=threads)

    def read(path: Path) -> Answer:
        started = time.perf_counter()
        try:
            result = engine.read(path.read_bytes())
        except OSError as exc:
            return Answer(str(path), None, None, 0.0, exc.strerror or str(exc))
        except ValueError as exc:
            return Answer(str(path), None, None, time.perf_counter() - started, str(exc))
        seconds = time.perf_counter() - started
        return Answer(str(path), result.text, round(result.confidence, 4), seconds)

    for index, path in enumerate(files):
        yield index, await asyncio.to_thread(read, path)


async def solve_on_server(
    files: list[Path], server: str, key: str, concurrency: int
) -> AsyncIterator[tuple[int, Answer]]:
    """Send each file to a capgate server as an ImageToText task, `concurrency` at a time."""
    from capgate.client import AsyncClient, CaptchaError, ImageToText

    queue: asyncio.Queue[tuple[int, Answer]] = asyncio.Queue()
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(client: AsyncClient, index: int, path: Path) -> None:
        async with slots:
            started = time.perf_counter()
            try:
                image = await asyncio.to_thread(path.read_bytes)
                solution = await client.solve(ImageToText(image))
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
