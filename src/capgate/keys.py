"""API key secrets: how they are made and how they are stored (only their SHA-256)."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path


def new_secret() -> str:
    """A fresh key secret: 32 hex characters, the length vendors' clients expect."""
    return secrets.token_hex(16)


def hash_secret(secret: str) -> bytes:
    """The SHA-256 of a secret, which is all the store ever sees."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def admin_key(configured: str, data: Path) -> str:
    """The operators' key (dashboard, /admin): the configured one, else one made on first
    use and kept in the data directory (DATA/admin.key, readable only by its owner)."""
    if configured:
        return configured
    path = data / "admin.key"
    if not path.exists():
        data.mkdir(parents=True, exist_ok=True)
        path.write_text(new_secret())
        path.chmod(0o600)
    return path.read_text().strip()
