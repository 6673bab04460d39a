"""Redis CPU per created task: what one createTask costs the Redis that all nodes share.

    flock /tmp/capgate-bench.lock .venv/bin/python benchmarks/redis_create.py \\
        [--tasks 20000] [--chunk 64 --chunk 1] [--rounds 3] [--baseline REF|DIR]

Starts a redis-server of its own on a free loopback port (no persistence) and measures two
versions of the store on it in the same run, round by round in turn: this checkout's
(`new`) and a baseline (`old`, by default the last commit whose store wrote layout version
1, one script call per create; `--baseline` names another commit, extracted with `git
archive` into a temporary folder, or a folder holding a capgate `src`; `--baseline none`
measures this checkout alone). Each version runs in a process of its own (PYTHONPATH puts
its package first) that opens the Redis store as a node does (Redis' clock, the shared
pipelined connection, the tracking connection) and creates `--tasks` image tasks with a
2 KB image, `--chunk` at a time with asyncio.gather, as a server's concurrent requests
would (a chunk of 1: one create at a time, nothing to batch). It reads `INFO commandstats`
before and after and prints, per command, calls and microseconds per created task, and
the sizes of the batches the store sent (a store that sends every create alone: none).

Which commands a create sends itself (the script call; anything else it sends) is found,
not assumed: a MONITOR of a few creates first tells the commands a client sent from those
that scripts ran (the latter are already inside the script call's time). The figure to
compare is the sum over the former: Redis CPU µs per created task, as commandstats counts
it. `used_cpu` (the whole process: network, event loop, change messages) is printed too.

Each scenario runs `--rounds` times per version on a fresh database; the lowest figure is
reported (the machine is shared: the lowest is the least disturbed). Scenarios: plain (the
paid default: no idempotency key, no in-flight limit) and limited (an idempotency key and
an in-flight limit on every create, the most a create checks).
"""

from __future__ import annotations

import sys

sys.path[:] = [p for p in sys.path if not p.endswith("benchmarks")]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import redis.asyncio as aioredis  # noqa: E402
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402

import capgate  # noqa: E402
from capgate.keys import hash_secret  # noqa: E402
from capgate.model import TaskSpec, TaskType  # noqa: E402
from capgate.store.redis import RedisStore  # noqa: E402

SCRIPT_COMMANDS = {"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"}
# The last commit whose Redis store wrote layout version 1: one script call per create.
BASELINE = "7543f425323dad1e71f8635dc63e96b50378d977"
HERE = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def image() -> bytes:
    """About 2 KB: the size of the HTTP benchmark's captcha (its bytes do not matter here)."""
    return b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8


@dataclass
class Scenario:
    name: str
    idempotent: bool
    max_in_flight: int


SCENARIOS = [Scenario("plain", False, 0), Scenario("limited", True, 10**9)]


class Creator:
    """Creates tasks through the store, numbering idempotency keys as it goes."""

    def __init__(self, store: RedisStore, key_id: int, scenario: Scenario) -> None:
        self.store, self.key_id, self.scenario = store, key_id, scenario
        self.spec = TaskSpec(TaskType.IMAGE_TO_TEXT, {"case": True}, image())
        self.made = 0

    async def create(self, count: int, chunk: int) -> None:
        done = 0
        while done < count:
            batch = min(chunk, count - done)
            await asyncio.gather(*(self._one() for _ in range(batch)))
            done += batch

    async def _one(self) -> None:
        self.made += 1
        now = time.time()
        idempotency = (f"k{self.made}", b"fingerprint") if self.scenario.idempotent else None
        await self.store.create_task(
            self.key_id,
            self.spec,
            1,
            "127.0.0.1",
            now,
            now + 120,
            now + 3600,
            idempotency,
            self.scenario.max_in_flight,
        )


async def client_commands(url: str, creator: Creator, chunk: int) -> set[str]:
    """The commands that creates send themselves, by a MONITOR of one chunk."""
    seen: set[str] = set()
    monitor_client = aioredis.Redis.from_url(url)
    try:
        async with monitor_client.monitor() as monitor:
            # MONITOR's own first reply ("OK") comes before anything else.
            job = asyncio.ensure_future(creator.create(chunk, chunk))
            await asyncio.sleep(0)
            deadline = time.monotonic() + 10
            while not job.done() or time.monotonic() < deadline:
                try:
                    event = await asyncio.wait_for(monitor.next_command(), 0.5)
                except TimeoutError:
                    if job.done():
                        break
                    continue
                if event.get("client_type") != "lua":
                    seen.add(str(event["command"]).split()[0].lower())
            await job
    finally:
        await monitor_client.aclose()
    return seen - {"monitor"}


def stats(info: dict[str, Any]) -> dict[str, tuple[int, float]]:
    out = {}
    for name, values in info.items():
        if name.startswith("cmdstat_"):
            out[name.removeprefix("cmdstat_")] = (int(values["calls"]), float(values["usec"]))
    return out


def spy_batches(store: RedisStore) -> list[int]:
    """The size of every batch of creates the store sends from now on (a store that
    sends each create alone has no batches)."""
    sizes: list[int] = []
    batcher = getattr(store, "_creates", None)
    if batcher is None:
        return sizes
    send = batcher._send

    async def counting(arguments: list[Any], count: int) -> Any:
        sizes.append(count)
        return await send(arguments, count)

    batcher._send = counting
    return sizes


