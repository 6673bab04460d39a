"""Fit an OCR engine's confidence calibration and report how well it holds.

    .venv/bin/python training/calibrate.py --realworld ../shared/data/realworld [--write]
    .venv/bin/python training/calibrate.py --engine ddddocr --realworld ... [--write]

Reads labelled images with the engine's raw scores: generated captchas (`capgate.ocr.synth`,
seeds 500,000-500,005, which neither training, tests nor benchmarks use) and the real sets
named by --fit under --realworld. Each set is shuffled and cut in two halves by image: the
calibration is fitted (isotonic regression, `capgate.ocr.calibration.fit`) on the first
halves, and its reliability is reported on the second halves and on the --check sets,
which the fit never sees. --write stores the knots in the model's JSON (the shipped
model's by default); the engine reads them on its next start.

Every set counts the same (at most --per-set images each), so the mix the calibration
holds for is a choice, printed with it: generated captchas and zero-shot real ones.

With --engine ddddocr (`pip install 'capgate[ddddocr]'`) the same images are read by
ddddocr and by capgate's model (its shipped calibration), and three things are fitted on
the same first halves: ddddocr's calibration, and the chain's rule (`capgate.ocr.chain`):
the map of agreeing answers and the referee of differing ones. The chain's threshold is
then chosen on the second halves (never on the --check sets): the lowest one at which no
set's chain reads more than TOLERANCE worse than when ddddocr reads every image.
--write stores all of it in `src/capgate/ocr/ddddocr.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import io
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
    SPLIT_SEED,
    Bin,
    Calibration,
    expected_calibration_error,
    fit,
    fit_logistic,
    reliability,
    split,
)
from capgate.ocr.dataset import load_labelled
from capgate.ocr.engine import DEFAULT_MODEL, OcrEngine, reading_of
from capgate.ocr.grammar import evaluate
from capgate.ocr.model_files import split_holdout, trained_real_sets
from capgate.solvers.ocr import constraints_for

# The seed of each of synth.NAMED_SETS: others than benchmarks/ocr.py reads.
SEEDS = {"B": 500_000, "A": 500_001, "B-dejavu": 500_002, "A-dejavu": 500_003,
         "math": 500_004, "phrase": 500_005}  # fmt: skip
FIT = ("cloud4d", "henan4d", "tjsp5")
CHECK = ("hfut4", "weibo4", "ems6", "tongji4")
# Sets whose labels lost their case (their SOURCE.md): the sites compare without it.
CASELESS = {"tjsp5", "hfut4", "varied"}
VARIED_SEED = 500_006  # --varied's images: no training, test or benchmark uses this seed
# The chain's threshold: the lowest at which no held-out set reads more than this worse
# than with ddddocr reading every image.
TOLERANCE = 0.01
THRESHOLDS = (*(round(0.8 + 0.01 * i, 2) for i in range(20)), 1.0)


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


def varied_set(count: int) -> LabelledSet:
    """`count` captchas of `training/varied.py` (seed VARIED_SEED, which nothing trains on):
    the many styles of the web that neither engine was made for, where each is often
    surely wrong. Compared without case, as most sites compare."""
    sys.path.insert(0, str(Path(__file__).parent))
    import varied

    samples = []
    for image, label in varied.generate(VARIED_SEED, count, varied.find_fonts()):
        png = io.BytesIO()
        image.save(png, format="PNG")
        samples.append((png.getvalue(), label))
    return LabelledSet("varied", samples, {"plain": {}})


def generated(per_set: int) -> list[LabelledSet]:
    sets = []
    for name, seed in SEEDS.items():
        samples = synth.named_set(name, seed, per_set)
        if samples is None:
            print(f"skipping {name}: no DejaVu fonts in {synth.DEJAVU}", file=sys.stderr)
            continue
        kind = synth.NAMED_SETS[name][4]
        modes: dict[str, dict[str, Any]] = {"plain": {}} if kind == "text" else {kind: {kind: 1}}
        sets.append(LabelledSet(name, samples, modes, kind))
    return sets


def real(root: Path, name: str, per_set: int, holdout: float | None = None) -> LabelledSet:
    """A real set, read plain and with the alphabet its labels imply (as a client that
    knows the site would ask: `numeric` 1 for digits, 2 for letters). With `holdout`, the
    model was trained on the rest of the set: only its held-out images are read, since a
    calibration fitted on images the model learnt by heart would overstate it."""
    everything = load_labelled(root / name)
    if holdout is not None:
        everything = split_holdout(everything, holdout)[1]
    chosen, _ = split(len(everything), per_set)
    samples = [(everything[i].image, everything[i].label) for i in chosen]
    modes: dict[str, dict[str, Any]] = {"plain": {}}
    labels = "".join(label for _, label in samples)
    if set(labels) <= set(string.digits):
        modes["numeric=1"] = {"numeric": 1}
    elif set(labels) <= set(string.ascii_letters):
        modes["numeric=2"] = {"numeric": 2}
    return LabelledSet(name, samples, modes)


def labelled_sets(args: argparse.Namespace) -> tuple[list[LabelledSet], list[LabelledSet]]:
    """The sets to fit on (generated, and the real ones named by --fit) and the never-seen
    ones to check on (--check), as the command line asks."""
    fitting = generated(args.generated or args.per_set)
    if args.varied:
        fitting.append(varied_set(args.varied))
    checks: list[LabelledSet] = []
    if args.realworld is not None:
        held_out = trained_real_sets(args.model)
        if set(held_out) & set(args.check):
            raise SystemExit(f"{args.model} was trained on a --check set: {sorted(held_out)}")
        fitting += [
            real(args.realworld, name, args.per_set, held_out.get(name)) for name in args.fit
        ]
        checks = [real(args.realworld, name, args.per_set) for name in args.check]
    return fitting, checks


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
    parser.add_argument(
        "--engine", choices=("capgate", "ddddocr"), default="capgate", help="whose calibration"
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="an ONNX model")
    parser.add_argument("--realworld", type=Path, help="folder of labelled real sets")
    parser.add_argument("--fit", nargs="*", default=list(FIT), help="real sets fitted on")
    parser.add_argument("--check", nargs="*", default=list(CHECK), help="real sets never fitted")
    parser.add_argument("--per-set", type=int, default=2000, help="images per set, at most")
    parser.add_argument(
        "--generated", type=int, help="images per generated set (default: --per-set)"
    )
    parser.add_argument(
        "--varied", type=int, default=0, help="fit on this many varied.py captchas too"
    )
    parser.add_argument("--write", action="store_true", help="store the fit in the model's JSON")
    args = parser.parse_args()
    if set(args.fit) & set(args.check):
        parser.error("a set cannot be both fitted on and checked")
    if args.engine == "ddddocr":
        calibrate_ddddocr(args)
    else:
        calibrate_capgate(args)


def calibrate_capgate(args: argparse.Namespace) -> None:
    engine = OcrEngine(args.model, threads=1, calibrated=False)
    fitting, checks = labelled_sets(args)
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
        r for key, group in held.items() if key.split(", ")[0] in SEEDS for r in group
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


@dataclass(frozen=True)
class Pair:
    """One image read one way by both engines: capgate's answer (calibrated confidence),
    ddddocr's (raw score), how much more likely each finds its own answer than the
    other's (0 where they agree), and whether each was right (as `right`; `caseless`:
    letters in either case, as benchmarks/ocr.py also counts)."""

    image: int
    mode: str
    capgate: str
    capgate_confidence: float
    ddddocr: str
    ddddocr_raw: float
    margins: tuple[float, float]
    right: tuple[bool, bool]
    caseless: tuple[bool, bool]


def read_pairs(capgate: OcrEngine, dddd: Any, labelled: LabelledSet) -> list[Pair]:
    """Both engines' readings of every image of a set, in every mode of the set (each
    engine runs once per image; the modes only decode differently)."""
    from capgate.ocr.chain import margins

    pairs = []
    for index, (png, label) in enumerate(labelled.samples):
        logits_c, logits_d = capgate.logits(png), dddd.logits(png)
        for mode, options in labelled.modes.items():
            constraints = constraints_for(options)
            a = reading_of(logits_c, capgate.spec.charset, constraints, capgate.calibration)
            b = reading_of(logits_d, dddd.charset, constraints, None)
            text_a, text_b = a.result.text, b.result.text
            differ = text_a and text_b and text_a.lower() != text_b.lower()
            pairs.append(
                Pair(
                    index,
                    mode,
                    text_a,
                    a.result.confidence,
                    text_b,
                    b.raw,
                    margins(a, b) if differ else (0.0, 0.0),
                    (right(labelled, text_a, label), right(labelled, text_b, label)),
                    (caseless(labelled, text_a, label), caseless(labelled, text_b, label)),
                )
            )
    return pairs


def caseless(labelled: LabelledSet, text: str, label: str) -> bool:
    if labelled.kind == "math":
        return right(labelled, text, label)
    return text.lower() == label.lower()


@dataclass(frozen=True)
class Outcome:
    """The chain's answer to one pair: whose, how sure, and whether right."""

    engine: str  # "capgate", "ddddocr" or "both"
    confidence: float
    right: bool
    caseless: bool
    second: bool  # whether ddddocr read the image


