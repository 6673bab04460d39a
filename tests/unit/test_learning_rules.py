"""The rules of learning a site's captcha: the threshold a candidate gets, its promotion,
a promoted model's demotion, and when a site is due for training."""

from __future__ import annotations

import pytest

from capgate.learning.rules import (
    Agreement,
    Threshold,
    choose_agreement,
    choose_threshold,
    promotion,
    should_demote,
    training_due,
    wilson_upper,
)


def descending(count: int, top: float = 0.99, step: float = 0.001) -> list[float]:
    return [round(top - i * step, 6) for i in range(count)]


# --- choose_threshold ---------------------------------------------------------------------


def test_no_threshold_for_nothing_or_for_wrong_answers() -> None:
    assert choose_threshold([]) is None
    assert choose_threshold([(s, False) for s in descending(100)]) is None
    # Too few right answers to trust: 32 of 32 reads 32/33 = 96.97% by the cautious count.
    assert choose_threshold([(s, True) for s in descending(32)]) is None


def test_all_right_keeps_everything_from_33_answers_up() -> None:
    scores = descending(33)
    assert choose_threshold([(s, True) for s in scores]) == Threshold(
        score=scores[-1], precision=1.0, coverage=1.0, kept=33, right=33, held_out=33
    )
    scores = descending(100)
    chosen = choose_threshold([(s, True) for s in scores])
    assert chosen == Threshold(scores[-1], 1.0, 1.0, 100, 100, 100)


def test_a_wrong_answer_stops_the_threshold_above_it_unless_enough_follow() -> None:
    high = [(s, True) for s in descending(40, top=0.99)]
    miss = [(0.5, False)]
    few_after = [(s, True) for s in descending(10, top=0.4)]
    scored = few_after + miss + high  # order does not matter
    # At 0.5 the answers kept are 40 of 41 right: 40/42 < 97%; lower, 50/52 < 97%.
    assert choose_threshold(scored) == Threshold(0.951, 1.0, 40 / 51, 40, 40, 51)
    # With 100 right answers below the miss, the lowest score qualifies: 140/142 >= 97%.
    many_after = [(s, True) for s in descending(100, top=0.4)]
    lowest = choose_threshold(high + miss + many_after)
    assert lowest == Threshold(many_after[-1][0], 140 / 141, 1.0, 141, 140, 141)


def test_ties_are_kept_or_dropped_together() -> None:
    """A threshold keeps every answer of its score: a right and a wrong answer at the same
    score cannot be split, whatever their order."""
    high = [(s, True) for s in descending(33, top=0.99)]
    for tied in ([(0.8, True), (0.8, False)], [(0.8, False), (0.8, True)]):
        # At 0.8: 34 right of 35, 34/36 < 97%; the threshold stays at the 33 above.
        assert choose_threshold(high + tied) == Threshold(high[-1][0], 1.0, 33 / 35, 33, 33, 35)
    # Equal scores that are all right count as one step.
    assert choose_threshold([(0.7, True)] * 40) == Threshold(0.7, 1.0, 1.0, 40, 40, 40)


def test_a_floor_keeps_the_threshold_from_going_under_it() -> None:
    scores = descending(100, top=0.99, step=0.005)  # 0.99 down to 0.495, all right
    assert choose_threshold([(s, True) for s in scores]) == Threshold(
        scores[-1], 1.0, 1.0, 100, 100, 100
    )
    floored = choose_threshold([(s, True) for s in scores], floor=0.8)
    assert floored is not None and floored.score == 0.8 and floored.kept == 39
    # Nothing at or over the floor passes: no threshold, however many pass under it.
    assert choose_threshold([(s, True) for s in scores], floor=1.0) is None


def test_the_target_sets_how_many_answers_a_threshold_needs() -> None:
    assert choose_threshold([(0.9, True), (0.1, False)], target=0.5) == Threshold(
        0.9, 1.0, 0.5, 1, 1, 2
    )
    assert choose_threshold([(0.9, True), (0.1, False)], target=0.51) is None
    nine = [(s, True) for s in descending(9)]
    assert choose_threshold(nine, target=0.9) == Threshold(nine[-1][0], 1.0, 1.0, 9, 9, 9)
    assert choose_threshold(nine[:8], target=0.9) is None
    assert choose_threshold([(s, True) for s in descending(1000)], target=1.0) is None


# --- choose_agreement ---------------------------------------------------------------------


def test_agreeing_answers_under_the_threshold_stand_when_they_were_right() -> None:
    over = [(s, True) for s in descending(60, top=0.99)]  # 60 right over the threshold
    threshold = choose_threshold(over)
    assert threshold is not None
    under = [(0.5, True, True)] * 30 + [(0.4, False, False)] * 10  # 30 agree, all right
    readings = [(score, ok, False) for score, ok in over] + under
    threshold = Threshold(threshold.score, 1.0, 60 / 100, 60, 60, 100)
    assert choose_agreement(readings, threshold) == Agreement(1.0, 30, 30, 0.9)
    # Answers over the threshold count once, agreeing or not.
    readings = [(score, ok, True) for score, ok in over] + under
    assert choose_agreement(readings, threshold) == Agreement(1.0, 30, 30, 0.9)


def test_agreement_is_refused_when_agreeing_answers_were_wrong_too_often() -> None:
    over = [(0.99, True)] * 60
    threshold = Threshold(0.99, 1.0, 0.6, 60, 60, 100)
    # 28 of 30 right: 93% < 97%, however right the answers over the threshold were.
    under = [(0.5, True, True)] * 28 + [(0.5, False, True)] * 2 + [(0.3, False, False)] * 10
    readings = [(score, ok, False) for score, ok in over] + under
    assert choose_agreement(readings, threshold) is None
    # None agreed: nothing to stand on.
    assert choose_agreement([(score, ok, False) for score, ok in over], threshold) is None


