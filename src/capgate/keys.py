"""API key secrets: how they are made and how they are stored (only their SHA-256)."""

from __future__ import annotations

import hashlib
import secrets


def new_secret() -> str:
    """A fresh key secret: 32 hex characters, the length vendors' clients expect."""
    return secrets.token_hex(16)


def hash_secret(secret: str) -> bytes:
    """The SHA-256 of a secret, which is all the store ever sees."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()
