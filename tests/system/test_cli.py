"""The command line, run as a user would: separate processes."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from capgate.ocr import synth
from tests.support import BOOTSTRAP_KEY, ServerFactory, free_port, run_cli

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
    *errors, summary = done.stderr.strip().splitlines()
    assert len(errors) == 2
    assert all(line.startswith("capgate: error: ") for line in errors)
    assert summary.startswith("capgate: 2 images, 0 answered, 2 failed in ")
    assert done.stdout == "\n\n"  # one (empty) answer line per file
    assert "Traceback" not in done.stderr


def write_captchas(folder: Path, seed: int, n: int) -> list[tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (png, label) in enumerate(synth.generate(seed, n, synth.CHARSET_B, 4, 4)):
        path = folder / f"c{i:02d}.png"
        path.write_bytes(png)
        written.append((path, label))
    return written


def test_solve_takes_a_folder_and_answers_in_csv_or_json(tmp_path: Path) -> None:
    written = write_captchas(tmp_path / "batch" / "inner", 7, 6)
    (tmp_path / "batch" / "notes.txt").write_text("not an image")
    done = run_cli("solve", str(tmp_path / "batch"), "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [row["file"] for row in rows] == [str(path) for path, _ in written]
    right = sum(row["answer"] == label for row, (_, label) in zip(rows, written, strict=True))
    assert right >= 5
    assert all(0 <= float(row["confidence"]) <= 1 and row["error"] == "" for row in rows)
    assert done.stderr.strip().startswith("capgate: 6 images, 6 answered, 0 failed")

    done = run_cli("solve", str(written[0][0]), str(tmp_path / "gone.png"), "--format", "json")
    assert done.returncode == 1
    first, second = json.loads(done.stdout)
    assert first["file"] == str(written[0][0]) and first["error"] is None
    assert second["answer"] is None and "No such file" in second["error"]


def test_solve_through_a_server(tmp_path: Path, start_server: ServerFactory) -> None:
    server = start_server()
    written = write_captchas(tmp_path / "batch", 8, 5)
    done = run_cli(
        "solve", str(tmp_path / "batch"), "--server", server.base, "--key", BOOTSTRAP_KEY,
        "--format", "json", "--concurrency", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    assert [a["file"] for a in answers] == [str(path) for path, _ in written]
    right = sum(a["answer"] == label for a, (_, label) in zip(answers, written, strict=True))
    assert right >= 4
    # Each image was a task on the server, charged there.
    balance = server.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"]
    assert balance == pytest.approx(10 - 5 * 0.001)
    refused = run_cli("solve", str(tmp_path / "batch"), "--server", server.base, "--key", "bad")
    assert refused.returncode == 1
    assert refused.stderr.count("capgate: error: ") == 5 and "Traceback" not in refused.stderr


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


def test_ocr_train_tells_mistakes_in_one_line(tmp_path: Path) -> None:
    """Whether or not torch is installed: the data and the models are checked first."""
    data = tmp_path / "mine"
    written = write_captchas(data / "images", 12, 6)
    rows = "".join(f"{path.name},{label}\n" for path, label in written)
    (data / "labels.csv").write_text("filename,text\n" + rows)
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.onnx").write_bytes(b"")
    out = ["--out", str(tmp_path / "out")]
    for given, expected in (
        (["--data", str(tmp_path / "nothing")], "no folder "),
        (["--data", str(data / "labels.csv")], "is a file, not a folder"),
        (["--data", str(data)], "must be headed file,label"),
        (["--data", str(data), "--base", str(model)], "has no model.json beside it"),
    ):
        done = run_cli("ocr", "train", *given, *out)
        assert done.returncode == 1, done.stderr
        assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    (data / "labels.csv").write_text("file,label\n" + rows + "gone.png,AB12\n")
    done = run_cli("ocr", "train", "--data", str(data), *out)
    assert done.returncode == 1 and "lists gone.png, not found" in done.stderr
    assert done.stderr.count("\n") == 1 and not (tmp_path / "out").exists()


def test_solve_takes_a_model_folder_a_data_directory_and_task_options(tmp_path: Path) -> None:
    from capgate.ocr.engine import DEFAULT_MODEL

    written = write_captchas(tmp_path / "batch", 13, 4)
    folder = tmp_path / "capgate-ocr-model"  # what `capgate ocr train` writes and prints
    (tmp_path / "data" / "ocr").mkdir(parents=True)
    folder.mkdir()
    for name in ("model.onnx", "model.json"):
        shutil.copyfile(DEFAULT_MODEL.with_name(name), folder / name)
        shutil.copyfile(DEFAULT_MODEL.with_name(name), tmp_path / "data" / "ocr" / name)
    labels = [label for _, label in written]
    for chosen in (["--model", str(folder)], ["--data", str(tmp_path / "data")]):
        done = run_cli("solve", *chosen, str(tmp_path / "batch"))
        assert done.returncode == 0, done.stderr
        right = sum(a == b for a, b in zip(done.stdout.split(), labels, strict=True))
        assert right >= 3, done.stdout
    done = run_cli("solve", "--numeric", "1", "--max-length", "3", str(tmp_path / "batch"))
    assert done.returncode == 0, done.stderr
    assert all(a.isdigit() and len(a) <= 3 for a in done.stdout.split()), done.stdout
    (folder / "model.json").unlink()
    done = run_cli("solve", "--model", str(folder), str(tmp_path / "batch"))
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "has no model.json beside it" in done.stderr and "Traceback" not in done.stderr
