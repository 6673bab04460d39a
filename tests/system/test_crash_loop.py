"""A crash loop: clients keep creating tasks while the server is killed with SIGKILL and
started again on the same store, 20 times; then nothing acknowledged is lost, no task
finishes twice, and the key paid for the ready tasks only, once each.

Half the clients send an idempotency key and retry a create until it is answered (so every
create they made ends acknowledged); the other half give up on a create whose answer was
lost, so the store may hold tasks nobody was told about. Those are charged like any other,
and the money check counts them from the store itself.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import random
import re
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from capgate.keys import hash_secret
from capgate.model import TaskStatus
from tests.support import BOOTSTRAP_KEY, CapgateServer, ServerFactory, captchas, image_task

pytestmark = pytest.mark.system

CYCLES = 20
CLIENTS = 4  # Even-numbered clients retry with an idempotency key; odd ones do not.
INITIAL_BALANCE = 10_000_000  # CAPGATE_BOOTSTRAP_BALANCE=10, in micro-units
IMAGE_PRICE = 1_000  # 0.001, the default price of an ImageToTextTask
MAX_ATTEMPTS = 3  # the server's default max_attempts
LEASE_SECONDS = 30  # the server's default lease_seconds


def blank_png() -> str:
    """A white image: valid, but the OCR finds no text in it, so the task fails (refunded)."""
    out = io.BytesIO()
    Image.new("RGB", (120, 40), "white").save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


BLANK = blank_png()
READABLE = [body for body, _ in captchas(seed=7700, n=8)]


@dataclass
class Ledger:
    """What the clients were told, gathered from every client thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    # task id -> (client, create number, blank image?) of the create it acknowledged
    acknowledged: dict[int, tuple[int, int, bool]] = field(default_factory=dict)
    # the same task id acknowledged for two different creates: must stay empty
    duplicates: list[tuple[int, tuple[int, int, bool], tuple[int, int, bool]]] = field(
        default_factory=list
    )
    lost: int = 0  # creates without idempotency sent, but whose answer never came
    retries: int = 0  # idempotent creates sent again after their answer was lost
    unexpected: list[str] = field(default_factory=list)  # any other answer: must stay empty

    def ack(self, task_id: int, origin: tuple[int, int, bool]) -> None:
        with self.lock:
            earlier = self.acknowledged.get(task_id)
            if earlier is not None and earlier != origin:
                self.duplicates.append((task_id, earlier, origin))
            self.acknowledged[task_id] = origin


class Client(threading.Thread):
    """Creates image tasks in a loop until told to stop, riding out the server's deaths."""

    def __init__(self, number: int, base: str, ledger: Ledger, stop: threading.Event) -> None:
        super().__init__(name=f"crash-loop-client-{number}", daemon=True)
        self.number = number
        self.idempotent = number % 2 == 0
        self.ledger = ledger
        self.stop = stop
        self.http = httpx.Client(base_url=base, timeout=10)
        self.random = random.Random(7700 + number)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported by the test, which joins every client
            self.error = exc
        finally:
            self.http.close()

    def _loop(self) -> None:
        count = 0
        while not self.stop.is_set():
            count += 1
            blank = self.random.random() < 0.25
            body = BLANK if blank else self.random.choice(READABLE)
            payload = {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)}
            headers = {"Idempotency-Key": f"crash-{self.number}-{count}"} if self.idempotent else {}
            self._create(payload, headers, (self.number, count, blank))
            time.sleep(self.random.uniform(0.005, 0.03))

    def _create(
        self, payload: dict[str, Any], headers: dict[str, str], origin: tuple[int, int, bool]
    ) -> None:
        # A create that never reached the server is sent again; one whose answer was lost is
        # sent again only with its idempotency key, until answered, also after the stop: the
        # server is up at the end, so every idempotent create is acknowledged.
        give_up = time.monotonic() + 120
        while True:
            try:
                response = self.http.post("/createTask", json=payload, headers=headers)
            except httpx.ConnectError:
                # Nothing was sent (the server is down): any client may try again.
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.05)
                continue
            except httpx.TransportError:
                if not self.idempotent:
                    with self.ledger.lock:
                        self.ledger.lost += 1
                    return
                if time.monotonic() > give_up:
                    raise
                with self.ledger.lock:
                    self.ledger.retries += 1
                time.sleep(0.02)
                continue
            break
        answer = response.json() if response.status_code == 200 else None
        if answer is None or answer.get("errorId") != 0 or "taskId" not in answer:
            with self.ledger.lock:
                self.ledger.unexpected.append(f"{response.status_code} {response.text[:200]}")
            return
        self.ledger.ack(int(answer["taskId"]), origin)


@dataclass(frozen=True)
class Stored:
    """A task as the store holds it."""

    status: TaskStatus
    cost: int
    attempts: int
    idempotent: bool  # created with an idempotency key