def test_agreement_keeps_every_kept_answer_at_the_target() -> None:
    # The threshold's own answers are at the edge (33 right of 34, 97.1% by the cautious
    # count); 40 agreeing answers all right still leave the whole at 73/75 = 97.3%.
    threshold = Threshold(0.9, 33 / 34, 0.34, 34, 33, 100)
    under = [(0.5, True, True)] * 40 + [(0.3, False, False)] * 26
    readings = [(0.95, True, False)] * 33 + [(0.95, False, False)] + under
    assert choose_agreement(readings, threshold) == Agreement(1.0, 40, 40, 0.74)
    # With 31 right of 33 over it, the whole would fall under: refused.
    threshold = Threshold(0.9, 31 / 33, 0.33, 33, 31, 100)
    readings = [(0.95, True, False)] * 31 + [(0.95, False, False)] * 2 + under
    assert choose_agreement(readings, threshold) is None


# --- promotion --------------------------------------------------------------------------


THRESHOLD = Threshold(0.8125, 45 / 46, 0.92, 46, 45, 50)


def test_promotion_needs_a_threshold_and_more_right_than_the_current_engine() -> None:
    promoted, reason = promotion(47, 30, 50, THRESHOLD)
    assert promoted
    assert reason == (
        "promoted: the candidate read 47/50 held-out labels right, the current engine 30/50;"
        " answers scored 0.8125 or more stand: 45/46 right (97.8%), 92% of the held-out labels"
    )
    assert promotion(31, 30, 50, THRESHOLD)[0]


@pytest.mark.parametrize(
    ("candidate", "current", "threshold", "why"),
    [
        (30, 30, THRESHOLD, "rejected: not better than the current engine"),
        (29, 30, THRESHOLD, "rejected: not better than the current engine"),
        (50, 0, None, "rejected: no score threshold keeps its answers right often enough"),
        (0, 0, None, "rejected: no score threshold keeps its answers right often enough"),
    ],
)
def test_no_promotion_says_why_in_one_line(
    candidate: int, current: int, threshold: Threshold | None, why: str
) -> None:
    promoted, reason = promotion(candidate, current, 50, threshold)
    assert not promoted
    assert reason == (
        f"{why} (the candidate read {candidate}/50 held-out labels right,"
        f" the current engine {current}/50)"
    )
    assert "\n" not in reason


# --- should_demote ----------------------------------------------------------------------


def test_wilson_upper_bound() -> None:
    assert wilson_upper(0, 0) == 1.0
    assert wilson_upper(0, 5) == pytest.approx(0.43449, abs=1e-5)
    assert wilson_upper(39, 40) == pytest.approx(0.99557, abs=1e-5)
    assert wilson_upper(90, 100) == pytest.approx(0.94477, abs=1e-5)
    assert wilson_upper(5, 5) == 1.0


def test_demotion_is_quick_for_a_changed_captcha_and_patient_with_one_miss() -> None:
    assert not should_demote([])
    assert not should_demote([False] * 4)  # too few checks
    assert should_demote([False] * 5)  # the site changed its captcha
    assert not should_demote([True] * 39 + [False])
    assert not should_demote([True] * 5)
    assert not should_demote([True] * 9 + [False])  # upper bound 98.2%
    assert should_demote([True] * 90 + [False] * 10)  # upper bound 94.5%
    assert not should_demote([True] * 96 + [False] * 4)  # upper bound 98.4%
    assert not should_demote([False] * 9, min_checks=10)
    assert should_demote([True] * 90 + [False] * 10, bar=0.95)
    assert not should_demote([True] * 90 + [False] * 10, bar=0.94)
    # The width of the interval: 93 of 100 is under 97% at 95% (96.6%), not at 99.7% (97.6%).
    assert should_demote([True] * 93 + [False] * 7)
    assert not should_demote([True] * 93 + [False] * 7, z=3.0)


# --- training_due -----------------------------------------------------------------------


def test_training_is_due_at_the_minimum_and_then_at_each_growth() -> None:
    assert not training_due(0, 500, None)
    assert not training_due(499, 500, None)
    assert training_due(500, 500, None)
    assert training_due(5000, 500, None)
    # The last candidate learned from 500: the next at 750.
    assert not training_due(500, 500, 500)
    assert not training_due(749, 500, 500)
    assert training_due(750, 500, 500)
    # A candidate trained on 700 (the labels grew before it ran): the next at 1050.
    assert not training_due(1049, 500, 700)
    assert training_due(1050, 500, 700)
    assert training_due(550, 500, 500, growth=1.1)
    assert not training_due(549, 500, 500, growth=1.1)
    # Labels forgotten below the minimum: never due, whatever was trained before.
    assert not training_due(400, 500, 100)


def test_the_held_out_evidence_keeps_one_early_miss_from_demoting() -> None:
    # 98.3% right on its held-out labels: one miss in the first five audits stands...
    assert should_demote([True, True, False, True, True])
    assert not should_demote([True, True, False, True, True], prior=0.983)
    # ... two do not, nor does a changed captcha, whose audits all fail, at the fifth.
    assert should_demote([True, False, True, False, False], prior=0.983)
    assert should_demote([False] * 5, prior=1.0)
    assert not should_demote([False] * 4, prior=1.0)  # fewer than min_checks
    # A model that keeps missing is demoted whatever its held-out figures.
    assert should_demote([True] * 24 + [False] * 6, prior=1.0)
    assert not should_demote([True] * 39 + [False], prior=0.983)
