"""The engine chain: capgate's model first, then ddddocr when capgate's is not sure.

capgate's model reads first (about 1 ms). If its calibrated confidence reaches the chain's
threshold, its answer stands. Otherwise ddddocr reads the image too (about 15 ms), and:

- if both read the same text (letters in either case), that text stands, in capgate's
  case, and its confidence is the calibrated probability that agreeing answers are right
  (`agreeing`: an isotonic map of 1 - (1 - c1)(1 - c2));
- if they differ, a referee weighs the two, on what each engine says: how sure each is
  (calibrated), how likely each finds its own answer against the other's (the CTC
  likelihood of both texts under both models), and the two answers' lengths. A logistic
  model of which answer is the right one, fitted on the images where exactly one engine
  read right (`Referee.which`), picks the answer that stands; its confidence is, from a
  logistic model per engine, the probability that this engine's answer is right.

  The pick is fitted on those images alone because the question "which one?" only
  matters there. Fitted on every differing pair, as the per-engine models are, the pick
  learnt mostly that capgate is right on the styles it trained on, and on styles neither
  engine trained on it kept capgate's answer where ddddocr's own evidence (its margin)
  said otherwise (training/README.md has the figures).

Every answer's confidence is so a calibrated probability that it is right, which
`ocr_min_confidence` and a task's `recognizingThreshold` compare against. The threshold,
the map and the referee's weights are fitted on held-out labelled images by
`training/calibrate.py --engine ddddocr` and shipped in `ddddocr.json` ("chain"); the
rule and its figures are in training/README.md and benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capgate.ocr.calibration import Calibration
from capgate.ocr.engine import Constraints, Engine, Reading

# What `ocr_engines` may name, in the order the chain runs them.
ENGINES = ("capgate", "ddddocr")
AUTO = "auto"
# Log-likelihood margins are clipped to this (an answer one engine cannot spell at all
# is -inf to it).
MARGIN_CLIP = 30.0


def resolve(names: Sequence[str]) -> tuple[str, ...]:
    """The engines a setting names, in chain order: "auto" is capgate's model, plus
    ddddocr where it is installed. ValueError for an unknown name, or for ddddocr named
    where it is not installed."""
    from capgate.ocr import ddddocr_engine

    wanted = {name.strip().lower() for name in names if name.strip()} or {AUTO}
    unknown = wanted - {AUTO, *ENGINES}
    if unknown:
        known = ", ".join((AUTO, *ENGINES))
        raise ValueError(f"ocr_engines: unknown engine {sorted(unknown)[0]!r} (known: {known})")
    if AUTO in wanted:
        wanted.discard(AUTO)
        wanted.add("capgate")
        if ddddocr_engine.available():
            wanted.add("ddddocr")
    if "ddddocr" in wanted and not ddddocr_engine.available():
        raise ValueError(
            "ocr_engines: ddddocr is not installed here (pip install 'capgate[ddddocr]')"
        )
    return tuple(name for name in ENGINES if name in wanted)


def margins(first: Reading, second: Reading) -> tuple[float, float]:
    """How much more likely each engine finds its own answer than the other's (log)."""
    a, b = first.result.text, second.result.text
    return first.likelihood(a) - first.likelihood(b), second.likelihood(b) - second.likelihood(a)


def features(
    text_a: str, text_b: str, c_a: float, c_b: float, margin_a: float, margin_b: float
) -> list[float]:
    """What the referee weighs when two engines' answers differ: their calibrated
    confidences, their `margins` and their lengths."""
    return [
        1.0,
        _logit(c_a),
        _logit(c_b),
        _clip(margin_a),
        _clip(margin_b),
        float(len(text_a) <= 2),
        float(len(text_b) <= 2),
        float(max(-3, min(3, len(text_a) - len(text_b)))),
    ]


FEATURES = (
    "bias",
    "logit c1",
    "logit c2",
    "margin 1",
    "margin 2",
    "short 1",
    "short 2",
    "length 1 - 2",
)


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def _clip(x: float) -> float:
    if math.isnan(x):
        return 0.0
    return max(-MARGIN_CLIP, min(MARGIN_CLIP, x))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -500 else 0.0