async def run(url: str, scenario: Scenario, tasks: int, chunk: int) -> dict[str, Any]:
    """One measurement, in this process (a --worker)."""
    admin = aioredis.Redis.from_url(url)
    await admin.flushall()
    store = RedisStore(url)
    await store.open()
    try:
        key = await store.create_key("bench", hash_secret(f"bench-{time.time()}"), 10**15, 0)
        creator = Creator(store, key.id, scenario)
        await creator.create(256, chunk)  # warm up: scripts loaded, connections open
        sent = await client_commands(url, creator, max(chunk, 16))
        batches = spy_batches(store)
        await admin.config_resetstat()
        cpu_before = await admin.info("cpu")
        started = time.perf_counter()
        await creator.create(tasks, chunk)
        seconds = time.perf_counter() - started
        cpu_after = await admin.info("cpu")
        commands = stats(await admin.info("commandstats"))
    finally:
        await store.close()
        await admin.aclose()
    # The stats connection's own INFO / CONFIG calls are not the creates'.
    for own in ("info", "config|resetstat", "config"):
        commands.pop(own, None)
    top = {name for name in commands if name in sent or name in SCRIPT_COMMANDS}
    used = sum(
        float(cpu_after[k]) - float(cpu_before[k]) for k in ("used_cpu_user", "used_cpu_sys")
    )
    return {
        "capgate": str(Path(capgate.__file__).parent),
        "commands": commands,
        "top": sorted(top),
        "per_task": sum(commands[name][1] for name in top) / tasks,
        "process_per_task": used * 1e6 / tasks,
        "rate": tasks / seconds,
        "batches": batches,
    }


def report(label: str, best: dict[str, Any], tasks: int) -> None:
    print(f"  {label} (capgate from {best['capgate']}): {best['rate']:.0f} creates/s")
    print(f"    {'command':<14}{'calls/task':>11}{'µs/call':>9}{'µs/task':>9}")
    rows = sorted(best["commands"].items(), key=lambda item: -item[1][1])
    for name, (calls, usec) in rows:
        where = "" if name in best["top"] else "  (inside the script)"
        line = f"    {name:<14}{calls / tasks:>11.2f}{usec / calls:>9.2f}{usec / tasks:>9.2f}"
        print(line + where)
    sizes = best["batches"]
    if sizes:
        print(
            f"    batches: {len(sizes)}, creates per batch: mean {tasks / len(sizes):.1f},"
            f" min {min(sizes)}, max {max(sizes)}"
        )
    else:
        print("    batches: none (one script call per create)")
    print(f"    Redis CPU per created task (commandstats): {best['per_task']:.1f} µs")
    print(
        "    redis-server process CPU per created task (used_cpu):"
        f" {best['process_per_task']:.1f} µs"
    )


def worker(url: str, scenario: str, tasks: int, chunk: int) -> None:
    chosen = next(s for s in SCENARIOS if s.name == scenario)
    print(json.dumps(asyncio.run(run(url, chosen, tasks, chunk))))


def measure_in(
    src: Path, url: str, scenario: Scenario, args: argparse.Namespace, chunk: int
) -> dict[str, Any]:
    """One measurement of the capgate in `src`, by a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, __file__, "--worker", url, "--scenario", scenario.name]
    command += ["--tasks", str(args.tasks), "--chunk", str(chunk)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    expected = src / "capgate"
    if Path(result["capgate"]) != expected:
        raise SystemExit(f"measured capgate from {result['capgate']}, not {expected}")
    return result


def baseline_src(given: str, work: Path) -> Path | None:
    """The baseline's `src` folder: a folder given, or a commit extracted into `work`."""
    if given == "none":
        return None
    folder = Path(given)
    if folder.is_dir():
        return folder / "src" if (folder / "src" / "capgate").is_dir() else folder
    target = work / "baseline"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(HERE), "archive", given, "src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target / "src"


def compare(url: str, args: argparse.Namespace, old: Path | None) -> None:
    versions = [("old", old), ("new", HERE / "src")] if old else [("new", HERE / "src")]
    for scenario in SCENARIOS:
        if args.scenario and scenario.name not in args.scenario:
            continue
        for chunk in args.chunk or [64, 1]:
            found: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in versions}
            for _ in range(args.rounds):  # in turn, so both meet the same disturbances
                for label, src in versions:
                    assert src is not None
                    found[label].append(measure_in(src, url, scenario, args, chunk))
            print(f"\n{scenario.name}, {args.tasks} creates {chunk} at a time:")
            best = {label: min(runs, key=lambda r: r["per_task"]) for label, runs in found.items()}
            for label, result in best.items():
                report(label, result, args.tasks)
            if "old" in best:
                old_us, new_us = best["old"]["per_task"], best["new"]["per_task"]
                print(
                    f"  => Redis CPU per created task: old {old_us:.1f} µs, new {new_us:.1f} µs"
                    f" ({new_us / old_us:.0%} of old); every round (µs):"
                    f" old {[round(r['per_task'], 1) for r in found['old']]},"
                    f" new {[round(r['per_task'], 1) for r in found['new']]}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, action="append", help="default: 64 and 1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenario", choices=[s.name for s in SCENARIOS], action="append")
    parser.add_argument("--baseline", default=BASELINE, help="a commit, a folder, or none")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.scenario[0], args.tasks, args.chunk[0])
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as work:
        old = baseline_src(args.baseline, Path(work))
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", work],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            asyncio.run(wait_for(url))
            compare(url, args, old)
        finally:
            server.terminate()
            server.wait(10)


async def wait_for(url: str) -> None:
    probe = aioredis.Redis.from_url(url)
    for _ in range(200):
        try:
            await probe.ping()
            break
        except RedisConnectionError:
            await asyncio.sleep(0.05)
    print((await probe.info("server"))["redis_version"], "on", url)
    await probe.aclose()


if __name__ == "__main__":
    main()
