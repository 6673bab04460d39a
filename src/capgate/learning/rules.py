"""The rules of learning a site's captcha (docs/learning.md), as plain arithmetic: the
confidence threshold a candidate model gets, whether it is promoted, when a promoted
model is demoted, and when a site is due for training. No torch, no store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    """A raw score at or above which a model's answers stand for a site, and how they
    did on the held-out images: `kept` of the `held_out` scored at or above it, `right`
    of those were right (`precision` = right / kept, `coverage` = kept / held_out)."""

    score: float
    precision: float
    coverage: float
    kept: int
    right: int
    held_out: int


# The lowest threshold a site model gets (its raw score; see choose_threshold).
SCORE_FLOOR = 0.8


def choose_threshold(
    scored: Sequence[tuple[float, bool]], target: float = 0.97, floor: float = 0.0
) -> Threshold | None:
    """The lowest score, among those in `scored` (one (raw score, answer right) pair per
    held-out image) and not under `floor`, whose answers at or above it are right at
    least `target` of the time by a cautious count: right / (kept + 1), as if one more
    answer kept had been wrong (at 97%, a threshold must keep at least 33 answers). None
    if no score does.

    The lowest such score keeps the most answers: the rest go upstream. The training job
    passes SCORE_FLOOR: a held-out fifth of a few hundred labels is small, and the lowest
    threshold that passes on it is the one most likely to have passed by luck. On cloud4d
    (benchmarks/RESULTS.md) thresholds near 0.62 held 98.4% on 140 held-out images and
    96.3% on the next 1,000; from 0.8 up they held what they promised. Answers under the
    threshold can still stand by agreement (choose_agreement)."""
    usable = sorted((s for s in scored if not math.isnan(s[0])), key=lambda s: -s[0])
    best: Threshold | None = None
    kept = right = 0
    for i, (score, ok) in enumerate(usable):
        kept += 1
        right += ok
        if i + 1 < len(usable) and usable[i + 1][0] == score:
            continue  # a threshold keeps every answer of its score: count the ties first
        if score >= floor and right / (kept + 1) >= target:
            best = Threshold(score, right / kept, kept / len(scored), kept, right, len(scored))
    return best


@dataclass(frozen=True)
class Agreement:
    """Answers a site model scored under its threshold that stand all the same because the
    generalist engines read the same text: how they did on the held-out images. `agreed`
    of the held-out images were such answers, `right` of them right; `coverage`: the share
    of the held-out images answered locally with them (over the threshold, or agreeing)."""

    precision: float
    agreed: int
    right: int
    coverage: float


def choose_agreement(
    readings: Sequence[tuple[float, bool, bool]], threshold: Threshold, target: float = 0.97
) -> Agreement | None:
    """Whether agreement may stand in for the score: `readings` has one (raw score,
    answer right, the generalists read the same) triple per held-out image. Two engines
    that were trained apart and read the same text are rarely both wrong, so the answers
    under the threshold where they agree can go without upstream, if on the held-out
    images those were right at least `target` of the time, and every answer kept (over
    the threshold or agreeing) still is by the cautious count of choose_threshold.
    None if not, or if no answer under the threshold agreed."""
    agreeing = [ok for score, ok, same in readings if same and not score >= threshold.score]
    if not agreeing:
        return None
    right = sum(agreeing)
    if right / len(agreeing) < target:
        return None
    if (threshold.right + right) / (threshold.kept + len(agreeing) + 1) < target:
        return None
    covered = (threshold.kept + len(agreeing)) / len(readings)
    return Agreement(right / len(agreeing), len(agreeing), right, covered)


def promotion(
    candidate_right: int, current_right: int, held_out: int, threshold: Threshold | None
) -> tuple[bool, str]:
    """Whether a candidate is promoted: it must have a threshold (`choose_threshold`) and
    read strictly more of the `held_out` images right than the site's current engine.
    The reason, with its figures, in one line (for the site's history)."""
    figures = (
        f"the candidate read {candidate_right}/{held_out} held-out labels right,"
        f" the current engine {current_right}/{held_out}"
    )
    if threshold is None:
        return (
            False,
            f"rejected: no score threshold keeps its answers right often enough ({figures})",
        )
    if candidate_right <= current_right:
        return False, f"rejected: not better than the current engine ({figures})"
    return True, (
        f"promoted: {figures}; answers scored {threshold.score:.4f} or more stand:"
        f" {threshold.right}/{threshold.kept} right ({threshold.precision:.1%}),"
        f" {threshold.coverage:.0%} of the held-out labels"
    )


def wilson_upper(right: float, total: float, z: float = 1.96) -> float:
    """The upper bound of the Wilson score interval of a proportion right / total
    (1.0 for no observations)."""
    if total <= 0:
        return 1.0
    p = right / total
    z2 = z * z
    centre = p + z2 / (2 * total)
    spread = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    return min(1.0, (centre + spread) / (1 + z2 / total))


# How many checks the held-out evidence of a promoted model counts for (see should_demote).
PRIOR_CHECKS = 20


def should_demote(
    outcomes: Sequence[bool],
    bar: float = 0.97,
    min_checks: int = 5,
    z: float = 1.96,
    prior: float | None = None,
) -> bool:
    """Whether a promoted model's checks (True: its answer was right) show it under the
    bar: at least `min_checks` of them, and even the upper bound of the Wilson interval of
    its accuracy is below `bar`. 0 right of 5 demotes at once; 39 of 40 does not.

    `prior`: how often its kept answers were right on its held-out labels, counted as
    PRIOR_CHECKS checks before the audits. Without it one miss among the first five
    audits demotes a model that is right 98% of the time (4 of 5: the bound is 96.4%);
    with it, 4 of 5 stands (98.8%) while a changed captcha, whose audits all fail, is
    still demoted at the fifth."""
    if len(outcomes) < max(min_checks, 1):
        return False
    right, total = float(sum(outcomes)), float(len(outcomes))
    if prior is not None:
        right, total = right + prior * PRIOR_CHECKS, total + PRIOR_CHECKS
    return wilson_upper(right, total, z) < bar


def training_due(
    labels: int, min_labels: int, last_trained_on: int | None, growth: float = 1.5
) -> bool:
    """Whether a site with `labels` labels is due for a training job: at `min_labels`,
    and again once they reach `growth` times what the last candidate (promoted or not)
    was trained on."""
    if labels < min_labels:
        return False
    if last_trained_on is None:
        return True
    # A hair of tolerance, so that 1.1 x 500 asks for 550 labels, not 551.
    return labels >= growth * last_trained_on - 1e-9
