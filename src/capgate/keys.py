"""API key secrets: how they are made and how they are stored (only their SHA-256)."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from capgate.datafolder import kept_secret

# A key an operator chooses (admin_key, CAPGATE_BOOTSTRAP_KEY) is hashed unsalted like the
# random ones: fine for 128 random bits, guessable for a short word. Shorter ones are refused.
MIN_CHOSEN_KEY_CHARS = 16


def new_secret() -> str:
    """A fresh key secret: 32 hex characters, the length vendors' clients expect."""
    return secrets.token_hex(16)


def hash_secret(secret: str) -> bytes:
    """The SHA-256 of a secret, which is all the store ever sees."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def check_chosen_key(name: str, secret: str) -> None:
    """Refuse, with a ValueError that names it (never its value), a chosen key too short."""
    if 0 < len(secret) < MIN_CHOSEN_KEY_CHARS:
        raise ValueError(
            f"{name} is {len(secret)} characters; a chosen key needs at least"
            f" {MIN_CHOSEN_KEY_CHARS} (random ones: python3 -c 'import secrets;"
            " print(secrets.token_hex(16))')"
        )


def admin_key(configured: str, data: Path) -> str:
    """The operators' key (dashboard, /admin): the configured one, else one made on first
    use and kept in the data directory (DATA/admin.key, readable only by its owner).

    Either must be at least MIN_CHOSEN_KEY_CHARS long (ValueError)."""
    if configured:
        check_chosen_key("admin_key", configured)
        return configured
    path = data / "admin.key"
    key = kept_secret(path, new_secret)
    check_chosen_key(str(path), key)
    return key
