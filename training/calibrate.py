"""Fit the OCR model's confidence calibration and report how well it holds.

    .venv/bin/python training/calibrate.py --realworld ../shared/data/realworld [--write]

Reads labelled images with the engine's raw scores: generated captchas (`capgate.ocr.synth`,
seeds 500,000-500,005, which neither training, tests nor benchmarks use) and the real sets
named by --fit under --realworld. Each set is shuffled and cut in two halves by image: the
calibration is fitted (isotonic regression, `capgate.ocr.calibration.fit`) on the first
halves, and its reliability is reported on the second halves and on the --check sets,
which the fit never sees. --write stores the knots in the model's JSON (the shipped
model's by default); the engine reads them on its next start.

Every set counts the same (at most --per-set images each), so the mix the calibration
holds for is a choice, printed with it: generated captchas and zero-shot real ones.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import string
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from capgate.ocr import synth
from capgate.ocr.calibration import (
    Bin,
    Calibration,
    expected_calibration_error,
    fit,
    reliability,
)
from capgate.ocr.dataset import load_labelled
from capgate.ocr.engine import DEFAULT_MODEL, OcrEngine
from capgate.ocr.grammar import evaluate
from capgate.solvers.ocr import constraints_for

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
DEJAVU_FONTS = [
    str(DEJAVU / f) for f in ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")
]
# name: (seed, charset, shortest, longest, DejaVu fonts, kind), as benchmarks/ocr.py's
# sets but with seeds of their own.
GENERATED: dict[str, tuple[int, str, int, int, bool, str]] = {
    "B": (500_000, synth.CHARSET_B, 4, 4, False, "text"),
    "A": (500_001, synth.CHARSET_A, 4, 6, False, "text"),
    "B-dejavu": (500_002, synth.CHARSET_B, 4, 4, True, "text"),
    "A-dejavu": (500_003, synth.CHARSET_A, 4, 6, True, "text"),
    "math": (500_004, "", 0, 0, False, "math"),
    "phrase": (500_005, "", 0, 0, False, "phrase"),
}
FIT = ("cloud4d", "henan4d", "tjsp5")
CHECK = ("hfut4", "weibo4", "ems6", "tongji4")
# Sets whose labels lost their case (their SOURCE.md): the sites compare without it.
CASELESS = {"tjsp5", "hfut4"}
SPLIT_SEED = 0


@dataclass(frozen=True)
class Reading:
    """One image read one way: its set, how it was read, its raw score, and whether the
    answer was right."""

    image: int  # index in its set: both halves of a split hold whole images
    mode: str
    raw: float
    right: bool


@dataclass
class LabelledSet:
    name: str
    samples: list[tuple[bytes, str]]
    modes: dict[str, dict[str, Any]]  # mode name -> task options
    kind: str = "text"


def generated(per_set: int) -> list[LabelledSet]:
    sets = []
    for name, (seed, charset, lo, hi, dejavu, kind) in GENERATED.items():
        if dejavu and not DEJAVU.is_dir():
            print(f"skipping {name}: no DejaVu fonts in {DEJAVU}", file=sys.stderr)
            continue
        fonts = DEJAVU_FONTS if dejavu else None
        samples = synth.generate(seed, per_set, charset, lo, hi, fonts=fonts, kind=kind)
        modes: dict[str, dict[str, Any]] = {"plain": {}} if kind == "text" else {kind: {kind: 1}}
        sets.append(LabelledSet(name, samples, modes, kind))
    return sets


def real(root: Path, name: str, per_set: int) -> LabelledSet:
    """A real set, read plain and with the alphabet its labels imply (as a client that
    knows the site would ask: `numeric` 1 for digits, 2 for letters)."""
    samples = [(s.image, s.label) for s in load_labelled(root / name)]
    random.Random(SPLIT_SEED).shuffle(samples)
    samples = samples[:per_set]
    modes: dict[str, dict[str, Any]] = {"plain": {}}
    labels = "".join(label for _, label in samples)
    if set(labels) <= set(string.digits):
        modes["numeric=1"] = {"numeric": 1}
    elif set(labels) <= set(string.ascii_letters):
        modes["numeric=2"] = {"numeric": 2}
    return LabelledSet(name, samples, modes)


def read(engine: OcrEngine, labelled: LabelledSet) -> list[Reading]:
    readings = []
    images = [png for png, _ in labelled.samples]
    for mode, options in labelled.modes.items():
        constraints = constraints_for(options)
        results = []
        for start in range(0, len(images), 64):
            results += engine.read_batch(images[start : start + 64], constraints=constraints)
        for index, (result, (_, label)) in enumerate(zip(results, labelled.samples, strict=True)):
            readings.append(
                Reading(index, mode, result.confidence, right(labelled, result.text, label))
            )
    return readings


def right(labelled: LabelledSet, text: str, label: str) -> bool:
    if labelled.kind == "math":  # the solver answers the sum's value
        return evaluate(text) is not None and evaluate(text) == evaluate(label)
    if labelled.name in CASELESS:
        return text.lower() == label.lower()
    return text == label


def halves(labelled: LabelledSet, readings: list[Reading]) -> tuple[list[Reading], list[Reading]]:
    """The readings of the first half of the set's images (shuffled) and of the second."""
    order = list(range(len(labelled.samples)))
    random.Random(SPLIT_SEED + 1).shuffle(order)
    first = set(order[: len(order) // 2])
    return [r for r in readings if r.image in first], [r for r in readings if r.image not in first]


def table(title: str, bins: Sequence[Bin]) -> str:
    lines = [
        f"**{title}**",
        "",
        "| calibrated confidence | answers | mean predicted | observed accuracy |",
        "|---|---|---|---|",
    ]
    for b in bins:
        if b.count:
            closing = "]" if b.high == 1.0 else ")"
            lines.append(
                f"| [{b.low:.2f}, {b.high:.2f}{closing} | {b.count} | {b.predicted:.3f}"
                f" | {b.observed:.3f} |"
            )
    total = sum(b.count for b in bins)
    lines.append(f"\n{total} answers, ECE {expected_calibration_error(bins):.3f}")
    return "\n".join(lines)


def summary(calibration: Calibration, groups: dict[str, list[Reading]]) -> str:
    lines = [
        "| set, reading | answers | accuracy | mean calibrated | ECE"
        " | answers >= 0.9 | right among them |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, readings in groups.items():
        if not readings:
            continue
        p = calibration.apply([r.raw for r in readings])
        y = np.array([r.right for r in readings])
        sure = p >= 0.9
        among = f"{y[sure].mean():.1%}" if sure.any() else "-"
        ece = expected_calibration_error(reliability(p, y))
        lines.append(
            f"| {name} | {len(readings)} | {y.mean():.1%} | {p.mean():.3f} | {ece:.3f}"
            f" | {int(sure.sum())} | {among} |"
        )
    return "\n".join(lines)


def bins_of(calibration: Calibration, readings: Sequence[Reading]) -> list[Bin]:
    return reliability(calibration.apply([r.raw for r in readings]), [r.right for r in readings])


def raw_ece(readings: Sequence[Reading]) -> str:
    """The ECE of the raw scores themselves, for comparison."""
    bins = reliability([r.raw for r in readings], [r.right for r in readings])
    return f"(raw scores, uncalibrated: ECE {expected_calibration_error(bins):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="an ONNX model")
    parser.add_argument("--realworld", type=Path, help="folder of labelled real sets")
    parser.add_argument("--fit", nargs="*", default=list(FIT), help="real sets fitted on")
    parser.add_argument("--check", nargs="*", default=list(CHECK), help="real sets never fitted")
    parser.add_argument("--per-set", type=int, default=2000, help="images per set, at most")
    parser.add_argument("--write", action="store_true", help="store the fit in the model's JSON")
    args = parser.parse_args()
    if set(args.fit) & set(args.check):
        parser.error("a set cannot be both fitted on and checked")

    engine = OcrEngine(args.model, threads=1, calibrated=False)
    fitting = generated(args.per_set)
    checks: list[LabelledSet] = []
    if args.realworld is not None:
        fitting += [real(args.realworld, name, args.per_set) for name in args.fit]
        checks = [real(args.realworld, name, args.per_set) for name in args.check]
    train: list[Reading] = []
    held: dict[str, list[Reading]] = {}
    fitted_on: dict[str, int] = {}
    for labelled in fitting:
        first, second = halves(labelled, read(engine, labelled))
        train += first
        fitted_on[labelled.name] = len({r.image for r in first})
        for mode in labelled.modes:
            held[f"{labelled.name}, {mode}"] = [r for r in second if r.mode == mode]
    calibration = fit([r.raw for r in train], [r.right for r in train])
    unseen = {
        f"{labelled.name}, {mode}": [r for r in readings if r.mode == mode]
        for labelled in checks
        for readings in [read(engine, labelled)]
        for mode in labelled.modes
    }

    held_all = [r for group in held.values() for r in group]
    held_generated = [
        r for key, group in held.items() if key.split(", ")[0] in GENERATED for r in group
    ]
    print(
        f"fitted on {len(train)} readings of {sum(fitted_on.values())} images: {fitted_on};"
        f" {len(calibration.raw)} knots\n"
    )
    print(table("Held-out halves, every fitted set", bins_of(calibration, held_all)))
    print(raw_ece(held_all))
    print()
    print(table("Held-out halves, generated sets only", bins_of(calibration, held_generated)))
    print(raw_ece(held_generated))
    if unseen:
        print()
        never = [r for group in unseen.values() for r in group]
        print(table("Never-seen real sets", bins_of(calibration, never)))
        print(raw_ece(never))
    print()
    print(summary(calibration, {**held, **unseen}))

    if args.write:
        path = args.model.with_suffix(".json")
        document = json.loads(path.read_text(encoding="utf-8"))
        document["calibration"] = {
            **calibration.to_json(),
            "fitted_on": {"images": fitted_on, "readings": len(train)},
            "command": "training/calibrate.py " + " ".join(sys.argv[1:]),
            "date": datetime.date.today().isoformat(),
        }
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\ncalibration written to {path}")


if __name__ == "__main__":
    main()