def chain_outcome(pair: Pair, calibration: Calibration, rule: Any) -> Outcome:
    from capgate.ocr.chain import BOTH, FIRST, combine

    c = pair.capgate_confidence
    if pair.capgate and c >= rule.threshold:
        return Outcome("capgate", c, pair.right[0], pair.caseless[0], False)
    d = calibration(pair.ddddocr_raw) if pair.ddddocr else 0.0
    which, confidence = combine(rule, (pair.capgate, c), (pair.ddddocr, d), lambda: pair.margins)
    if which in (FIRST, BOTH):
        name = "both" if which == BOTH else "capgate"
        return Outcome(name, confidence, pair.right[0], pair.caseless[0], True)
    return Outcome("ddddocr", confidence, pair.right[1], pair.caseless[1], True)


def fit_rule(pairs: Sequence[Pair], calibration: Calibration, threshold: float) -> Any:
    """The chain's agreeing map and referee, fitted on these pairs."""
    from capgate.ocr.chain import Referee, Rule, features

    agreeing = [p for p in pairs if p.capgate and p.capgate.lower() == p.ddddocr.lower()]
    combined = [1 - (1 - p.capgate_confidence) * (1 - calibration(p.ddddocr_raw)) for p in agreeing]
    agree_map = fit(combined, [p.right[0] for p in agreeing])
    differing = [p for p in pairs if p.capgate and p.ddddocr and p not in agreeing]
    x = [
        features(
            p.capgate,
            p.ddddocr,
            p.capgate_confidence,
            calibration(p.ddddocr_raw),
            *p.margins,
        )
        for p in differing
    ]
    # The pick: on the differing pairs where exactly one engine read right, whether it
    # was the first (see capgate.ocr.chain).
    one_right = [i for i, p in enumerate(differing) if p.right[0] != p.right[1]]
    referee = Referee(
        fit_logistic(x, [p.right[0] for p in differing]),
        fit_logistic(x, [p.right[1] for p in differing]),
        fit_logistic([x[i] for i in one_right], [differing[i].right[0] for i in one_right])
        if one_right
        else None,
    )
    return Rule(threshold, agree_map, referee)


