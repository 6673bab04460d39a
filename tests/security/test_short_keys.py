"""Keys an operator chooses (admin_key, CAPGATE_BOOTSTRAP_KEY) are stored and compared
like random ones: under 16 characters they could be guessed, so the server will not start
with one, and says why in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import BOOTSTRAP_KEY, ServerFactory, free_port

pytestmark = pytest.mark.system


def serve(data: Path, **env: str) -> subprocess.CompletedProcess[str] | None:
    """Run `capgate serve` with these CAPGATE_* variables; what it printed once it exited,
    or None if it was still serving after 30 s (then it is stopped)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "capgate", "serve", "--port", str(free_port()),
         "--data", str(data)],
        env={**os.environ, "CAPGATE_BOOTSTRAP_KEY": BOOTSTRAP_KEY,
             **{f"CAPGATE_{k.upper()}": v for k, v in env.items()}},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.terminate()
        process.communicate(timeout=15)
        return None
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.parametrize(
    ("setting", "named"),
    [("admin_key", "admin_key"), ("bootstrap_key", "CAPGATE_BOOTSTRAP_KEY")],
)
def test_a_short_chosen_key_stops_the_start(tmp_path: Path, setting: str, named: str) -> None:
    data = tmp_path / "data"
    done = serve(data, **{setting: "a-15-char-key!!"})
    assert done is not None, "the server started with a 15-character key"
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("capgate: error: "), done.stderr
    assert named in lines[0] and "16" in lines[0]
    assert "a-15-char-key!!" not in done.stderr + done.stdout  # A secret stays out of logs.
    assert not (data / "capgate.db").exists()  # Refused before anything was stored.


def test_a_short_key_in_the_admin_key_file_stops_the_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin.key").write_text("short\n")
    done = serve(data)
    assert done is not None and done.returncode != 0
    assert done.stderr.startswith("capgate: error: ") and "admin.key" in done.stderr
    assert "Traceback" not in done.stderr


def test_sixteen_characters_are_enough(start_server: ServerFactory, tmp_path: Path) -> None:
    admin, bootstrap = "a-16-char-key!!!", "b-16-char-key!!!"
    server = start_server(tmp_path / "data", admin_key=admin, bootstrap_key=bootstrap)
    balance = server.post("/getBalance", {"clientKey": bootstrap})
    assert balance["errorId"] == 0, balance
    overview = httpx.get(
        f"{server.base}/admin/overview", headers={"authorization": f"Bearer {admin}"}
    )
    assert overview.status_code == 200