def number(value: object) -> int:
    """A Redis field that holds an integer."""
    assert isinstance(value, bytes | str), value
    return int(value)


def inventory(store: str, data: Path) -> tuple[dict[int, Stored], int, int]:
    """Every task in the store, and the test key's (balance, spent), read straight from it."""
    if store == "sqlite":
        with sqlite3.connect(data / "capgate.db") as db:
            rows = db.execute(
                "SELECT id, status, cost, attempts, idem_key IS NOT NULL FROM tasks"
            ).fetchall()
            balance, spent = db.execute(
                "SELECT balance, spent FROM keys WHERE key_hash = ?",
                (hash_secret(BOOTSTRAP_KEY),),
            ).fetchone()
        db.close()
        tasks = {int(i): Stored(TaskStatus(s), int(c), int(a), bool(k)) for i, s, c, a, k in rows}
        return tasks, int(balance), int(spent)
    import redis

    client = redis.Redis.from_url(store)
    try:
        tasks = {}
        for name in client.scan_iter(match="{cg}:task:*", count=1000):
            found = re.fullmatch(rb"\{cg\}:task:(\d+)", name)
            if found is None:
                continue
            status, cost, attempts = map(number, client.hmget(name, ["status", "cost", "attempts"]))
            idempotent = bool(client.hget(name, "idem_key"))
            tasks[int(found[1])] = Stored(TaskStatus(status), cost, attempts, idempotent)
        key_id = number(client.get(f"{{cg}}:keyhash:{hash_secret(BOOTSTRAP_KEY).hex()}"))
        balance, spent = map(number, client.hmget(f"{{cg}}:key:{key_id}", ["balance", "spent"]))
        return tasks, balance, spent
    finally:
        client.close()


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, from /proc; None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None  # a zombie has already exited
    return int(fields[1]), int(fields[19])


def descendants(pid: int) -> set[tuple[int, int]]:
    """(pid, start time) of every live process below `pid` (Linux /proc)."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append((int(entry), stat[1]))
    found: set[tuple[int, int]] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child[0])
    return found


def still_alive(processes: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those of `processes` that still run (the same process: same pid and start time)."""
    alive = set()
    for pid, started in processes:
        stat = _proc_stat(pid)
        if stat is not None and stat[1] == started:
            alive.add((pid, started))
    return alive


def kill_left_over(processes: set[tuple[int, int]]) -> None:
    """SIGKILL what the killed servers left running, by pid (checked against start time)."""
    for pid, _ in still_alive(processes):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def orphans() -> Iterator[set[tuple[int, int]]]:
    """Processes below the test's servers, to end after the test (and after its servers were
    stopped: request this fixture first) if they outlived their server."""
    left: set[tuple[int, int]] = set()
    yield left
    kill_left_over(left)


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest) -> str:
    """The store the crash loop runs on: the SQLite file, or a real redis-server."""
    if request.param == "sqlite":
        return "sqlite"
    url: str = request.getfixturevalue("redis_url")
    return url


