"""durability = "power": every acknowledged createTask was fsync'd before its answer.

A real `capgate serve` runs under strace, which records the WAL's writes and fsyncs and
the answers written to the sockets. strace prints a system call's entry before letting it
run and its exit after it returned, so the order of the lines is the order of the events:
an fsync whose exit line comes before an answer's entry line had returned before that
answer left. Each task carries a marker of its own, found in the first WAL write of its
row; the proof, for every acknowledged task: an fsync of the WAL began after that write
returned and returned before the answer naming the task began. With durability "process"
the same check must fail for most tasks, or it would prove nothing.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from capgate.model import TaskSpec, TaskType
from capgate.store.sqlite import SqliteStore
from tests.support import BOOTSTRAP_KEY, CapgateServer, captchas, image_task

pytestmark = pytest.mark.system

CREATES = 20


@pytest.fixture(scope="module")
def strace() -> str:
    """The strace binary, once it has shown it can trace here (ptrace may be forbidden in
    a container). Missing or unable: a skip, but a failure under CI=true."""
    binary = shutil.which("strace")
    problem = None if binary else "strace is not installed"
    if binary:
        probe = subprocess.run(
            [binary, "-f", "-qq", "-o", os.devnull, "-e", "trace=fdatasync", "true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if probe.returncode != 0:
            problem = f"strace cannot trace here: {probe.stderr.strip()}"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}, and CI must prove durability = 'power'")
        pytest.skip(problem)
    assert binary is not None
    return binary


@dataclass
class Call:
    """One system call of the trace: where its entry and its exit lines are."""

    name: str
    entered: int
    returned: int
    text: str  # the entry line, with its arguments


def traced_creates(strace: str, data: Path, durability: str) -> tuple[list[Call], list[str]]:
    """Serve under strace, make CREATES tasks one after another on one connection, stop
    the server; the trace's calls, and each task's marker in the order of the tasks."""
    server = CapgateServer(data, local_solving="false", durability=durability)
    trace = data / "strace.txt"
    command = [sys.executable, "-m", "capgate", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(server.port), "--data", str(data)]
    data.mkdir(parents=True)
    # -yy: each descriptor's file or socket; -xx -s 5000: a whole WAL page, in hex.
    events = "trace=fsync,fdatasync,pwrite64,pwritev,write,writev,sendto,sendmsg"
    options = ["-f", "-qq", "-yy", "-xx", "-s", "5000", "-e", events, "-e", "signal=none"]
    with (data / "server.log").open("ab") as log:
        tracer = subprocess.Popen(
            [strace, *options, "-o", str(trace), *command],
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(server, tracer)
        body = captchas(seed=7, n=1)[0][0]
        markers = []
        for n in range(CREATES):
            marker = f"mark{n:03d}x{secrets.token_hex(8)}"
            task = {**image_task(body), "comment": marker}
            answer = server.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": task})
            assert answer["errorId"] == 0, answer
            markers.append((answer["taskId"], marker))
    finally:
        _stop(tracer)
        server.http.close()
    markers.sort()
    assert [task_id for task_id, _ in markers] == list(range(1, CREATES + 1))
    return _calls(trace.read_text(errors="replace")), [marker for _, marker in markers]


def _wait_ready(server: CapgateServer, tracer: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if tracer.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log.read_text()}")
        try:
            if server.http.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server did not become ready:\n{server.log.read_text()}")


def _stop(tracer: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server (strace's child), then wait for strace to write it all."""
    try:
        children = Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        os.kill(int(child), signal.SIGTERM)
    if not children:
        tracer.terminate()  # strace passes it on to the server
    try:
        tracer.wait(30)
    except subprocess.TimeoutExpired:
        tracer.kill()
        tracer.wait(5)


_LINE = re.compile(r"(\d+) +(.*)")
_RESUMED = re.compile(r"<\.\.\. (\w+) resumed>")
_NAME = re.compile(r"(\w+)\(")
_HEX = re.compile(r"\\x([0-9a-f]{2})")


def _calls(trace: str) -> list[Call]:
    """Every call of the trace (strace -f splits a call that another thread's line
    interrupts into `<unfinished ...>` and `<... name resumed>`)."""
    calls: list[Call] = []
    open_calls: dict[str, tuple[str, int, str]] = {}
    for number, line in enumerate(trace.splitlines()):
        found = _LINE.fullmatch(line)
        if found is None:
            continue
        pid, rest = found.groups()
        rest = _HEX.sub(lambda byte: chr(int(byte.group(1), 16)), rest)  # -xx undone
        if (resumed := _RESUMED.match(rest)) is not None:
            name, entered, text = open_calls.pop(pid)
            assert name == resumed.group(1), line
            calls.append(Call(name, entered, number, text))
        elif (named := _NAME.match(rest)) is not None:
            if rest.endswith("<unfinished ...>"):
                open_calls[pid] = (named.group(1), number, rest)
            else:
                calls.append(Call(named.group(1), number, number, rest))
    return calls


