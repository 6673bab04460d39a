"""HTTP benchmark: capgate's hot routes against the ceiling of the same HTTP server.

    .venv/bin/python benchmarks/http.py [--seconds 10] [--connections 64]

Starts, on 127.0.0.1 and in one run: a minimal raw ASGI app that answers a fixed ~150-byte
JSON from an in-memory dict under the same server capgate uses (uvicorn, uvloop,
httptools) — the ceiling — and capgate on its SQLite store. Each server is pinned to core 0
and the load generator (wrk, from Debian's packages) to core 1. Prints requests/s, p50 and
p99 for getTaskResult of a stored task, getTaskResult of an unknown id and createTask
(image-to-text, a 2 KB image), each with its ratio to the ceiling.
"""

from __future__ import annotations

import sys

# This file is named http.py, as the project's docs name it: keep its folder off the import
# path, or it would stand in for the standard library's `http` package.
sys.path[:] = [p for p in sys.path if not p.endswith("benchmarks")]

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

KEY = "0123456789abcdef0123456789abcdef"

CEILING_APP = """
import json
ANSWERS = {1: json.dumps({"errorId": 0, "status": "ready", "solution": {"text": "W68HP"},
    "cost": "0.00100", "ip": "127.0.0.1", "createTime": 1692863536, "endTime": 1692863556,
    "solveCount": 1}).encode()}

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = ANSWERS[1]
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str) -> None:
    for _ in range(600):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} never answered")


def pinned(core: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *command] if shutil.which("taskset") else command


def wrk(url: str, body: str, seconds: int, connections: int, workdir: Path) -> dict[str, float]:
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT % body)
    command = pinned(
        1,
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
    )
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def percentile(p: str) -> float:
        match = re.search(rf"{p}%\s+([\d.]+)(us|ms|s)", out)
        assert match is not None, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"rps": rate, "p50": percentile("50"), "p99": percentile("99")}


def two_kilobyte_captcha() -> bytes:
    """A generated captcha re-encoded as a small grayscale JPEG, about 2 KB."""
    import io

    from PIL import Image

    from capgate.ocr import synth

    png = synth.generate(1, 1, synth.CHARSET_B, 4, 4)[0][0]
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("L").save(out, format="JPEG", quality=75)
    return out.getvalue()


def measure_capgate(
    store_name: str, store: str, image: str, seconds: int, connections: int, work: Path
) -> dict[str, dict[str, float]]:
    """capgate on one store: its three hot routes."""
    port = free_port()
    env = {
        **os.environ,
        "CAPGATE_BOOTSTRAP_KEY": KEY,
        "CAPGATE_BOOTSTRAP_BALANCE": "100000000",
        "CAPGATE_LOCAL_SOLVING": "false",
        "CAPGATE_MAX_POLLS": "2000000000",
        "CAPGATE_LOG_LEVEL": "warning",
        "CAPGATE_STORE": store,
    }
    server = subprocess.Popen(
        pinned(0, [sys.executable, "-m", "capgate", "serve", "--port", str(port),
                   "--data", str(work / f"data-{store_name}")]),
        env=env,
    )  # fmt: skip
    results = {}
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/healthz")
        task = {"type": "ImageToTextTask", "body": image}
        created = httpx.post(f"{base}/createTask", json={"clientKey": KEY, "task": task})
        task_id = created.json()["taskId"]
        for name, path, payload in (
            ("getTaskResult (stored task)", "/getTaskResult", {"taskId": task_id}),
            ("getTaskResult (unknown id)", "/getTaskResult", {"taskId": 10**12}),
            ("createTask (2 KB image)", "/createTask", {"task": task}),
        ):
            body = json.dumps({"clientKey": KEY, **payload})
            results[f"{store_name}: {name}"] = wrk(
                f"{base}{path}", body, seconds, connections, work
            )
    finally:
        server.terminate()
        server.wait()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/http.py needs wrk: apt-get install wrk")

    image = base64.b64encode(two_kilobyte_captcha()).decode()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "ceiling.py").write_text(CEILING_APP)
        port = free_port()
        ceiling = subprocess.Popen(
            pinned(0, [sys.executable, "-m", "uvicorn", "ceiling:app", "--port", str(port),
                       "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                       "--log-level", "warning"]),
            cwd=work,
        )  # fmt: skip
        try:
            wait_ready(f"http://127.0.0.1:{port}/")
            body = json.dumps({"clientKey": KEY, "taskId": 1})
            results["ceiling"] = wrk(
                f"http://127.0.0.1:{port}/getTaskResult", body, args.seconds, args.connections, work
            )
        finally:
            ceiling.terminate()
            ceiling.wait()

        stores = {"SQLite": "sqlite"}
        redis: subprocess.Popen[bytes] | None = None
        if shutil.which("redis-server"):
            redis_port = free_port()
            redis = subprocess.Popen(
                pinned(0, ["redis-server", "--port", str(redis_port), "--save", "",
                           "--appendonly", "no", "--dir", str(work)]),
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            stores["Redis"] = f"redis://127.0.0.1:{redis_port}/0"
        try:
            for store_name, store in stores.items():
                results.update(
                    measure_capgate(store_name, store, image, args.seconds, args.connections, work)
                )
        finally:
            if redis is not None:
                redis.terminate()
                redis.wait()

    ceiling_rps = results["ceiling"]["rps"]
    print(f"image: {len(base64.b64decode(image))} bytes ({len(image)} in base64)")
    print("| route | requests/s | ratio to ceiling | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for name, figures in results.items():
        print(
            f"| {name} | {figures['rps']:.0f} | {figures['rps'] / ceiling_rps:.2f}"
            f" | {figures['p50']:.2f} | {figures['p99']:.2f} |"
        )


if __name__ == "__main__":
    main()
