"""Dashboard sessions: signed tokens that expire, ended for every server process by a
logout.

A token is `v1.<issued ms>.<expires ms>.<random>.<HMAC-SHA256>`, signed with a key
derived from the admin key: any server process (`serve --workers N`) that shares the
admin key checks it without shared state, and a new admin key ends every session. A
logout writes "sessions issued at or before T are ended" to DATA/dashboard.logout; each
process reads the file again when it changes (one stat per dashboard request), so the
logout holds in all of them and across restarts. It ends every session, not only the
one that logged out: there is one admin key, so every session is the same operator,
and a stolen copy of a cookie dies with the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from capgate.clock import Clock

log = logging.getLogger("capgate.api")

# Absolute lifetime: a session ends this long after the log-in, whatever happens.
SESSION_SECONDS = 12 * 3600
LOGOUT_FILE = "dashboard.logout"
_VERSION = b"v1"
_MAX_TOKEN_BYTES = 200
_MAX_MS_DIGITS = 15  # Milliseconds since the epoch have 13 digits until the year 2286.


class DashboardSessions:
    """Issues and checks the dashboard's session tokens; ends them all on logout."""

    def __init__(
        self,
        admin_key: str,
        clock: Clock,
        data: Path | None,
        lifetime: float = SESSION_SECONDS,
    ) -> None:
        self._key = hmac.new(
            admin_key.encode("utf-8", "surrogatepass"),
            b"capgate dashboard session v1",
            hashlib.sha256,
        ).digest()
        self._clock = clock
        self.lifetime = lifetime
        self._file = data / LOGOUT_FILE if data is not None else None
        self._file_seen: tuple[int, int, int] | None = None
        self._ended_ms = 0  # Sessions issued at or before this are over.

    def issue(self) -> bytes:
        """A new session token."""
        self._read_logout()
        # Strictly after the last logout, even within the same millisecond.
        issued = max(self._now_ms(), self._ended_ms + 1)
        expires = issued + int(self.lifetime * 1000)
        body = b"%s.%d.%d.%s" % (_VERSION, issued, expires, secrets.token_hex(16).encode())
        return body + b"." + self._sign(body)

    def valid(self, token: bytes) -> bool:
        """Whether `token` is one of ours, unexpired and not ended by a logout."""
        if len(token) > _MAX_TOKEN_BYTES:
            return False
        body, _, mac = token.rpartition(b".")
        fields = body.split(b".")
        if len(fields) != 4 or fields[0] != _VERSION:
            return False
        if not hmac.compare_digest(mac, self._sign(body)):
            return False
        issued, expires = _millis(fields[1]), _millis(fields[2])
        if issued is None or expires is None or self._now_ms() >= expires:
            return False
        self._read_logout()
        return issued > self._ended_ms

    def end_all(self) -> None:
        """Log out: every session issued until now ends, in every process."""
        self._read_logout()
        self._ended_ms = max(self._ended_ms, self._now_ms())
        if self._file is None:
            return
        temporary = self._file.with_name(f".{LOGOUT_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(f"{self._ended_ms}\n")
            os.replace(temporary, self._file)  # Readers see the old time or the new one.
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            log.warning("dashboard: the logout holds in this process only: %s", exc)

    def _read_logout(self) -> None:
        """Take in a logout another process wrote (times only move forward)."""
        if self._file is None:
            return
        try:
            status = self._file.stat()
            # A replaced file is a new inode, even within one mtime tick.
            seen = (status.st_ino, status.st_mtime_ns, status.st_size)
            if seen == self._file_seen:
                return
            text = self._file.read_text(encoding="ascii", errors="replace")[:32]
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("dashboard: cannot read %s: %s", self._file, exc)
            return
        self._file_seen = seen
        ended = _millis(text.strip().encode("ascii", "replace"))
        if ended is not None:
            self._ended_ms = max(self._ended_ms, ended)

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).hexdigest().encode()

    def _now_ms(self) -> int:
        return int(self._clock.now() * 1000)


def _millis(text: bytes) -> int | None:
    """A count of milliseconds; None unless a short string of ASCII digits."""
    if not 0 < len(text) <= _MAX_MS_DIGITS or not text.isdigit():
        return None
    return int(text)
