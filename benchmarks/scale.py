"""Scale benchmark: does the poll path slow down with 100,000 tasks in flight, and how much
memory does each stored finished task take, on SQLite and on Redis?

    .venv/bin/python benchmarks/scale.py [--tasks 100000] [--seconds 5]

For each store, in one run: a `capgate serve` (local solving off, so every task stays
queued) pinned to core 0; wrk pinned to core 1 measures getTaskResult of one task with the
store nearly empty, then again after `--tasks` more tasks were queued (written through the
store's own create_task, concurrently, from this process), and reports the ratio (issue 5's
target: no more than 20% slower, a ratio >= 0.8). Then it finishes 10,000 tasks through the
store (lease + complete, which drops their images) and reports the bytes each costs: the
SQLite file's growth, or Redis's used_memory growth, divided by the count.
"""

from __future__ import annotations

import sys

sys.path[:] = [p for p in sys.path if not p.endswith("benchmarks")]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402  (the standard library's `http` loads while this folder is off the path)

# Now the shared harness can be imported from this folder (`http` is already loaded).
sys.path.insert(0, str(Path(__file__).parent))
from harness import KEY, free_port, start_capgate, two_kilobyte_captcha, wrk  # noqa: E402

from capgate.keys import hash_secret  # noqa: E402
from capgate.model import Solution, TaskSpec, TaskType  # noqa: E402
from capgate.store import Store, store_from_url  # noqa: E402

FINISHED = 10_000


async def fill(store: Store, key_id: int, count: int, body: bytes) -> None:
    """Queue `count` tasks through the store, 500 at a time."""
    spec = TaskSpec(TaskType.IMAGE_TO_TEXT, {}, body)
    now = time.time()
    done = 0
    while done < count:
        batch = min(500, count - done)
        await asyncio.gather(
            *(
                store.create_task(key_id, spec, 1000, "127.0.0.1", now, now + 3600, now + 86400)
                for _ in range(batch)
            )
        )
        done += batch


async def finish(store: Store, count: int) -> None:
    """Lease and complete `count` queued tasks (their images are dropped)."""
    now = time.time()
    left = count
    while left > 0:
        leases = await store.lease({TaskType.IMAGE_TO_TEXT}, min(100, left), 60, now)
        for lease in leases:
            await store.complete(lease.task.id, lease.token, Solution(text="W68H"), "bench", now)
        left -= len(leases)


def footprint(store_url: str, data: Path) -> int:
    """Bytes the store holds: SQLite's file once vacuumed (a dropped image leaves free
    space in its page, which later tasks reuse; VACUUM packs it so it is not counted), or
    Redis's used_memory."""
    if store_url.startswith("redis://"):
        import redis

        with redis.Redis.from_url(store_url) as client:
            info = client.info("memory")
            return int(info["used_memory"])
    import sqlite3

    with sqlite3.connect(data / "capgate.db") as db:
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    return int((pages - free) * size)


def measure(name: str, store_url: str, tasks: int, seconds: int, work: Path) -> dict[str, float]:
    data = work / f"data-{name}"
    port = free_port()
    server = start_capgate(store_url, data, port)
    base = f"http://127.0.0.1:{port}"
    body = two_kilobyte_captcha()
    try:
        task = {"type": "ImageToTextTask", "body": base64.b64encode(body).decode()}
        task_id = httpx.post(f"{base}/createTask", json={"clientKey": KEY, "task": task}).json()[
            "taskId"
        ]
        poll = json.dumps({"clientKey": KEY, "taskId": task_id})
        before = wrk(f"{base}/getTaskResult", poll, seconds, 64, work)["rps"]

        async def load() -> tuple[float, int]:
            store = store_from_url(store_url, data)
            await store.open()
            try:
                key = await store.key_by_hash(hash_secret(KEY))
                assert key is not None
                started = time.monotonic()
                await fill(store, key.id, tasks, body)
                took = time.monotonic() - started
                depth = await store.queue_depth()
            finally:
                await store.close()
            return took, depth

        took, depth = asyncio.run(load())
        after = wrk(f"{base}/getTaskResult", poll, seconds, 64, work)["rps"]

        async def finished_bytes() -> float:
            store = store_from_url(store_url, data)
            await store.open()
            try:
                start = footprint(store_url, data)
                key = await store.key_by_hash(hash_secret(KEY))
                assert key is not None
                # Fresh tasks, then finished: what one finished task costs, image dropped.
                await fill(store, key.id, FINISHED, body)
                await finish(store, FINISHED)
                return (footprint(store_url, data) - start) / FINISHED
            finally:
                await store.close()

        per_task = asyncio.run(finished_bytes())
    finally:
        server.terminate()
        server.wait()
    return {
        "before": before,
        "after": after,
        "depth": depth,
        "fill_seconds": took,
        "bytes_per_finished": per_task,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/scale.py needs wrk: apt-get install wrk")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        stores = {"SQLite": "sqlite"}
        redis = None
        if shutil.which("redis-server"):
            redis_port = free_port()
            redis = subprocess.Popen(
                ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
            )
            time.sleep(0.5)
            stores["Redis"] = f"redis://127.0.0.1:{redis_port}/0"
        try:
            for name, url in stores.items():
                results[name] = measure(name, url, args.tasks, args.seconds, work)
        finally:
            if redis is not None:
                redis.terminate()
                redis.wait()
    print("| store | getTaskResult, empty | with tasks queued | ratio | bytes per finished task |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['before']:.0f}/s | {r['after']:.0f}/s ({r['depth']:.0f} queued,"
            f" written in {r['fill_seconds']:.0f} s) | {r['after'] / r['before']:.2f}"
            f" | {r['bytes_per_finished']:.0f} |"
        )


if __name__ == "__main__":
    main()
