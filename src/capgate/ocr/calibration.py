"""Calibrated OCR confidence: the probability that an answer is exactly right.

The model's own score (the product of each character's best probability) ranks answers
well but does not say how often they are right: a CRNN is overconfident on images unlike
its training set. A calibration is a monotone map from that raw score to the share of
answers that were right at that score on held-out labelled images, fitted by isotonic
regression (pool-adjacent-violators) and kept in the model's JSON as a small table of
knots, interpolated linearly between them. Being monotone, it never reorders answers; it
only makes thresholds such as CapMonster's `recognizingThreshold` mean what they say.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Numbers = Sequence[float] | npt.NDArray[np.floating[Any]] | npt.NDArray[np.integer[Any]]

# Added to each fitted block as half a right and half a wrong answer, so that no finite
# sample claims certainty (a block of 2,000 right answers reads 0.99975, not 1).
SHRINK = 0.5
# The bins of the reliability tables (edges of calibrated confidence).
BIN_EDGES = (0.0, 0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# The seed of training/calibrate.py's choice of images (see `split`).
SPLIT_SEED = 0


def split(count: int, per_set: int, seed: int = SPLIT_SEED) -> tuple[list[int], set[int]]:
    """Which images of a labelled set of `count` (in name order) training/calibrate.py
    reads (at most `per_set`, a seeded shuffle, in that order) and which half of those it
    fits on; the rest of the set is held out from every fit."""
    chosen = list(range(count))
    random.Random(seed).shuffle(chosen)
    chosen = chosen[:per_set]
    order = list(range(len(chosen)))
    random.Random(seed + 1).shuffle(order)
    return chosen, {chosen[i] for i in order[: len(order) // 2]}


def isotonic(values: Numbers, weights: Numbers | None = None) -> FloatArray:
    """The non-decreasing sequence nearest to `values` in weighted least squares
    (pool-adjacent-violators): each run of values out of order becomes its weighted mean."""
    y = np.asarray(values, dtype=np.float64)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    if y.shape != w.shape or y.ndim != 1:
        raise ValueError("values and weights must be 1-D and of the same length")
    if np.any(w <= 0):
        raise ValueError("weights must be positive")
    # A stack of blocks: mean, weight, and how many values each covers.
    means: list[float] = []
    sums: list[float] = []
    sizes: list[int] = []
    for value, weight in zip(y.tolist(), w.tolist(), strict=True):
        means.append(value)
        sums.append(weight)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            weight = sums[-2] + sums[-1]
            mean = (means[-2] * sums[-2] + means[-1] * sums[-1]) / weight
            size = sizes[-2] + sizes[-1]
            del means[-1], sums[-1], sizes[-1]
            means[-1], sums[-1], sizes[-1] = mean, weight, size
    return np.repeat(np.array(means, dtype=np.float64), sizes)


@dataclass(frozen=True)
class Calibration:
    """Knots of a monotone map: `raw` strictly increasing, `calibrated` non-decreasing in
    [0, 1]. Below the first knot the map is its first value, above the last its last."""

    raw: tuple[float, ...]
    calibrated: tuple[float, ...]

    def __post_init__(self) -> None:
        raw, cal = np.array(self.raw), np.array(self.calibrated)
        if len(raw) == 0 or raw.shape != cal.shape:
            raise ValueError("a calibration needs as many calibrated values as raw knots")
        if not (np.all(np.isfinite(raw)) and np.all(np.isfinite(cal))):
            raise ValueError("calibration knots must be finite")
        if np.any(np.diff(raw) <= 0):
            raise ValueError("raw knots must be strictly increasing")
        if np.any(np.diff(cal) < 0) or cal[0] < 0 or cal[-1] > 1:
            raise ValueError("calibrated values must be non-decreasing, within [0, 1]")

    def __call__(self, raw: float) -> float:
        """The calibrated confidence of one raw score."""
        return float(np.interp(raw, self.raw, self.calibrated))

    def apply(self, raw: Numbers) -> FloatArray:
        """The calibrated confidence of many raw scores."""
        return np.interp(np.asarray(raw, dtype=np.float64), self.raw, self.calibrated)

    def to_json(self) -> dict[str, list[float]]:
        """The knots as model.json keeps them."""
        return {"raw": list(self.raw), "calibrated": list(self.calibrated)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        """Read the knots of model.json's "calibration" (ValueError if malformed)."""
        try:
            raw = tuple(float(x) for x in data["raw"])
            calibrated = tuple(float(x) for x in data["calibrated"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a calibration: {exc}") from None
        return cls(raw, calibrated)


def fit(
    raw: Numbers,
    correct: Sequence[bool] | npt.NDArray[np.bool_],
    shrink: float = SHRINK,
) -> Calibration:
    """Fit the map from raw scores to the share of right answers (isotonic regression).

    Equal raw scores are pooled first (the map is a function of the score); each fitted
    block's rate is then shrunk by `shrink` right and wrong answers and made monotone
    again. The knots keep only where the map bends: the ends of each flat run."""
    x = np.asarray(raw, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError("need as many outcomes as raw scores, at least one")
    if not np.all(np.isfinite(x)):
        raise ValueError("raw scores must be finite")
    unique, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    rights = np.bincount(inverse, weights=y, minlength=len(unique))
    fitted = isotonic(rights / counts, counts)
    # Blocks of equal fitted value: shrink each by its own size, then restore the order
    # (a small block at the top can otherwise fall below a large one beneath it).
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])
    sizes = np.add.reduceat(counts, starts)
    hits = np.add.reduceat(rights, starts)
    shrunk = isotonic((hits + shrink) / (sizes + 2 * shrink), sizes)
    values = np.repeat(shrunk, np.diff(np.r_[starts, len(unique)]))
    keep = np.ones(len(unique), dtype=bool)
    # Inside a flat run only its two ends matter to linear interpolation.
    same_as_before = np.r_[False, values[1:] == values[:-1]]
    same_as_after = np.r_[values[:-1] == values[1:], False]
    keep &= ~(same_as_before & same_as_after)
    return Calibration(
        tuple(float(v) for v in unique[keep]), tuple(round(float(v), 6) for v in values[keep])
    )


def fit_logistic(
    features: Sequence[Sequence[float]] | npt.NDArray[np.floating[Any]],
    outcomes: Sequence[bool] | npt.NDArray[np.bool_],
    l2: float = 1e-2,
    steps: int = 100,
) -> tuple[float, ...]:
    """Weights w of P(outcome) = 1 / (1 + exp(-w . x)), by maximum likelihood with a small
    ridge penalty `l2` (Newton's method), for the chain's referee. Include a constant
    feature for an intercept."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],) or len(y) == 0:
        raise ValueError("need one row of features per outcome, at least one")
    if not np.all(np.isfinite(x)):
        raise ValueError("features must be finite")
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -500, 500)))
        gradient = x.T @ (p - y) + l2 * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-9:
            break
    return tuple(round(float(v), 6) for v in w)


@dataclass(frozen=True)
class Bin:
    """One row of a reliability table."""

    low: float
    high: float
    count: int
    predicted: float  # the mean calibrated confidence of its answers
    observed: float  # the share of its answers that were right


def reliability(
    predicted: Numbers,
    correct: Sequence[bool] | npt.NDArray[np.bool_],
    edges: Sequence[float] = BIN_EDGES,
) -> list[Bin]:
    """Answers binned by calibrated confidence (each bin holds its low edge, the last one
    both edges): how sure they were said to be, and how often they were right."""
    p = np.asarray(predicted, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    bins = []
    for i in range(len(edges) - 1):
        inside = index == i
        n = int(inside.sum())
        bins.append(
            Bin(
                edges[i],
                edges[i + 1],
                n,
                float(p[inside].mean()) if n else 0.0,
                float(y[inside].mean()) if n else 0.0,
            )
        )
    return bins


def expected_calibration_error(bins: Sequence[Bin]) -> float:
    """The mean gap between said and observed accuracy, weighted by each bin's answers."""
    total = sum(b.count for b in bins)
    if total == 0:
        return 0.0
    return sum(b.count * abs(b.predicted - b.observed) for b in bins) / total