def unsynced_answers(calls: list[Call], markers: list[str]) -> list[int]:
    """The tasks (numbered from 1) whose answer began before an fsync of the WAL that
    began after the task's row was written had returned."""
    wal = "capgate.db-wal>"
    writes = [c for c in calls if c.name.startswith("pwrite") and wal in c.text.split(",")[0]]
    syncs = [c for c in calls if c.name in ("fsync", "fdatasync") and wal in c.text]
    answers: dict[int, int] = {}  # task id -> the entry of the first write of its answer
    begun: dict[str, int] = {}  # socket -> the entry of its answer now being written
    for call in sorted(calls, key=lambda c: c.entered):
        if call.name not in ("write", "writev", "sendto", "sendmsg") or "TCP:" not in call.text:
            continue
        socket = call.text.split(",")[0]
        if "HTTP/1.1 " in call.text:
            begun[socket] = call.entered
        if (named := re.search(r'"taskId":(\d+)', call.text)) is not None:
            answers.setdefault(int(named.group(1)), begun.get(socket, call.entered))
    assert sorted(answers) == list(range(1, len(markers) + 1)), "an answer is not in the trace"
    late = []
    for task_id, marker in enumerate(markers, start=1):
        written = min(c.returned for c in writes if marker in c.text)
        if not any(written < s.entered and s.returned < answers[task_id] for s in syncs):
            late.append(task_id)
    return late


def test_power_fsyncs_the_wal_before_each_create_is_answered(strace: str, tmp_path: Path) -> None:
    calls, markers = traced_creates(strace, tmp_path / "power", "power")
    assert unsynced_answers(calls, markers) == []


def test_process_answers_without_waiting_for_an_fsync(strace: str, tmp_path: Path) -> None:
    """The same check on "process" durability finds answers sent before any fsync: the
    check can fail (a checkpoint's or a WAL restart's fsync may cover a few tasks)."""
    calls, markers = traced_creates(strace, tmp_path / "process", "process")
    assert len(unsynced_answers(calls, markers)) >= CREATES // 2


# --- the store itself, in process -------------------------------------------------------


def _spec() -> TaskSpec:
    return TaskSpec(TaskType.IMAGE_TO_TEXT, {}, b"\x89PNG")


async def _create(store: SqliteStore, n: int) -> object:
    key = await store.create_key(f"k{n}", secrets.token_bytes(16), 10**9, 0.0)
    return await store.create_task(key.id, _spec(), 1000, "127.0.0.1", 0.0, 120.0, 86400.0)


def test_after_a_failed_fsync_no_create_is_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux reports a failed write-back once: a later fsync that succeeds proves nothing,
    so the store refuses every create after the first failure."""

    async def scenario() -> None:
        store = SqliteStore(tmp_path / "capgate.db", "power")
        await store.open()
        try:
            await _create(store, 0)
            real = os.fdatasync

            def failing(fd: int) -> None:
                raise OSError(5, "Input/output error")

            monkeypatch.setattr(os, "fdatasync", failing)
            with pytest.raises(OSError, match="Input/output"):
                await _create(store, 1)
            monkeypatch.setattr(os, "fdatasync", real)
            with pytest.raises(OSError, match="Input/output"):
                await _create(store, 2)
        finally:
            await store.close()

    asyncio.run(scenario())


def test_close_answers_the_creates_it_finds_waiting(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteStore(tmp_path / "capgate.db", "power")
        await store.open()
        creates = [asyncio.ensure_future(_create(store, n)) for n in range(3)]
        await asyncio.sleep(0)  # One turn: each create waits for the next commit.
        assert len(store._creates) == 3
        await store.close()
        for created in creates:
            assert (await created) is not None

    asyncio.run(scenario())


def test_fsyncs_are_shared_by_the_batches_that_wait(tmp_path: Path) -> None:
    """Creates in many loop turns while one fsync runs share the next."""

    async def scenario() -> None:
        store = SqliteStore(tmp_path / "capgate.db", "power")
        await store.open()
        keys = [
            await store.create_key(f"k{n}", secrets.token_bytes(16), 10**9, 0.0) for n in range(50)
        ]
        synced = 0
        sync_wal = store._sync_wal

        def counted() -> None:
            nonlocal synced
            synced += 1
            time.sleep(0.01)  # a slow disk
            sync_wal()

        store._sync_wal = counted  # type: ignore[method-assign]
        try:
            tasks = []
            for key in keys:  # one create per loop turn
                args = (key.id, _spec(), 1000, "127.0.0.1", 0.0, 120.0, 86400.0)
                tasks.append(asyncio.ensure_future(store.create_task(*args)))
                await asyncio.sleep(0.001)
            assert len({task.id for task in await asyncio.gather(*tasks)}) == 50
        finally:
            await store.close()
        assert synced < 25

    asyncio.run(scenario())
