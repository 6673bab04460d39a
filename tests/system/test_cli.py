"""The command line, run as a user would: separate processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from capgate.ocr import synth
from tests.support import free_port, run_cli

pytestmark = pytest.mark.system


def test_solve_reads_images_without_a_server(tmp_path: Path) -> None:
    samples = synth.generate(2024, 8, synth.CHARSET_B, 4, 4)
    paths = []
    for i, (png, _) in enumerate(samples):
        path = tmp_path / f"c{i}.png"
        path.write_bytes(png)
        paths.append(str(path))
    done = run_cli("solve", *paths)
    assert done.returncode == 0, done.stderr
    answers = done.stdout.splitlines()
    assert len(answers) == len(samples)
    right = sum(a == label for a, (_, label) in zip(answers, samples, strict=True))
    assert right >= 6, f"{right} of 8 read correctly: {answers}"


def test_solve_reports_unreadable_files_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    done = run_cli("solve", str(junk), str(tmp_path / "missing.png"))
    assert done.returncode == 1
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 2
    assert all(line.startswith("capgate: error: ") for line in errors)
    assert "Traceback" not in done.stderr


def test_keys_create_rejects_a_bad_balance(tmp_path: Path) -> None:
    done = run_cli("keys", "create", "--balance", "lots", "--data", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.startswith("capgate: error: ")
    assert "Traceback" not in done.stderr


def test_first_start_creates_and_prints_one_key(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPGATE_")}
    env["CAPGATE_OCR"] = "false"
    command = [
        sys.executable, "-m", "capgate", "serve",
        "--port", str(port), "--data", str(tmp_path / "data"),
    ]  # fmt: skip
    secrets_seen = []
    for _ in range(2):
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
        finally:
            process.terminate()
            out, _ = process.communicate(timeout=15)
        secrets_seen.append([w for w in out.split() if len(w) == 32])
    first, second = secrets_seen
    assert len(first) == 1, "the first start prints exactly one new key"
    assert second == [], "a later start prints no key"
    listing = run_cli("keys", "list", "--data", str(tmp_path / "data"))
    assert listing.returncode == 0
    assert first[0] not in listing.stdout
    assert "10.00000" in listing.stdout