def test_a_crash_loop_loses_nothing_and_charges_once(
    orphans: set[tuple[int, int]], start_server: ServerFactory, store: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    data = tmp_path / "data"
    # A long deadline: however slow the machine, no task times out; each ends ready or
    # unsolvable (a blank image, or a task whose lease was cut short too often).
    server = start_server(data, store=store, task_deadline_seconds="600")
    ledger = Ledger()
    stop = threading.Event()
    clients = [Client(n, server.base, ledger, stop) for n in range(CLIENTS)]
    for client in clients:
        client.start()
    pace = random.Random(7701)
    try:
        for _ in range(CYCLES):
            time.sleep(pace.uniform(0.05, 0.3))  # up, taking creates and solving
            assert server.process is not None
            orphans.update(descendants(server.process.pid))
            server.kill9()
            time.sleep(pace.uniform(0.0, 0.1))  # down: creates are refused or cut off
            server.start()  # the same port, data directory and store
    finally:
        stop.set()
        for client in clients:
            client.join(150)
    looped = time.monotonic() - started
    for client in clients:
        assert not client.is_alive(), f"{client.name} did not finish"
        assert client.error is None, f"{client.name} failed: {client.error!r}"
    assert ledger.unexpected == [], ledger.unexpected[:5]
    assert ledger.duplicates == [], ledger.duplicates[:5]
    acknowledged = ledger.acknowledged
    assert len(acknowledged) > 5 * CYCLES, "the clients got too few creates through"

    # Tasks leased when a server died stay leased until their lease expires: move the clock
    # past it, so the sweep puts them back in the queue (counting the attempt).
    server.advance(LEASE_SECONDS + 1)

    # Every acknowledged task is there, and finishes exactly once.
    answers: dict[int, Any] = {}
    for task_id in sorted(acknowledged):
        answer = server.post(
            "/getTaskResult", {"clientKey": BOOTSTRAP_KEY, "taskId": task_id, "waitSeconds": 30}
        )
        assert answer.get("errorCode") != "ERROR_NO_SUCH_CAPCHA_ID", (task_id, answer)
        if answer.get("status") == "processing":  # very slow machine: wait once more
            answer = server.wait_final(BOOTSTRAP_KEY, task_id, timeout=60)
        answers[task_id] = answer
    ready = {i for i, a in answers.items() if a.get("status") == "ready"}
    failed = {i for i, a in answers.items() if a.get("errorId", 0) != 0}
    assert ready | failed == set(answers), [answers[i] for i in set(answers) - ready - failed]
    assert ready.isdisjoint(failed)
    for task_id in ready:
        answer = answers[task_id]
        assert 1 <= answer["solveCount"] <= MAX_ATTEMPTS, (task_id, answer)
        assert answer["cost"] == "0.00100", (task_id, answer)
        assert answer["solution"]["text"], (task_id, answer)
    for task_id in failed:
        assert answers[task_id]["errorCode"] == "ERROR_CAPTCHA_UNSOLVABLE", answers[task_id]
    blank_ready = [i for i in ready if acknowledged[i][2]]
    assert blank_ready == [], f"blank images read as text: {blank_ready[:5]}"

    # The store agrees, and holds nothing else but tasks whose create answer was lost.
    tasks, balance, spent = inventory(store, data)
    missing = set(acknowledged) - set(tasks)
    assert missing == set(), sorted(missing)[:10]
    unacknowledged = set(tasks) - set(acknowledged)
    assert len(unacknowledged) <= ledger.lost, (sorted(unacknowledged)[:10], ledger.lost)
    # A retried idempotent create returned the task its lost first try made, never a second.
    doubled = [i for i in unacknowledged if tasks[i].idempotent]
    assert doubled == [], f"idempotent creates that made a task nobody was told of: {doubled}"
    for task_id in unacknowledged:  # nobody polls these: let them finish too
        server.wait_final(BOOTSTRAP_KEY, task_id)
    tasks, balance, spent = inventory(store, data)
    unfinished = {i: t for i, t in tasks.items() if not t.status.is_final}
    assert unfinished == {}, list(unfinished.items())[:10]
    for task_id, answer in answers.items():
        status = TaskStatus.READY if task_id in ready else TaskStatus.FAILED
        assert tasks[task_id].status is status, (task_id, tasks[task_id], answer)
        if task_id in ready:
            assert tasks[task_id].attempts == answer["solveCount"], (task_id, tasks[task_id])
    for task_id, task in tasks.items():
        assert task.attempts <= MAX_ATTEMPTS, (task_id, task)
        assert task.cost == IMAGE_PRICE, (task_id, task)
        if task.status is TaskStatus.READY:
            assert task.attempts >= 1, (task_id, task)

    # Money: the ready tasks were charged once each, the failed ones not at all.
    stored_ready = [i for i, t in tasks.items() if t.status is TaskStatus.READY]
    charged = sum(tasks[i].cost for i in stored_ready)
    assert spent == charged
    assert balance == INITIAL_BALANCE - charged
    shown = server.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"]
    assert round(shown * 1_000_000) == INITIAL_BALANCE - charged
    assert ready and failed, "the run should end with both ready and failed tasks"

    assert server.process is not None
    orphans.update(descendants(server.process.pid))  # checked after the last, polite stop
    leased_again = sum(1 for t in tasks.values() if t.attempts > 1)
    print(
        f"\ncrash loop on {store.split(':')[0]}: {CYCLES} SIGKILL cycles,"
        f" {len(acknowledged)} tasks acknowledged ({ledger.retries} idempotent retries,"
        f" {ledger.lost} answers lost), {len(answers)} checked through getTaskResult,"
        f" {len(tasks)} in the store ({len(unacknowledged)} never acknowledged),"
        f" {len(stored_ready)} ready, {len(tasks) - len(stored_ready)} failed,"
        f" {leased_again} leased again after a crash;"
        f" balance {balance / 1e6:.5f} = 10 - {len(stored_ready)} x 0.001;"
        f" {looped:.1f} s of crash loop, {time.monotonic() - started:.1f} s in all"
    )


def test_a_killed_server_leaves_no_process_behind(
    orphans: set[tuple[int, int]], start_server: ServerFactory, tmp_path: Path
) -> None:
    server: CapgateServer = start_server(tmp_path / "data")
    assert server.process is not None
    below = descendants(server.process.pid)
    assert below, "the server should run its OCR worker in a process of its own"
    orphans.update(below)
    server.kill9()
    deadline = time.monotonic() + 3
    while still_alive(orphans) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert still_alive(orphans) == set(), "processes of the killed servers still run"