@dataclass(frozen=True)
class Referee:
    """Logistic weights (over `features`) for the probability that each engine's answer is
    right when the two differ (`first`, `second`), and for the probability that the
    first's is the right one when exactly one of them is (`which`; without it, the answer
    more likely right is picked)."""

    first: tuple[float, ...]
    second: tuple[float, ...]
    which: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        vectors = (self.first, self.second, *((self.which,) if self.which is not None else ()))
        if any(len(v) != len(FEATURES) for v in vectors):
            raise ValueError(f"a referee needs {len(FEATURES)} weights per model")
        if not all(math.isfinite(w) for v in vectors for w in v):
            raise ValueError("referee weights must be finite")

    def weigh(self, x: Sequence[float]) -> tuple[float, float]:
        """The probability that the first engine's answer is right, and the second's."""
        return _sigmoid(_dot(self.first, x)), _sigmoid(_dot(self.second, x))

    def decide(self, x: Sequence[float]) -> tuple[bool, float]:
        """Whether the first engine's answer stands, and the chance that the one that
        stands is right."""
        p_first, p_second = self.weigh(x)
        # With a pick of its own, the referee picks by it; else the likelier answer stands.
        first = _dot(self.which, x) >= 0.0 if self.which is not None else p_first >= p_second
        return first, p_first if first else p_second


def _dot(weights: Sequence[float], x: Sequence[float]) -> float:
    return sum(w * v for w, v in zip(weights, x, strict=True))


