"""HTTP benchmark: capgate's hot routes against the ceiling of the same machine.

    flock /tmp/capgate-bench.lock .venv/bin/python benchmarks/http.py [--seconds 10]
        [--connections 64] [--no-redis]

(Wrap every run in `flock`: other benchmarks share this 2-core machine.)

Starts, on 127.0.0.1 and in one run:
- the ceiling, as issue 18 defines it: a raw ASGI app that parses the JSON body (msgspec)
  and answers from a dict (createTask keeps the parsed body in that dict, in memory only,
  and answers a taskId), under uvicorn (uvloop, httptools) and under granian's ASGI; per
  route the faster of the two is the ceiling that ratios are taken to;
- a stricter bound beside it: the same raw app through granian's RSGI interface (what
  capgate itself is served through by default), so that what capgate's own work costs
  shows apart from what the interface saves;
- the old ceiling: a raw ASGI app under uvicorn that reads the body and answers a fixed
  ~150-byte JSON without parsing it (today's figure before the ceiling was redefined);
- capgate on SQLite under its default server (`capgate serve`), and under the other one;
  capgate on SQLite with `durability = "power"` for createTask; and, when `redis-server`
  is installed, capgate on Redis.
Each server is pinned to core 0 and the load generator (wrk, from Debian's packages) to
core 1. Prints requests/s, p50 and p99 for getTaskResult of a stored task, getTaskResult of
an unknown id and createTask (image-to-text, a 2 KB image), each with its ratio to the
ceiling and to the old ceiling.

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

# Today's old ceiling: a fixed answer, the body read and ignored (uvicorn, ASGI).
FIXED_APP = """
import json
ANSWER = json.dumps({"errorId": 0, "status": "ready", "solution": {"text": "W68HP"},
    "cost": "0.00100", "ip": "127.0.0.1", "createTime": 1692863536, "endTime": 1692863556,
    "solveCount": 1}).encode()

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]})
    await send({"type": "http.response.body", "body": ANSWER})
"""

# The ceiling: a raw app that parses the JSON body (msgspec) and answers from a dict;
# createTask keeps the parsed body in that dict (memory only, the oldest dropped past
# 50,000 tasks so a long run does not fill the RAM) and answers its taskId. `app` is the
# ASGI callable (uvicorn, or granian's ASGI), `rsgi` the same logic for granian's RSGI.
CEILING_APP = """
import itertools
import msgspec

decode, encode = msgspec.json.decode, msgspec.json.encode
TASKS = {1: {"status": "ready", "solution": {"text": "W68HP"}, "cost": "0.00100",
    "ip": "127.0.0.1", "createTime": 1692863536, "endTime": 1692863556, "solveCount": 1}}
NUMBERS = itertools.count(2)
KEEP = 50_000
ERROR = encode({"errorId": 16, "errorCode": "ERROR_NO_SUCH_CAPCHA_ID"})

def answer(path, body):
    if not body:  # The servers' readiness probe (a GET).
        return ERROR
    request = decode(body)
    if path == "/createTask":
        number = next(NUMBERS)
        TASKS[number] = request["task"]
        if number > KEEP + 1:
            TASKS.pop(number - KEEP, None)
        return encode({"errorId": 0, "taskId": number})
    task = TASKS.get(request["taskId"])
    if task is None or request.get("clientKey") is None:
        return ERROR
    return encode({"errorId": 0, **task})

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = answer(scope["path"], b"".join(chunks))
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

HEADERS = [("content-type", "application/json")]

class Rsgi:
    async def __rsgi__(self, scope, proto):
        proto.response_bytes(200, HEADERS, answer(scope.path, await proto()))

