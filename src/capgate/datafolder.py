"""The data folder is its owner's alone: it holds captcha images, task fields (proxy
credentials, cookies), key hashes and the admin and signing keys.

`secure_data_folder` runs before a command opens the folder: the folder becomes 0700 and
what already lies in it 0600 (folders 0700), and the process umask becomes 077, so what is
written later (SQLite's -wal and -shm, labels, models) is the owner's alone from the start.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def secure_data_folder(data: Path, store: str = "sqlite") -> None:
    """Make `data` (created if missing) and what lies in it readable by its owner only;
    likewise a SQLite file that `store` puts elsewhere. Raises ValueError, in one line,
    where that is not allowed."""
    os.umask(0o077)
    try:
        data.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
        data.chmod(FOLDER_MODE)
        # The folder's own mode guards everything below it: one level is enough, and a
        # large labels/ folder costs nothing at start.
        for entry in data.iterdir():
            _restrict(entry)
        if store.startswith("sqlite:///"):
            database = store.removeprefix("sqlite:///")
            for suffix in ("", "-wal", "-shm", "-journal"):
                _restrict(Path(database + suffix))
    except OSError as exc:
        raise ValueError(f"cannot make the data folder private: {exc}") from None


def _restrict(path: Path) -> None:
    """0700 for a folder, 0600 for a file; a link is left alone (chmod would follow it out
    of the folder), and so is what does not exist."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        wanted = FOLDER_MODE
    elif stat.S_ISREG(info.st_mode):
        wanted = FILE_MODE
    else:
        return
    if stat.S_IMODE(info.st_mode) & ~wanted:
        path.chmod(wanted)


def kept_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in `path`, made by `make` on first use: the file is created 0600, so
    it is never readable by others even for a moment, and only once when several server
    processes start together (the first one's stands)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:  # Another process made it first.
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(make())
    return path.read_text().strip()
