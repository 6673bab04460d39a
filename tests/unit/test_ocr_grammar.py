"""Grammar-constrained decoding: sums and phrases are read in their shape, and evaluated."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from capgate.ocr.grammar import best_path, evaluate, phrase_grammar, sum_grammar


def collapse(path: list[int] | tuple[int, ...], charset: str) -> str:
    out, previous = [], 0
    for cls in path:
        if cls not in (0, previous):
            out.append(charset[cls - 1])
        previous = cls
    return "".join(out)


@pytest.mark.parametrize(
    ("text", "accepted", "value"),
    [
        ("12+7", True, "19"),
        ("12+7=?", True, "19"),
        ("9-12=", True, "-3"),
        ("4\N{MULTIPLICATION SIGN}6", True, "24"),
        ("+1", False, None),
        ("12+", False, None),
        ("1+2+3", False, None),
        ("7=?", False, None),
        ("1234+1", False, "1235"),  # four digits: evaluable, but not a sum the grammar reads
    ],
)
def test_sums(text: str, accepted: bool, value: str | None) -> None:
    assert sum_grammar().accepts(text) is accepted
    assert evaluate(text) == value


def test_phrases_need_two_words_and_single_spaces() -> None:
    grammar = phrase_grammar("ab")
    assert grammar.accepts("ab ba") and grammar.accepts("a b a")
    for text in ("ab", "ab  ba", " ab", "ab ", "ac b"):
        assert not grammar.accepts(text)


@pytest.mark.parametrize("seed", range(25))
def test_best_path_is_the_most_likely_accepted_path(seed: int) -> None:
    # Checked against every path there is, on small random frame matrices.
    charset = "1+ "
    grammar = phrase_grammar("1+") if seed % 2 else sum_grammar(max_digits=2)
    rng = np.random.default_rng(seed)
    frames, classes = 6, len(charset) + 1
    probs = rng.dirichlet(np.ones(classes), size=frames).astype(np.float32)
    logp = np.log(probs)

    def score(path: tuple[int, ...] | list[int]) -> float:
        return float(sum(logp[t, c] for t, c in enumerate(path)))

    accepted = [
        p
        for p in itertools.product(range(classes), repeat=frames)
        if grammar.accepts(collapse(p, charset))
    ]
    path = best_path(probs, grammar, charset)
    if not accepted:
        assert path == []
        return
    assert len(path) == frames and grammar.accepts(collapse(path, charset))
    assert score(path) == pytest.approx(max(score(p) for p in accepted), abs=1e-4)