@dataclass(frozen=True)
class Rule:
    """How the chain of capgate's model and ddddocr decides (fitted, see the module)."""

    threshold: float
    agreeing: Calibration
    referee: Referee

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "agreeing": self.agreeing.to_json(),
            "referee": {
                "features": list(FEATURES),
                "first": list(self.referee.first),
                "second": list(self.referee.second),
                **({"which": list(self.referee.which)} if self.referee.which is not None else {}),
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rule:
        """Read ddddocr.json's "chain" (ValueError if malformed)."""
        try:
            referee = data["referee"]
            return cls(
                float(data["threshold"]),
                Calibration.from_json(data["agreeing"]),
                Referee(
                    tuple(float(w) for w in referee["first"]),
                    tuple(float(w) for w in referee["second"]),
                    tuple(float(w) for w in referee["which"]) if "which" in referee else None,
                ),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a chain rule: {exc}") from None


def load_rule(path: Path | None = None) -> Rule | None:
    """The chain's rule as shipped in ddddocr.json (None if it holds none)."""
    from capgate.ocr.ddddocr_engine import CALIBRATION

    data = json.loads((path or CALIBRATION).read_text(encoding="utf-8"))
    chain = data.get("chain")
    return Rule.from_json(chain) if chain is not None else None


@dataclass(frozen=True)
class Answer:
    """The chain's answer: the text, its calibrated confidence, and who read it."""

    text: str
    confidence: float
    engine: str  # an engine's name, or "capgate+ddddocr" when both read it
    readings: tuple[Reading, ...] = ()


class Chain:
    """Engines in order, and the rule that picks one answer from them (see the module).

    One engine answers alone. Two without a rule (a ddddocr.json without "chain") answer
    with the surer of the two calibrated confidences."""

    def __init__(self, engines: Sequence[Engine], rule: Rule | None = None) -> None:
        if not 1 <= len(engines) <= 2:
            raise ValueError("a chain holds one or two engines")
        self.engines = tuple(engines)
        self.rule = rule

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(engine.name for engine in self.engines)

    def warm(self) -> None:
        """Load every engine now (in a worker process, before its first task)."""
        for engine in self.engines:
            warm = getattr(engine, "warm", None)
            if warm is not None:
                warm()

    def read(self, image: bytes, constraints: Constraints | None = None) -> Answer:
        """Read one image with the chain (ValueError if it is not an image)."""
        first = self.engines[0].reading(image, constraints)
        if len(self.engines) == 1:
            return _alone(self.engines[0].name, first)
        threshold = self.rule.threshold if self.rule is not None else 1.0
        if first.result.text and first.result.confidence >= threshold:
            return _alone(self.engines[0].name, first)
        try:
            second = self.engines[1].reading(image, constraints)
        except ValueError:  # an image the second engine cannot take: the first answers
            return _alone(self.engines[0].name, first)
        return self.decide((self.engines[0].name, first), (self.engines[1].name, second))

    def decide(self, first: tuple[str, Reading], second: tuple[str, Reading]) -> Answer:
        """One answer from two engines' readings of the same image."""
        (name_a, a), (name_b, b) = first, second
        which, confidence = combine(
            self.rule,
            (a.result.text, a.result.confidence),
            (b.result.text, b.result.confidence),
            lambda: margins(a, b),
        )
        text = b.result.text if which == SECOND else a.result.text
        name = {FIRST: name_a, SECOND: name_b, BOTH: f"{name_a}+{name_b}"}[which]
        return Answer(text, confidence, name, (a, b))


# Which answer `combine` keeps: the first engine's, the second's, or the one both read
# (in the first's letter case).
FIRST, SECOND, BOTH = 0, 1, 2


def combine(
    rule: Rule | None,
    first: tuple[str, float],
    second: tuple[str, float],
    weigh: Callable[[], tuple[float, float]],
) -> tuple[int, float]:
    """The rule itself, on two (text, calibrated confidence) answers: which stands, and
    its confidence. `weigh` gives the `margins`, asked for only if the answers differ."""
    (text_a, c_a), (text_b, c_b) = first, second
    if not text_b:
        return FIRST, c_a
    if not text_a:
        return SECOND, c_b
    if text_a.lower() == text_b.lower():
        if rule is None:
            return BOTH, max(c_a, c_b)
        return BOTH, rule.agreeing(1.0 - (1.0 - c_a) * (1.0 - c_b))
    if rule is None:
        return (FIRST, c_a) if c_a >= c_b else (SECOND, c_b)
    x = features(text_a, text_b, c_a, c_b, *weigh())
    first_stands, confidence = rule.referee.decide(x)
    return (FIRST if first_stands else SECOND), confidence


def _alone(name: str, reading: Reading) -> Answer:
    return Answer(reading.result.text, reading.result.confidence, name, (reading,))


def describe(names: Sequence[str], model: Path | None = None) -> str:
    """What a chain of these engines is, in one line, without loading any of them (for
    the server's log at start and `capgate doctor`)."""
    import importlib.metadata

    parts = []
    for name in names:
        if name == "capgate":
            parts.append(f"capgate ({model or 'the shipped model'})")
        elif name == "ddddocr":
            try:
                parts.append(f"ddddocr {importlib.metadata.version('ddddocr')}")
            except importlib.metadata.PackageNotFoundError:
                parts.append("ddddocr")
    text = " -> ".join(parts)
    if len(names) == 2:
        rule = load_rule()
        if rule is None:
            text += " (the surer answer stands)"
        else:
            text += f" (ddddocr reads when capgate is less than {rule.threshold:.0%} sure)"
    return text


def build(names: Sequence[str], model: Path | None = None, threads: int = 1) -> Chain:
    """The chain of the named engines (as `resolve` gives them), loading capgate's model
    now and ddddocr's on first use or `warm`."""
    engines: list[Engine] = []
    for name in names:
        if name == "capgate":
            from capgate.ocr.engine import OcrEngine

            engines.append(OcrEngine(model, threads=threads))
        elif name == "ddddocr":
            from capgate.ocr.ddddocr_engine import DdddocrEngine

            engines.append(DdddocrEngine(threads=threads))
        else:
            raise ValueError(f"unknown OCR engine {name!r}")
    rule = load_rule() if len(engines) == 2 else None
    return Chain(engines, rule)
