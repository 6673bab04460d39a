"""Grammars for readings with a shape: a sum (`12+7=?`) or a phrase (`two words`).

A grammar is a small automaton over characters. The decoder searches for the most likely
frame path whose text the automaton accepts (`best_path`), so a sum is read as a sum and a
phrase as words separated by single spaces, instead of being read freely and filtered.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

TIMES = "\N{MULTIPLICATION SIGN}"
OPERATORS = "+-" + TIMES


@dataclass(frozen=True)
class Grammar:
    """An automaton: from `start`, each (state, characters, next state) edge reads one of
    its characters; a text is accepted if it ends in an `accepting` state."""

    edges: tuple[tuple[int, str, int], ...]
    accepting: frozenset[int]
    start: int = 0

    @property
    def states(self) -> int:
        """How many states the automaton has."""
        return 1 + max(max(a, b) for a, b in ((e[0], e[2]) for e in self.edges))

    def accepts(self, text: str) -> bool:
        """True if the automaton accepts `text` (for tests and checks)."""
        state = self.start
        for char in text:
            for source, chars, target in self.edges:
                if source == state and char in chars:
                    state = target
                    break
            else:
                return False
        return state in self.accepting


def sum_grammar(max_digits: int = 3) -> Grammar:
    """`a op b`, each number of up to `max_digits` digits, optionally followed by `=` or
    `=?`, as math captchas show a sum."""
    digits = string.digits
    edges: list[tuple[int, str, int]] = []
    # States 1..n: n digits of the first number; n+1: after the operator; n+2..2n+1: the
    # second number; 2n+2: after "="; 2n+3: after "?".
    n = max_digits
    for i in range(n):
        edges.append((i, digits, i + 1))
        edges.append((n + 1 + i, digits, n + 2 + i))
    for i in range(1, n + 1):
        edges.append((i, OPERATORS, n + 1))
        edges.append((n + 1 + i, "=", 2 * n + 2))
    edges.append((2 * n + 2, "?", 2 * n + 3))
    accepting = frozenset(range(n + 2, 2 * n + 4))
    return Grammar(tuple(edges), accepting)


def phrase_grammar(word_chars: str) -> Grammar:
    """Two or more words of `word_chars`, one space between each two."""
    # 1: in the first word; 2: after a space; 3: in a later word.
    edges = (
        (0, word_chars, 1),
        (1, word_chars, 1),
        (1, " ", 2),
        (2, word_chars, 3),
        (3, word_chars, 3),
        (3, " ", 2),
    )
    return Grammar(edges, frozenset({3}))


_SUM = re.compile(r"(\d+)([" + re.escape(OPERATORS) + r"])(\d+)(=\??)?")


def evaluate(text: str) -> str | None:
    """The value of a sum as the sum grammar reads it (`12+7=?` -> `19`); None if `text`
    is not one."""
    match = _SUM.fullmatch(text)
    if match is None:
        return None
    a, operator, b = int(match[1]), match[2], int(match[3])
    value = a + b if operator == "+" else a - b if operator == "-" else a * b
    return str(value)


@lru_cache(maxsize=64)
def _edges(
    grammar: Grammar, charset: str
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The automaton over this charset's classes (class i + 1 is charset[i]; class 0 is
    the blank, which reads nothing): each edge as (source state, class, target state)."""
    sources, classes, targets = [], [], []
    for source, chars, target in grammar.edges:
        for char in chars:
            index = charset.find(char)
            if index >= 0:
                sources.append(source)
                classes.append(index + 1)
                targets.append(target)
    return (
        np.array(sources, dtype=np.intp),
        np.array(classes, dtype=np.intp),
        np.array(targets, dtype=np.intp),
    )


def best_path(probs: npt.NDArray[np.float32], grammar: Grammar, charset: str) -> list[int]:
    """The most likely CTC frame path whose collapsed text the grammar accepts; empty if
    none can be read in these frames.

    A Viterbi search over (automaton state, class of the last frame): a blank or a repeat
    of the last class reads nothing; a new class reads its character and moves along an
    edge. Every edge is tried at once each frame.
    """
    sources, chars, targets = _edges(grammar, charset)
    frames, classes = probs.shape
    states = grammar.states
    logp = np.log(np.maximum(probs, 1e-30))
    score = np.full((states, classes), -np.inf)
    score[grammar.start, 0] = logp[0, 0]
    first = sources == grammar.start
    score[targets[first], chars[first]] = logp[0, chars[first]]
    back_state = np.zeros((frames, states, classes), dtype=np.int16)
    back_class = np.zeros((frames, states, classes), dtype=np.int16)
    all_states = np.arange(states)
    for t in range(1, frames):
        best = score.argmax(axis=1)
        best_score = score[all_states, best]
        runner = score.copy()
        runner[all_states, best] = -np.inf
        second = runner.argmax(axis=1)
        second_score = runner[all_states, second]
        # Staying on the last class (a blank stays a blank) reads nothing.
        new = score.copy()
        back_state[t] = all_states[:, None]
        back_class[t] = np.arange(classes)[None, :]
        # A blank may follow anything and reads nothing.
        new[:, 0] = best_score
        back_class[t][:, 0] = best
        # A new class reads its character along an edge: from any class but itself (CTC
        # merges repeats). Where several edges meet in one cell, the best one counts.
        repeat = best[sources] == chars
        came = np.where(repeat, second_score[sources], best_score[sources])
        came_from = np.where(repeat, second[sources], best[sources])
        order = np.argsort(-came, kind="stable")  # best first
        cells = targets[order] * classes + chars[order]
        _, firsts = np.unique(cells, return_index=True)  # each cell's best edge
        keep = order[firsts]
        into, read, came, came_from, src = (
            targets[keep],
            chars[keep],
            came[keep],
            came_from[keep],
            sources[keep],
        )
        better = came > new[into, read]
        into, read = into[better], read[better]
        new[into, read] = came[better]
        back_state[t][into, read] = src[better]
        back_class[t][into, read] = came_from[better]
        score = new + logp[t][None, :]
    accepting = sorted(grammar.accepting)
    ends = score[accepting]
    if not np.isfinite(ends).any():
        return []
    flat = int(ends.argmax())
    state, cls = accepting[flat // classes], flat % classes
    path = [cls]
    for t in range(frames - 1, 0, -1):
        state, cls = int(back_state[t][state, cls]), int(back_class[t][state, cls])
        path.append(cls)
    return path[::-1]
