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
from typing import Any

CHARSET_B = string.digits + string.ascii_uppercase
CHARSET_A = string.digits + string.ascii_uppercase + string.ascii_lowercase


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


def generate(
    seed: int,
    n: int,
    charset: str,
    min_len: int,
    max_len: int,
    width: int = 160,
    height: int = 60,
    fonts: list[str] | None = None,
) -> list[tuple[bytes, str]]:
    """`n` PNG captchas with their labels; the same arguments always give the same bytes."""
    from captcha.image import ImageCaptcha

    rng = random.Random(seed)
    generator = ImageCaptcha(width=width, height=height, fonts=fonts)
    out: list[tuple[bytes, str]] = []
    with _seeded(rng):
        for _ in range(n):
            label = random_label(rng, charset, min_len, max_len)
            out.append((generator.generate(label, format="png").getvalue(), label))
    return out
