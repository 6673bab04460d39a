"""The data folder holds images, task fields (proxy credentials, cookies) and key hashes:
it is the owner's alone, whatever umask the server was started under."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import BOOTSTRAP_KEY, ServerFactory, captchas, image_task, run_cli

pytestmark = pytest.mark.system


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """Processes started meanwhile inherit the usual umask, which makes files 0644."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.mark.usefixtures("umask_022")
def test_the_server_keeps_its_data_to_its_owner(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    # What an earlier version, or an operator, left readable by all.
    (data / "labels").mkdir(parents=True)
    (data / "labels" / "1.png").write_bytes(b"png")
    (data / "callback.key").write_text("k" * 64)
    for path in (data, data / "labels", data / "labels" / "1.png", data / "callback.key"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    server = start_server(data)
    body, _ = captchas(7301, 1)[0]
    created = server.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)})
    assert created["errorId"] == 0, created
    assert mode(data) == 0o700
    assert mode(data / "labels") == 0o700
    for name in ("capgate.db", "capgate.db-wal", "capgate.db-shm", "admin.key", "callback.key"):
        assert mode(data / name) == 0o600, name


@pytest.mark.usefixtures("umask_022")
def test_cli_commands_that_open_the_data_folder_keep_it_private(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    created = run_cli("keys", "create", "--data", str(data))
    assert created.returncode == 0, created.stderr
    assert mode(data) == 0o700
    assert mode(data / "capgate.db") == 0o600
    elsewhere = tmp_path / "elsewhere.db"
    listing = run_cli("keys", "list", "--data", str(data), "--store", f"sqlite:///{elsewhere}")
    assert listing.returncode == 0, listing.stderr
    assert mode(elsewhere) == 0o600