def accuracy(values: Sequence[bool]) -> float:
    return float(np.mean(values)) if values else 0.0


def choose_threshold(
    held: dict[str, list[Pair]], calibration: Calibration, rule: Any
) -> tuple[float, str]:
    """The lowest threshold at which no held-out set's chain reads more than TOLERANCE
    worse than with ddddocr always reading; and the table that shows it."""
    lines = [
        "| threshold | ddddocr reads (mean share) | worst set, chain minus best engine |",
        "|---|---|---|",
    ]
    worst: dict[float, float] = {}
    for threshold in THRESHOLDS:
        ruled = dataclasses.replace(rule, threshold=threshold)
        gaps, runs = [], []
        for group in held.values():
            outcomes = [chain_outcome(p, calibration, ruled) for p in group]
            best = max(accuracy([p.right[0] for p in group]), accuracy([p.right[1] for p in group]))
            gaps.append((accuracy([o.right for o in outcomes]) - best, group))
            runs.append(accuracy([o.second for o in outcomes]))
        gap = min(g for g, _ in gaps)
        worst[threshold] = gap
        lines.append(f"| {threshold:.2f} | {np.mean(runs):.2f} | {gap:+.3f} |")
    floor = worst[1.0] - TOLERANCE
    chosen = min(t for t in THRESHOLDS if worst[t] >= floor)
    return chosen, "\n".join(lines)


