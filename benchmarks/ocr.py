"""OCR benchmark: accuracy and speed of capgate's model, ddddocr and the chain of both.

    .venv/bin/python benchmarks/ocr.py [--n 1000] [--ddddocr] [--realworld DIR] [--every 5]

Test images are made by `capgate.ocr.synth` with fixed seeds that training never uses:
set B is 4 characters of digits + uppercase, set A is 4-6 characters of digits + upper +
lower case, both in the `captcha` package's own font; the `-dejavu` sets draw the same
texts in Debian's DejaVu fonts, which the model never saw; `math` is sums (`12+7=?`, read with
the math option and scored on the value answered) and `phrase` two short words (read with
the phrase option, scored exactly). Images are read one at a time
(one onnxruntime thread), as the server does.

With --ddddocr (`pip install 'capgate[ddddocr]'`) the same images go through the ddddocr
engine (`capgate.ocr.ddddocr_engine`: ddddocr's recognizer, decoded by capgate) and
through the chain of both engines (`capgate.ocr.chain`, as the server runs it), and, on
real sets, through ddddocr's own API (`classification`) for comparison.

With --realworld, the labelled sets under DIR (each a folder with labels.csv and images/)
are read too, zero-shot, in two groups: the sets the calibrations were fitted on (named in
model.json and ddddocr.json), of which only the images no fit saw are read, and the sets
no fit saw. Of a set of more than 200 such images every --every'th is read (name order).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from capgate.ocr import synth
from capgate.ocr.calibration import split
from capgate.ocr.dataset import load_labelled
from capgate.ocr.engine import DEFAULT_MODEL, Constraints, OcrEngine
from capgate.ocr.grammar import evaluate
from capgate.ocr.model_files import split_holdout, trained_real_sets
from capgate.solvers.ocr import constraints_for

# The seed of each of synth.NAMED_SETS (training/calibrate.py uses others).
SEEDS = {"B": 12_345, "A": 23_456, "B-dejavu": 34_567, "A-dejavu": 45_678, "math": 56_789,
         "phrase": 67_890}  # fmt: skip
# A real set with more images than this is read every --every'th image.
SMALL_SET = 200

# Reads one image within a task's constraints: the text, and whether ddddocr read it
# (None: the reader is one engine).
Reader = Callable[[bytes, Constraints], tuple[str, bool | None]]
Samples = Sequence[tuple[bytes, str]]


def measure(name: str, engine: str, read: Reader, samples: Samples, kind: str = "text") -> None:
    """Read every sample one at a time and print one table row."""
    constraints = constraints_for({kind: True}) if kind != "text" else Constraints()
    read(samples[0][0], constraints)  # warm-up
    latencies = []
    exact = nocase = second = 0
    started = time.perf_counter()
    for png, label in samples:
        t0 = time.perf_counter()
        text, both = read(png, constraints)
        latencies.append((time.perf_counter() - t0) * 1000)
        if kind == "math":  # scored on the value answered
            text, label = evaluate(text) or "?", evaluate(label) or ""
        exact += text == label
        nocase += text.lower() == label.lower()
        second += bool(both)
    elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(samples)
    p99 = latencies[min(n - 1, int(n * 0.99))]
    ran = "" if engine != "chain" else f"{second / n:.0%}"
    print(
        f"| {name} | {engine} | {n} | {exact / n:.1%} | {nocase / n:.1%}"
        f" | {n / elapsed:.0f} | {statistics.median(latencies):.2f} | {p99:.2f} | {ran} |",
        flush=True,
    )


def fitted_images(name: str, count: int) -> set[int] | None:
    """The images of a real set (name order) that a shipped calibration was fitted on;
    None if no calibration was fitted on the set."""
    from capgate.ocr.ddddocr_engine import CALIBRATION

    fitted: set[int] = set()
    seen = False
    for path in (DEFAULT_MODEL.with_suffix(".json"), CALIBRATION):
        document = json.loads(path.read_text(encoding="utf-8"))
        for section in ("calibration", "chain"):
            images = document.get(section, {}).get("fitted_on", {}).get("images", {})
            half = images.get(name)
            if half is None:
                continue
            seen = True
            # training/calibrate.py read min(count, per_set) images and fitted on half.
            per_set = count if count <= 2 * half + 1 else 2 * half
            fitted |= split(count, per_set)[1]
    return fitted if seen else None


def realworld(root: Path, every: int, model: Path) -> tuple[dict[str, Samples], dict[str, Samples]]:
    """The labelled sets under `root`: those a calibration was fitted on (only the images
    no fit saw, and of a set the model trained on only its held-out images, as
    training/calibrate.py reads them) and those never seen, each {name: [(image bytes,
    label)]}."""
    fitted_sets: dict[str, Samples] = {}
    unseen: dict[str, Samples] = {}
    trained = trained_real_sets(model)  # the model measured, not the shipped one
    for labels in sorted(root.glob("*/labels.csv")):
        name = labels.parent.name
        samples = load_labelled(labels.parent)
        if name in trained:  # the model learnt the rest: only the held-out images count
            samples = split_holdout(samples, trained[name])[1]
        fitted = fitted_images(name, len(samples))
        kept = [(s.image, s.label) for i, s in enumerate(samples) if i not in (fitted or set())]
        if len(kept) > SMALL_SET:
            kept = kept[::every]
        (fitted_sets if fitted is not None else unseen)[name] = kept
    return fitted_sets, unseen


HEADER = (
    "| set | engine | images | exact | case-insensitive | images/s | p50 ms | p99 ms"
    " | ddddocr read |\n|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000, help="images per generated set")
    parser.add_argument("--ddddocr", action="store_true", help="also run ddddocr and the chain")
    parser.add_argument("--realworld", type=Path, help="folder of labelled real-world sets")
    parser.add_argument("--every", type=int, default=5, help="read every N-th real image")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="an ONNX model")
    args = parser.parse_args()

    engine = OcrEngine(args.model, threads=1)
    readers: dict[str, Reader] = {
        "capgate": lambda png, c: (engine.read(png, constraints=c).text, None)
    }
    own: Reader | None = None
    if args.ddddocr:
        import ddddocr

        from capgate.ocr.chain import build
        from capgate.ocr.ddddocr_engine import DdddocrEngine

        dddd = DdddocrEngine(threads=1)
        chain = build(("capgate", "ddddocr"), args.model)
        original = ddddocr.DdddOcr(show_ad=False)
        readers["ddddocr"] = lambda png, c: (dddd.read(png, constraints=c).text, None)

        def read_chain(png: bytes, c: Constraints) -> tuple[str, bool | None]:
            answer = chain.read(png, c)
            return answer.text, len(answer.readings) > 1

        readers["chain"] = read_chain
        own = lambda png, c: (str(original.classification(png)), None)  # noqa: E731

    print(f"model: {args.model}, {args.model.stat().st_size / 1e6:.2f} MB")
    print(HEADER)
    for name, seed in SEEDS.items():
        samples = synth.named_set(name, seed, args.n)
        if samples is None:
            continue
        kind = synth.NAMED_SETS[name][4]
        for engine_name, read in readers.items():
            measure(name, engine_name, read, samples, kind)
    if args.realworld is not None:
        fitted, unseen = realworld(args.realworld, args.every, args.model)
        if own is not None:
            readers["ddddocr, its own API"] = own
        for title, sets in (("fitted on (their other images)", fitted), ("never seen", unseen)):
            print(f"\nReal sets {title}:\n")
            print(HEADER)
            for name, real in sets.items():
                for engine_name, read in readers.items():
                    measure(name, engine_name, read, real)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
