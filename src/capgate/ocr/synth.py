"""Reproducible captchas from the `captcha` package, for training, tests and benchmarks.

The package draws its randomness from the `secrets` module, which cannot be seeded; while
generating, capgate swaps in an object with the same three functions backed by a seeded
`random.Random`, so the same seed always gives the same bytes.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from capgate.ocr.grammar import OPERATORS, TIMES

CHARSET_B = string.digits + string.ascii_uppercase
CHARSET_A = string.digits + string.ascii_uppercase + string.ascii_lowercase
# What a model that reads phrases and sums needs beyond set A's characters.
CHARSET_EXTENDED = CHARSET_A + " " + OPERATORS + "=?"
PHRASE_GAP = "   "  # Drawn between words: wider than the package's own random spacing.


class _SeededSecrets:
    """The part of the `secrets` API that `captcha.image` uses, made reproducible."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def randbelow(self, n: int) -> int:
        return self._rng.randrange(n)

    def randbits(self, k: int) -> int:
        return self._rng.getrandbits(k)

    def choice(self, seq: Sequence[Any]) -> Any:
        return self._rng.choice(seq)


@contextmanager
def _seeded(rng: random.Random) -> Iterator[None]:
    import captcha.image

    namespace = vars(captcha.image)
    original = namespace["secrets"]
    namespace["secrets"] = _SeededSecrets(rng)
    try:
        yield
    finally:
        namespace["secrets"] = original


def random_label(rng: random.Random, charset: str, min_len: int, max_len: int) -> str:
    """A random captcha text of a random length in [min_len, max_len]."""
    length = rng.randint(min_len, max_len)
    return "".join(rng.choice(charset) for _ in range(length))


def math_label(rng: random.Random) -> str:
    """A sum as math captchas show it: `7+12`, `15-3=?`, `4` times `6=` (with TIMES)."""
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    operator = rng.choice(OPERATORS)
    if operator == "-" and b > a:
        a, b = b, a
    if operator == TIMES:
        b = rng.randint(0, 9)
    return f"{a}{operator}{b}" + rng.choice(("", "=", "=?"))


def phrase_label(rng: random.Random) -> str:
    """Two short words, as phrase captchas show them: `ab xyz`."""
    words = (random_label(rng, string.ascii_lowercase, 2, 4) for _ in range(2))
    return " ".join(words)


def drawn(label: str) -> str:
    """The text to draw for a label: a phrase's single spaces are drawn as a wide gap."""
    return label.replace(" ", PHRASE_GAP)


def generate(
    seed: int,
    n: int,
    charset: str,
    min_len: int,
    max_len: int,
    width: int = 160,
    height: int = 60,
    fonts: list[str] | None = None,
    kind: str = "text",
) -> list[tuple[bytes, str]]:
    """`n` PNG captchas with their labels; the same arguments always give the same bytes.

    `kind` "math" draws sums (`math_label`) and "phrase" two words (`phrase_label`); both
    ignore the charset and lengths."""
    from captcha.image import ImageCaptcha

    rng = random.Random(seed)
    generator = ImageCaptcha(width=width, height=height, fonts=fonts)
    out: list[tuple[bytes, str]] = []
    with _seeded(rng):
        for _ in range(n):
            if kind == "math":
                label = math_label(rng)
            elif kind == "phrase":
                label = phrase_label(rng)
            else:
                label = random_label(rng, charset, min_len, max_len)
            out.append((generator.generate(drawn(label), format="png").getvalue(), label))
    return out


# The named sets that benchmarks/ocr.py and training/calibrate.py read, each script with
# seeds of its own: (alphabet, shortest, longest, drawn in DejaVu fonts, kind). The
# `-dejavu` sets draw in Debian's DejaVu fonts, which the model was never trained on.
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
NAMED_SETS: dict[str, tuple[str, int, int, bool, str]] = {
    "B": (CHARSET_B, 4, 4, False, "text"),
    "A": (CHARSET_A, 4, 6, False, "text"),
    "B-dejavu": (CHARSET_B, 4, 4, True, "text"),
    "A-dejavu": (CHARSET_A, 4, 6, True, "text"),
    "math": ("", 0, 0, False, "math"),
    "phrase": ("", 0, 0, False, "phrase"),
}


def named_set(name: str, seed: int, n: int) -> list[tuple[bytes, str]] | None:
    """`n` captchas of the named set from `seed`; None where its fonts are not installed."""
    charset, shortest, longest, dejavu, kind = NAMED_SETS[name]
    if dejavu and not DEJAVU.is_dir():
        return None
    fonts = (
        [str(DEJAVU / f) for f in ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")]
        if dejavu
        else None
    )
    return generate(seed, n, charset, shortest, longest, fonts=fonts, kind=kind)