rsgi = Rsgi()
"""

# How each ceiling runs: (row name, app, command after the interpreter).
UVICORN = ["-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
           "--log-level", "warning"]  # fmt: skip
GRANIAN = ["-m", "granian", "--loop", "uvloop", "--http", "1", "--no-ws", "--workers", "1",
           "--log-level", "warning"]  # fmt: skip
CEILINGS = {
    "uvicorn, ASGI": [*UVICORN, "ceiling:app"],
    "granian, ASGI": [*GRANIAN, "--interface", "asgi", "ceiling:app"],
    "granian, RSGI": [*GRANIAN, "--interface", "rsgi", "ceiling:rsgi"],
}


def start_raw(work: Path, command: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """A raw app from `work` on core 0; its process and port, answering."""
    port = free_port()
    process = subprocess.Popen(
        pinned(0, [sys.executable, *command[:-1], "--port", str(port), command[-1]]), cwd=work
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/")
    except BaseException:
        process.terminate()
        process.wait()
        raise
    return process, port


def measure_ceilings(
    work: Path, image: str, seconds: int, connections: int
) -> dict[str, dict[str, float]]:
    """The old ceiling (fixed answer, uvicorn) and the ceiling under each server."""
    results = {}
    read = json.dumps({"clientKey": KEY, "taskId": 1})
    create = json.dumps({"clientKey": KEY, "task": {"type": "ImageToTextTask", "body": image}})
    process, port = start_raw(work, [*UVICORN, "fixed:app"])
    try:
        results["old ceiling (fixed answer, body ignored), uvicorn"] = wrk(
            f"http://127.0.0.1:{port}/getTaskResult", read, seconds, connections, work
        )
    finally:
        process.terminate()
        process.wait()
    for name, command in CEILINGS.items():
        process, port = start_raw(work, command)
        try:
            base = f"http://127.0.0.1:{port}"
            results[f"ceiling {name}: getTaskResult"] = wrk(
                f"{base}/getTaskResult", read, seconds, connections, work
            )
            results[f"ceiling {name}: createTask"] = wrk(
                f"{base}/createTask", create, seconds, connections, work
            )
        finally:
            process.terminate()
            process.wait()
    return results


def measure_capgate(
    label: str,
    store: str,
    image: str,
    seconds: int,
    connections: int,
    work: Path,
    *,
    server: str | None = None,
    settings: dict[str, str] | None = None,
    routes: tuple[str, ...] = ("stored", "unknown", "create"),
) -> dict[str, dict[str, float]]:
    """capgate on one store and server: its hot routes."""
    port = free_port()
    data = work / f"data-{len(list(work.glob('data-*')))}"
    process = start_capgate(store, data, port, server=server, settings=settings)
    results = {}
    try:
        base = f"http://127.0.0.1:{port}"
        task = {"type": "ImageToTextTask", "body": image}
        created = httpx.post(f"{base}/createTask", json={"clientKey": KEY, "task": task})
        task_id = created.json()["taskId"]
        for route, name, path, payload in (
            ("stored", "getTaskResult (stored task)", "/getTaskResult", {"taskId": task_id}),
            ("unknown", "getTaskResult (unknown id)", "/getTaskResult", {"taskId": 10**12}),
            ("create", "createTask (2 KB image)", "/createTask", {"task": task}),
        ):
            if route in routes:
                body = json.dumps({"clientKey": KEY, **payload})
                results[f"capgate {label}: {name}"] = wrk(
                    f"{base}{path}", body, seconds, connections, work
                )
    finally:
        process.terminate()
        process.wait()
    return results


def default_server() -> str:
    """The server `capgate serve` runs without --server."""
    from capgate.config import Settings

    return Settings().http_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--redis-core", type=int, default=1, help="the core redis-server runs on (default: 1)"
    )
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis rows")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/http.py needs wrk: apt-get install wrk")

    image = base64.b64encode(two_kilobyte_captcha()).decode()
    chosen = default_server()
    other = "uvicorn" if chosen == "granian" else "granian"
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "fixed.py").write_text(FIXED_APP)
        (work / "ceiling.py").write_text(CEILING_APP)
        results.update(measure_ceilings(work, image, args.seconds, args.connections))
        run = (image, args.seconds, args.connections, work)
        results.update(measure_capgate(f"SQLite, {chosen} (default)", "sqlite", *run))
        results.update(measure_capgate(f"SQLite, {other}", "sqlite", *run, server=other))
        results.update(
            measure_capgate(
                f'SQLite durability="power", {chosen}',
                "sqlite",
                *run,
                settings={"durability": "power"},
                routes=("create",),
            )
        )
        redis: subprocess.Popen[bytes] | None = None
        if shutil.which("redis-server") and not args.no_redis:
            redis_port = free_port()
            redis = subprocess.Popen(
                pinned(args.redis_core, ["redis-server", "--port", str(redis_port),
                                         "--save", "", "--appendonly", "no", "--dir", str(work)]),
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                url = f"redis://127.0.0.1:{redis_port}/0"
                results.update(measure_capgate(f"Redis, {chosen} (default)", url, *run))
            finally:
                redis.terminate()
                redis.wait()

    # The ceiling of each route (issue 18): the faster server's raw ASGI app; and the raw
    # app through RSGI, the stricter bound.
    def fastest(route: str, interface: str) -> float:
        return max(
            v["rps"]
            for k, v in results.items()
            if k.startswith("ceiling ") and route in k and f", {interface}:" in k
        )

    ceiling = {route: fastest(route, "ASGI") for route in ("getTaskResult", "createTask")}
    raw_rsgi = {route: fastest(route, "RSGI") for route in ("getTaskResult", "createTask")}
    old = results["old ceiling (fixed answer, body ignored), uvicorn"]["rps"]
    print(f"image: {len(base64.b64decode(image))} bytes ({len(image)} in base64)")
    print(f"capgate serve's default server: {chosen}")
    if redis is not None:
        print(f"redis-server on core {args.redis_core}")
    print(
        f"ceiling (the faster raw ASGI app): getTaskResult {ceiling['getTaskResult']:.0f}/s,"
        f" createTask {ceiling['createTask']:.0f}/s; raw RSGI app: getTaskResult"
        f" {raw_rsgi['getTaskResult']:.0f}/s, createTask {raw_rsgi['createTask']:.0f}/s;"
        f" old ceiling {old:.0f}/s"
    )
    print(
        "| row | requests/s | ratio to ceiling | ratio to raw RSGI | ratio to old ceiling"
        " | p50 ms | p99 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, figures in results.items():
        route = "createTask" if "createTask" in name else "getTaskResult"
        rps = figures["rps"]
        print(
            f"| {name} | {rps:.0f} | {rps / ceiling[route]:.2f} | {rps / raw_rsgi[route]:.2f}"
            f" | {rps / old:.2f} | {figures['p50']:.2f} | {figures['p99']:.2f} |"
        )


if __name__ == "__main__":
    main()
