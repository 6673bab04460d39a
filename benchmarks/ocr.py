"""OCR benchmark: accuracy, speed and memory of the shipped model, beside ddddocr.

    .venv/bin/python benchmarks/ocr.py [--n 1000] [--ddddocr] [--realworld DIR]

Test images are made by `capgate.ocr.synth` with fixed seeds that training never uses:
set B is 4 characters of digits + uppercase, set A is 4-6 characters of digits + upper +
lower case, both in the `captcha` package's own font; the `-dejavu` sets draw the same
texts in Debian's DejaVu fonts, which the model never saw; `math` is sums (`12+7=?`, read with
the math option and scored on the value answered) and `phrase` two short words (read with
the phrase option, scored exactly). Images are read one at a time
(one onnxruntime thread), as the server does. With --ddddocr the same images go through
ddddocr (`pip install 'capgate[ddddocr]'`) in the same run. With --realworld, the labelled
sets under DIR (each a folder with labels.csv and images/) are read too, zero-shot, with and
without the decoder limited to digits.
"""

from __future__ import annotations

import argparse
import csv
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from capgate.ocr import synth
from capgate.ocr.engine import DEFAULT_MODEL, OcrEngine
from capgate.ocr.grammar import evaluate
from capgate.solvers.ocr import constraints_for

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
DEJAVU_FONTS = [
    str(DEJAVU / f) for f in ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")
]

SETS: dict[str, tuple[int, str, int, int, bool, str]] = {
    "B": (12_345, synth.CHARSET_B, 4, 4, False, "text"),
    "A": (23_456, synth.CHARSET_A, 4, 6, False, "text"),
    "B-dejavu": (34_567, synth.CHARSET_B, 4, 4, True, "text"),
    "A-dejavu": (45_678, synth.CHARSET_A, 4, 6, True, "text"),
    "math": (56_789, "", 0, 0, False, "math"),
    "phrase": (67_890, "", 0, 0, False, "phrase"),
}

Reader = Callable[[bytes], str]


def measure(name: str, engine: str, read: Reader, samples: Sequence[tuple[bytes, str]]) -> None:
    """Read every sample one at a time and print one table row."""
    read(samples[0][0])  # warm-up
    latencies = []
    exact = nocase = 0
    started = time.perf_counter()
    for png, label in samples:
        t0 = time.perf_counter()
        text = read(png)
        latencies.append((time.perf_counter() - t0) * 1000)
        exact += text == label
        nocase += text.lower() == label.lower()
    elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(samples)
    p99 = latencies[min(n - 1, int(n * 0.99))]
    print(
        f"| {name} | {engine} | {n} | {exact / n:.1%} | {nocase / n:.1%}"
        f" | {n / elapsed:.0f} | {statistics.median(latencies):.2f} | {p99:.2f} |",
        flush=True,
    )


def shaped(
    kind: str, engine_name: str, read: Reader, engine: OcrEngine, samples: list[tuple[bytes, str]]
) -> tuple[Reader, list[tuple[bytes, str]]]:
    """The reader and expected answers for a set: sums are scored on their value (capgate
    reads them with the math option; another engine's text is evaluated the same way), and
    phrases are read with the phrase option."""
    if kind == "text":
        return read, samples
    if engine_name == "capgate":
        options = constraints_for({kind: True})
        read = lambda png: engine.read(png, constraints=options).text  # noqa: E731
    if kind == "math":
        expected = [(png, evaluate(label) or "") for png, label in samples]
        return (lambda png: evaluate(read(png)) or "?"), expected
    return read, samples


def realworld(root: Path) -> dict[str, list[tuple[bytes, str]]]:
    """Every labelled set under `root`: {name: [(image bytes, label)]}."""
    sets = {}
    for labels in sorted(root.glob("*/labels.csv")):
        with labels.open() as f:
            rows = list(csv.DictReader(f))
        images = labels.parent / "images"
        sets[labels.parent.name] = [((images / r["file"]).read_bytes(), r["label"]) for r in rows]
    return sets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000, help="images per generated set")
    parser.add_argument("--ddddocr", action="store_true", help="also run ddddocr")
    parser.add_argument("--realworld", type=Path, help="folder of labelled real-world sets")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="an ONNX model")
    args = parser.parse_args()

    engine = OcrEngine(args.model, threads=1)
    readers: dict[str, Reader] = {"capgate": lambda png: engine.read(png).text}
    if args.ddddocr:
        import ddddocr

        dddd = ddddocr.DdddOcr(show_ad=False)
        readers["ddddocr"] = lambda png: str(dddd.classification(png))

    print(f"model: {args.model}, {args.model.stat().st_size / 1e6:.2f} MB")
    print("| set | engine | images | exact | case-insensitive | images/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (seed, charset, lo, hi, dejavu, kind) in SETS.items():
        if dejavu and not DEJAVU.is_dir():
            continue
        fonts = DEJAVU_FONTS if dejavu else None
        samples = synth.generate(seed, args.n, charset, lo, hi, fonts=fonts, kind=kind)
        for engine_name, read in readers.items():
            measure(name, engine_name, *shaped(kind, engine_name, read, engine, samples))
    if args.realworld is not None:
        readers["capgate, digits only"] = lambda png: engine.read(png, "0123456789").text
        for name, samples in realworld(args.realworld).items():
            for engine_name, read in readers.items():
                measure(name, engine_name, read, samples[: args.n])
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
