"""A real capgate server process on a loopback port, for system tests."""

from __future__ import annotations

import base64
import importlib.util
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import requests

from capgate.model import Task, TaskStatus, TaskType
from capgate.ocr import synth

BOOTSTRAP_KEY = "0123456789abcdef0123456789abcdef"
# The project's shared folder beside the checkout (seed documents, real captchas). A clone
# from the project's public home has none.
SHARED = Path(__file__).resolve().parents[2] / "shared"

# The training scripts: a folder of scripts, not a package.
TRAINING = Path(__file__).resolve().parents[1] / "training"


def training_script(name: str) -> ModuleType:
    """training/NAME.py imported as the module NAME (registered in sys.modules first, as
    its dataclasses need)."""
    spec = importlib.util.spec_from_file_location(name, TRAINING / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# Where a capgate serves each vendor API (the SDK's and the upstream adapters' `kind`s).
DIALECT_PATHS = {
    "anticaptcha": "",
    "2captcha": "/2captcha",
    "capmonster": "/capmonster",
    "capsolver": "/capsolver",
    "anysolver": "/anysolver",
    "vast": "/api/solver",
    "ucaptcha": "",
}


def seed_document(number: str) -> Path:
    """Seed document NUMBER ("002") from ../shared/seeds.

    Skips the test where the checkout has no ../shared beside it (a clone from the
    project's public home), but fails under CI=true, where the seeds must be tested.
    """
    found = sorted((SHARED / "seeds").glob(f"{number}_*.txt"))
    if not found:
        reason = f"seed document {number} is not here: no {SHARED / 'seeds'} beside this checkout"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found[0]


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_redis(url: str, seconds: float = 10.0) -> None:
    """Wait until the redis-server at `url` answers PING; fail after `seconds`."""
    import redis

    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + seconds
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    finally:
        client.close()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `capgate ARGS...` as a separate process and capture what it prints."""
    return subprocess.run(
        [sys.executable, "-m", "capgate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


class CapgateServer:
    """`capgate serve` in its own process, with a test clock the tests can move."""

    def __init__(self, data: Path, *args: str, **settings: str) -> None:
        self.data = data
        self.args = args
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "CAPGATE_BOOTSTRAP_KEY": BOOTSTRAP_KEY,
            "CAPGATE_BOOTSTRAP_BALANCE": "10",
            "CAPGATE_TEST_CLOCK": "1",
            "CAPGATE_LOG_LEVEL": "warning",
            **{f"CAPGATE_{k.upper()}": v for k, v in settings.items()},
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.base, timeout=30)
        self.log = data / "server.log"

    def start(self) -> CapgateServer:
        """Start the process and wait until /healthz answers."""
        self.data.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "capgate", "serve",
                    "--host", "127.0.0.1", "--port", str(self.port), "--data", str(self.data),
                    *self.args,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if self.http.get("/healthz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not become ready:\n{self.log.read_text()}")

    def kill9(self) -> None:
        """SIGKILL the server: no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        """Stop the server the polite way."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None
        self.http.close()

    def post(self, path: str, payload: Any = None, *, content: bytes | None = None) -> Any:
        """POST JSON (or raw bytes) and return the decoded JSON answer; asserts HTTP 200."""
        if content is None:
            response = self.http.post(path, json=payload)
        else:
            response = self.http.post(path, content=content)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        return response.json()

    def advance(self, seconds: float) -> None:
        """Move the server's clock forward and let its housekeeping run."""
        response = self.http.post("/_test/clock", json={"advance": seconds})
        assert response.status_code == 200, response.text

    def db_counts(self) -> tuple[int, int]:
        """(tasks stored, sum of balances) read straight from the SQLite file."""
        with sqlite3.connect(self.data / "capgate.db") as db:
            tasks = db.execute("SELECT count(*) FROM tasks").fetchone()[0]
            money = db.execute("SELECT sum(balance) FROM keys").fetchone()[0]
        db.close()
        return int(tasks), int(money or 0)

    def wait_final(self, key: str, task_id: int, timeout: float = 60) -> Any:
        """Poll getTaskResult until the task is no longer processing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.post("/getTaskResult", {"clientKey": key, "taskId": task_id})
            if answer.get("status") != "processing":
                return answer
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} still processing after {timeout} s")


ServerFactory = Callable[..., CapgateServer]


def captchas(seed: int, n: int) -> list[tuple[str, str]]:
    """Fresh 4-character digit+uppercase captchas as (base64 PNG, label)."""
    images = synth.generate(seed, n, synth.CHARSET_B, 4, 4)
    return [(base64.b64encode(png).decode(), label) for png, label in images]


def image_task(body: str) -> dict[str, str]:
    """An ImageToTextTask object as clients send it."""
    return {"type": "ImageToTextTask", "body": body}


def make_task(status: TaskStatus, task_type: TaskType, **fields: Any) -> Task:
    """A stored task for unit tests: every required field filled, any of them overridable.

    The deadline and the retention default to the server's (120 s and 24 h) after
    `created_at`.
    """
    created_at = float(fields.get("created_at", 1_764_000_000.25))
    values: dict[str, Any] = {
        "id": 42,
        "key_id": 1,
        "type": task_type,
        "params": {},
        "body": None,
        "status": status,
        "created_at": created_at,
        "deadline_at": created_at + 120,
        "cost": 1000,
        "ip": "127.0.0.1",
        "expires_at": created_at + 86400,
        "attempts": 1,
        **fields,
    }
    return Task(**values)


class RewritingSession(requests.Session):
    """A requests session that sends a vendor's hard-coded host to the test server instead."""

    def __init__(self, host: str, base: str) -> None:
        super().__init__()
        self.host, self.base = host, base

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        target = url.decode() if isinstance(url, bytes) else url
        return super().request(method, target.replace(self.host, self.base), *args, **kwargs)


def realworld_set(name: str) -> Path:
    """The labelled real captchas of ../shared/data/realworld/NAME (labels.csv, images/).

    Skips where the checkout has no ../shared beside it, but fails under CI=true.
    """
    folder = SHARED / "data" / "realworld" / name
    if not (folder / "labels.csv").is_file():
        reason = f"the real captcha set {name} is not here: no {folder} beside this checkout"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return folder


def labelled_images(folder: Path) -> list[tuple[bytes, str]]:
    """(image bytes, label) of a labelled folder, in labels.csv's order."""
    import csv

    with (folder / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    found = []
    for row in rows:
        path = folder / "images" / row["file"]
        found.append(
            ((path if path.is_file() else folder / row["file"]).read_bytes(), row["label"])
        )
    return found


class ProviderProcess:
    """One of the tests' stand-in upstream providers (tests/fault_provider.py,
    tests/label_provider.py: `python SCRIPT PORT KEY`) in its own process, answering."""

    def __init__(self, script: str, key: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        path = Path(__file__).parent / script
        self.process = subprocess.Popen([sys.executable, str(path), str(self.port), key])
        deadline = time.monotonic() + 20
        while True:
            try:
                self.stats()
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    def stats(self) -> dict[str, Any]:
        """What the provider counted (`GET /_stats`)."""
        answer: dict[str, Any] = httpx.get(f"{self.url}/_stats", timeout=5).json()
        return answer

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


def seconds_until_closed(sock: socket.socket) -> tuple[float, bytes]:
    """Read until the server closes the connection: how long that took, and what came."""
    started = time.monotonic()
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return time.monotonic() - started, received