def chain_summary(groups: dict[str, list[Pair]], calibration: Calibration, rule: Any) -> str:
    lines = [
        "| set, reading | answers | capgate | ddddocr | chain | chain, either case"
        " | ddddocr read | chain ECE | chain >= 0.9 | right among them |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, group in groups.items():
        if not group:
            continue
        outcomes = [chain_outcome(p, calibration, rule) for p in group]
        p = np.array([o.confidence for o in outcomes])
        y = np.array([o.right for o in outcomes])
        sure = p >= 0.9
        among = f"{y[sure].mean():.1%}" if sure.any() else "-"
        lines.append(
            f"| {name} | {len(group)} | {accuracy([q.right[0] for q in group]):.1%}"
            f" | {accuracy([q.right[1] for q in group]):.1%} | {y.mean():.1%}"
            f" | {accuracy([o.caseless for o in outcomes]):.1%}"
            f" | {accuracy([o.second for o in outcomes]):.0%}"
            f" | {expected_calibration_error(reliability(p, y)):.3f}"
            f" | {int(sure.sum())} | {among} |"
        )
    return "\n".join(lines)


def calibrate_ddddocr(args: argparse.Namespace) -> None:
    from capgate.ocr.ddddocr_engine import CALIBRATION, DdddocrEngine

    capgate = OcrEngine(args.model, threads=1)
    if capgate.calibration is None:
        raise SystemExit(f"{args.model} has no calibration: calibrate it first")
    dddd = DdddocrEngine(threads=1, calibrated=False)
    fitting, checks = labelled_sets(args)
    train: list[Pair] = []
    held: dict[str, list[Pair]] = {}
    fitted_on: dict[str, int] = {}
    for labelled in fitting:
        pairs = read_pairs(capgate, dddd, labelled)
        order = list(range(len(labelled.samples)))
        random.Random(SPLIT_SEED + 1).shuffle(order)
        first = set(order[: len(order) // 2])
        train += [p for p in pairs if p.image in first]
        fitted_on[labelled.name] = len(first)
        for mode in labelled.modes:
            held[f"{labelled.name}, {mode}"] = [
                p for p in pairs if p.mode == mode and p.image not in first
            ]
        print(f"read {labelled.name}", file=sys.stderr, flush=True)
    unseen = {
        f"{labelled.name}, {mode}": [p for p in pairs if p.mode == mode]
        for labelled in checks
        for pairs in [read_pairs(capgate, dddd, labelled)]
        for mode in labelled.modes
    }

    calibration = fit([p.ddddocr_raw for p in train], [p.right[1] for p in train])
    rule = fit_rule(train, calibration, 1.0)
    threshold, thresholds = choose_threshold(held, calibration, rule)
    rule = dataclasses.replace(rule, threshold=threshold)

    def ddddocr_readings(group: Sequence[Pair]) -> list[Reading]:
        return [Reading(p.image, p.mode, p.ddddocr_raw, p.right[1]) for p in group]

    held_all = [p for group in held.values() for p in group]
    held_generated = [
        p for key, group in held.items() if key.split(", ")[0] in SEEDS for p in group
    ]
    never = [p for group in unseen.values() for p in group]
    print(
        f"fitted on {len(train)} readings of {sum(fitted_on.values())} images: {fitted_on};"
        f" ddddocr's calibration {len(calibration.raw)} knots\n"
    )
    for title, group in (
        ("ddddocr, held-out halves, every fitted set", held_all),
        ("ddddocr, held-out halves, generated sets only", held_generated),
        ("ddddocr, never-seen real sets", never),
    ):
        if group:
            print(table(title, bins_of(calibration, ddddocr_readings(group))))
            print(raw_ece(ddddocr_readings(group)))
            print()
    print(
        summary(
            calibration,
            {k: ddddocr_readings(g) for k, g in {**held, **unseen}.items()},
        )
    )
    print(f"\nThe chain's threshold (tolerance {TOLERANCE:.0%}), on the held-out halves:\n")
    print(thresholds)
    print(f"\nchosen: {threshold:.2f}\n")
    for title, group in (("chain, held-out halves", held_all), ("chain, never-seen", never)):
        if group:
            outcomes = [chain_outcome(p, calibration, rule) for p in group]
            bins = reliability([o.confidence for o in outcomes], [o.right for o in outcomes])
            print(table(title, bins))
            print()
    print(chain_summary({**held, **unseen}, calibration, rule))

    if args.write:
        import importlib.metadata

        stamp = {
            "fitted_on": {"images": fitted_on, "readings": len(train)},
            "command": "training/calibrate.py " + " ".join(sys.argv[1:]),
            "date": datetime.date.today().isoformat(),
        }
        document = {
            "engine": "ddddocr",
            "ddddocr": importlib.metadata.version("ddddocr"),
            "calibration": {**calibration.to_json(), **stamp},
            "chain": {**rule.to_json(), "tolerance": TOLERANCE, **stamp},
        }
        CALIBRATION.write_text(
            json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        print(f"\ncalibration and chain rule written to {CALIBRATION}")


if __name__ == "__main__":
    main()
