"""HTTP benchmark: capgate's hot routes against the ceiling of the same HTTP server.

    .venv/bin/python benchmarks/http.py [--seconds 10] [--connections 64]

Starts, on 127.0.0.1 and in one run: a minimal raw ASGI app that answers a fixed ~150-byte
JSON from an in-memory dict under the same server capgate uses (uvicorn, uvloop,
httptools) — the ceiling — and capgate on its SQLite store and, when `redis-server` is
installed, on Redis. Each server is pinned to core 0 and the load generator (wrk, from
Debian's packages) to core 1. Prints requests/s, p50 and p99 for getTaskResult of a stored
task, getTaskResult of an unknown id and createTask (image-to-text, a 2 KB image), each with
its ratio to the ceiling.

Redis is another server, which a deployment runs on its own machine or core: by default it
shares core 1 with the load generator, so that core 0 holds one capgate process and nothing
else, as the targets are stated. `--redis-core 0` puts it on capgate's core instead (its Lua
and its socket writes then count against capgate).
"""

from __future__ import annotations

import sys

# This file is named http.py, as the project's docs name it: keep its folder off the import
# path, or it would stand in for the standard library's `http` package.
sys.path[:] = [p for p in sys.path if not p.endswith("benchmarks")]

import argparse
import base64
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx  # Imports the standard library's `http` while this folder is off the path.

# Now the shared harness can be imported from this folder (`http` is already loaded).
sys.path.insert(0, str(Path(__file__).parent))
from harness import (
    KEY,
    free_port,
    pinned,
    start_capgate,
    two_kilobyte_captcha,
    wait_ready,
    wrk,
)

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


def measure_capgate(
    store_name: str, store: str, image: str, seconds: int, connections: int, work: Path
) -> dict[str, dict[str, float]]:
    """capgate on one store: its three hot routes."""
    port = free_port()
    server = start_capgate(store, work / f"data-{store_name}", port)
    results = {}
    try:
        base = f"http://127.0.0.1:{port}"
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
    parser.add_argument(
        "--redis-core", type=int, default=1, help="the core redis-server runs on (default: 1)"
    )
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
                pinned(args.redis_core, ["redis-server", "--port", str(redis_port),
                                         "--save", "", "--appendonly", "no", "--dir", str(work)]),
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
    if redis is not None:
        print(f"redis-server on core {args.redis_core}")
    print("| route | requests/s | ratio to ceiling | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for name, figures in results.items():
        print(
            f"| {name} | {figures['rps']:.0f} | {figures['rps'] / ceiling_rps:.2f}"
            f" | {figures['p50']:.2f} | {figures['p99']:.2f} |"
        )


if __name__ == "__main__":
    main()
