"""Task ids as each vendor writes them, all standing for one internal integer id.

A task is stored under a monotonic integer. Dialects whose clients expect strings render it
as a UUID (CapSolver, Vast, uCaptcha) or a ULID (AnySolver) that carries the integer in its
low bits and the creation time in its high bits, so ids still sort by time. Any dialect
reads every form, so a task created in one dialect can be read in another.
"""

from __future__ import annotations

from typing import Any

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_VALUE = {c: i for i, c in enumerate(_CROCKFORD)}
_ID_MASK = (1 << 62) - 1  # Below the UUID variant bits; no store issues ids that large.
# Version-4 / RFC-variant markers make our UUIDs pass clients' format checks.
_UUID_VERSION_BITS = (0x4 << 76) | (0x2 << 62)
# 2**63 - 1 has 19 digits. A longer string of digits is no id, and int() must not see it:
# past 4,300 digits Python refuses the conversion with a ValueError.
_MAX_DIGITS = 19


def to_uuid(task_id: int, created_at: float) -> str:
    """The UUID form: 48 bits of creation time (ms), version and variant bits, the id."""
    millis = int(created_at * 1000) & ((1 << 48) - 1)
    value = (millis << 80) | _UUID_VERSION_BITS | (task_id & _ID_MASK)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def to_ulid(task_id: int, created_at: float) -> str:
    """The ULID form: 48 bits of creation time (ms), then the id in the 80 random bits."""
    millis = int(created_at * 1000) & ((1 << 48) - 1)
    value = (millis << 80) | (task_id & _ID_MASK)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def parse_id(value: Any) -> int | None:
    """The internal id behind any form a client may send back, or None if it is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 2**63 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # not "²": isdigit() but no int
        if len(text) > _MAX_DIGITS:
            return None
        number = int(text)
        return number if 0 < number < 2**63 else None
    if len(text) == 36 and text.count("-") == 4:
        try:
            number = int(text.replace("-", ""), 16)
        except ValueError:
            return None
        task_id = number & _ID_MASK
        return task_id if task_id > 0 else None
    if len(text) == 26:
        number = 0
        for char in text.upper():
            digit = _CROCKFORD_VALUE.get(char)
            if digit is None:
                return None
            number = (number << 5) | digit
        task_id = number & _ID_MASK
        return task_id if task_id > 0 else None
    return None
