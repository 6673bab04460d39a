"""The docs that restate the code's tables say what the code does."""

from __future__ import annotations

from pathlib import Path

from capgate.dialects import anticaptcha, anysolver, capsolver, twocaptcha_legacy, ucaptcha, vast
from capgate.model import ErrorCode

DOCS = Path(__file__).parents[2] / "docs"


def test_every_dialects_error_codes_are_documented() -> None:
    text = (DOCS / "errors.md").read_text()
    for code in ErrorCode:
        a, n, u = anticaptcha.ERRORS[code], anysolver.ERRORS[code], ucaptcha.ERRORS[code]
        row = (
            f"| `{code.value}` | {a[0]} `{a[1]}` | `{capsolver.ERRORS[code]}` | {n[0]} `{n[1]}`"
            f" | `{vast.ERRORS[code]}` | {u[0]} `{u[1]}` | `{twocaptcha_legacy.ERRORS[code]}` |"
        )
        assert row in text, f"docs/errors.md lacks or misstates: {row}"
