"""Schemathesis hooks for the fuzz tests: send the server's real key wherever a dialect
takes one, so the fuzzer gets past authentication to the parsing and validation code."""

from __future__ import annotations

import os
from typing import Any

import schemathesis

KEY = os.environ.get("CAPGATE_FUZZ_KEY", "")


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    """JSON dialects carry the key as clientKey, the legacy form as key."""
    if KEY and isinstance(body, dict):
        for field in ("clientKey", "key"):
            if isinstance(body.get(field), str):
                body[field] = KEY
    return body


@schemathesis.hook
def map_query(context: Any, query: Any) -> Any:
    """The legacy API takes ?key=, uCaptcha ?token=."""
    if KEY and isinstance(query, dict):
        for field in ("key", "token"):
            if isinstance(query.get(field), str):
                query[field] = KEY
    return query


@schemathesis.hook
def map_headers(context: Any, headers: Any) -> Any:
    """uCaptcha takes the key in x-api-key."""
    if KEY and isinstance(headers, dict) and isinstance(headers.get("x-api-key"), str):
        headers["x-api-key"] = KEY
    return headers
