"""Dialects: one module per vendor wire format, parsing requests and rendering answers."""

from __future__ import annotations

from capgate.dialects import anticaptcha, anysolver, capsolver, vast
from capgate.dialects.base import JsonDialect

# JSON dialects a key may choose to be spoken at the root, by name.
JSON_DIALECTS: dict[str, JsonDialect] = {
    "anticaptcha": anticaptcha,
    "capsolver": capsolver,
    "anysolver": anysolver,
    "vast": vast,
}

# Where each JSON dialect is served besides the root.
JSON_PREFIXES: dict[str, JsonDialect] = {
    "/anticaptcha": anticaptcha,
    "/2captcha": anticaptcha,
    "/capmonster": anticaptcha,
    "/capsolver": capsolver,
    "/anysolver": anysolver,
    "/api/solver": vast,
}
