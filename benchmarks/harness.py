"""What the HTTP benchmarks share: ports, pinning to a core, a capgate server to measure,
wrk, and the 2 KB captcha they send.

`http.py` must keep this folder off `sys.path` (its name would shadow the standard
library's `http`), so it loads this file by path; `scale.py` imports it by name.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

KEY = "0123456789abcdef0123456789abcdef"

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(core: int, command: list[str]) -> list[str]:
    """The command run on one core (with taskset, where there is one)."""
    return ["taskset", "-c", str(core), *command] if shutil.which("taskset") else command


def wait_ready(url: str) -> None:
    """Wait until a GET of `url` gets any answer."""
    for _ in range(600):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} never answered")


def two_kilobyte_captcha() -> bytes:
    """A generated captcha re-encoded as a small grayscale JPEG, about 2 KB."""
    from PIL import Image

    from capgate.ocr import synth

    png = synth.generate(1, 1, synth.CHARSET_B, 4, 4)[0][0]
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("L").save(out, format="JPEG", quality=75)
    return out.getvalue()


def start_capgate(
    store: str,
    data: Path,
    port: int,
    *,
    server: str | None = None,
    settings: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`capgate serve` pinned to core 0, local solving off (every task stays queued), the
    bootstrap key KEY with a large balance and no poll cap; answering once this returns.

    `server` picks the HTTP server (`serve --server`; default: capgate's default), and
    `settings` adds settings by name, as CAPGATE_* variables (e.g. {"durability": "power"}).
    """
    env = {
        **os.environ,
        "CAPGATE_BOOTSTRAP_KEY": KEY,
        "CAPGATE_BOOTSTRAP_BALANCE": "100000000",
        "CAPGATE_LOCAL_SOLVING": "false",
        "CAPGATE_MAX_POLLS": "2000000000",
        "CAPGATE_LOG_LEVEL": "warning",
        "CAPGATE_STORE": store,
        **{f"CAPGATE_{name.upper()}": value for name, value in (settings or {}).items()},
    }
    choice = ["--server", server] if server else []
    process = subprocess.Popen(
        pinned(0, [sys.executable, "-m", "capgate", "serve", "--port", str(port),
                   "--data", str(data), *choice]),
        env=env,
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz")
    except BaseException:
        process.terminate()
        process.wait()
        raise
    return process


def wrk(url: str, body: str, seconds: int, connections: int, workdir: Path) -> dict[str, float]:
    """POST `body` to `url` from wrk pinned to core 1: requests/s, p50 and p99 in ms."""
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT % body)
    command = pinned(
        1,
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
    )
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rate is not None, out

    def percentile(p: str) -> float:
        match = re.search(rf"{p}%\s+([\d.]+)(us|ms|s)", out)
        assert match is not None, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"rps": float(rate.group(1)), "p50": percentile("50"), "p99": percentile("99")}
