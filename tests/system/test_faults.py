"""Dependencies failing under a running server: Redis stopped and restarted, the disk full.

Each must give clients a clear temporary error in their dialect (never a 5xx from a JSON
dialect, never a stack trace), keep the server up, lose nothing acknowledged, and heal by
itself when the fault ends. (An upstream provider that hangs is in test_providers.py.)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from capgate.keys import hash_secret
from capgate.model import Solution, TaskSpec, TaskType
from tests.support import (
    BOOTSTRAP_KEY,
    ServerFactory,
    captchas,
    free_port,
    image_task,
    wait_for_redis,
)

pytestmark = pytest.mark.system

TEMPORARY = ("ERROR_NO_SLOT_AVAILABLE", 2)  # the root dialect's "try again"
KEY_CACHE_SECONDS = 1.1  # a little longer than capgate.service remembers a key


class RedisProcess:
    """A redis-server of this test's own, which the test stops and starts again."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is not installed, and CI must test the Redis store")
            pytest.skip("redis-server is not installed")
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # The append-only file, synced on every write: a restart keeps every task.
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_redis(f"redis://127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    redis = RedisProcess(tmp_path / "redis")
    redis.workdir.mkdir()
    redis.start()
    yield redis
    redis.stop()


def create(base: str, body: str) -> httpx.Response:
    task = {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)}
    return httpx.post(f"{base}/createTask", json=task, timeout=30)


def result(base: str, task_id: int) -> httpx.Response:
    ask = {"clientKey": BOOTSTRAP_KEY, "taskId": task_id}
    return httpx.post(f"{base}/getTaskResult", json=ask, timeout=30)


def is_temporary(response: httpx.Response) -> bool:
    """The root dialect's "no slot, try again", as HTTP 200 with errorId 2."""
    answer = response.json()
    return response.status_code == 200 and (answer.get("errorCode"), answer["errorId"]) == TEMPORARY


def test_redis_stopped_and_restarted_under_load(
    start_server: ServerFactory, tmp_path: Path, redis_process: RedisProcess
) -> None:
    server = start_server(
        tmp_path / "node", store=f"redis://127.0.0.1:{redis_process.port}/0", ocr="true"
    )
    bodies = [body for body, _ in captchas(81, 12)]
    before = create(server.base, bodies[0]).json()["taskId"]
    assert server.wait_final(BOOTSTRAP_KEY, before)["status"] == "ready"

    redis_process.stop()
    time.sleep(KEY_CACHE_SECONDS)  # The key must be looked up in the store, and fail.
    answers = [create(server.base, body) for body in bodies[1:6]]
    answers += [result(server.base, before + n) for n in range(6)]  # `before` is finished
    rest = httpx.get(
        f"{server.base}/task/result/{before + 1}",
        headers={"x-api-key": BOOTSTRAP_KEY},
        timeout=30,
    )
    assert all(is_temporary(a) for a in answers), [a.text for a in answers]
    assert rest.status_code == 503 and rest.json()["status"] == "FAILED"  # uCaptcha's own
    assert server.http.get("/healthz").status_code == 200
    metrics = server.http.get("/metrics")  # This process's figures, without the queue depth.
    assert metrics.status_code == 200 and "capgate_queue_depth" not in metrics.text
    assert server.process is not None and server.process.poll() is None

    redis_process.start()
    deadline = time.monotonic() + 20
    while True:  # It heals by itself: no restart of capgate.
        answer = create(server.base, bodies[6]).json()
        if answer["errorId"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer["errorId"] == 0, answer
    # The connections the pool held across the restart are replaced before they are used:
    # once Redis answers, no request fails, and the dispatcher records its answer.
    for task_id in (answer["taskId"], before):
        deadline = time.monotonic() + 20
        while (final := result(server.base, task_id)).json().get("status") != "ready":
            assert final.json().get("status") == "processing", final.text
            assert time.monotonic() < deadline, final.text
            time.sleep(0.1)
    healed = [result(server.base, before + 1000) for _ in range(20)]
    assert all(r.json()["errorCode"] == "ERROR_NO_SUCH_CAPCHA_ID" for r in healed)
    # Only the two answered tasks were charged; the refused creates changed nothing.
    balance = server.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"]
    assert balance == pytest.approx(10 - 2 * 0.001)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs: a disk that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(f"CI runs as root but cannot mount a tmpfs: {done.stderr!r}")
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_refuses_creates_cleanly_and_heals(
    start_server: ServerFactory, small_disk: Path
) -> None:
    server = start_server(small_disk / "data", local_solving="false")
    body = captchas(82, 1)[0][0]
    acknowledged = [create(server.base, body).json()["taskId"] for _ in range(3)]
    # Fill the disk to the last byte.
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    for chunk in (65536, 512, 1):
        while True:
            try:
                os.write(fd, b"\0" * chunk)
            except OSError:
                break
    os.close(fd)
    refused = 0
    for _ in range(40):
        response = create(server.base, body)
        answer = response.json()
        if answer["errorId"] == 0:
            acknowledged.append(answer["taskId"])
        else:
            assert is_temporary(response), response.text
            refused += 1
    assert refused > 0, "the full disk refused nothing"
    assert server.http.get("/healthz").status_code == 200

    filler.unlink()
    deadline = time.monotonic() + 20
    while (answer := create(server.base, body).json())["errorId"] != 0:
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)
    acknowledged.append(answer["taskId"])
    # Every acknowledged task is there; only they were charged.
    for task_id in acknowledged:
        assert result(server.base, task_id).json() == {"errorId": 0, "status": "processing"}
    balance = server.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"]
    assert balance == pytest.approx(10 - len(acknowledged) * 0.001)
    print(f"\nfull disk: {refused} creates refused as temporary, {len(acknowledged)} acknowledged")


def test_redis_store_outlives_a_restart_without_failing_a_command(
    redis_process: RedisProcess,
) -> None:
    """The pool's connections from before a restart are replaced when they fail their
    health check, before the command is sent: the next command answers, first time."""
    from capgate.store.redis import RedisStore

    async def scenario() -> None:
        store = RedisStore(f"redis://127.0.0.1:{redis_process.port}/0")
        await store.open()
        try:
            now = time.time()
            key = await store.create_key("k", hash_secret("k"), 10_000, now)
            spec = TaskSpec(TaskType.IMAGE_TO_TEXT, {}, b"\x89PNG\r\n\x1a\n" + bytes(64))
            task = await store.create_task(key.id, spec, 10, "ip", now, now + 60, now + 600)
            # Several pooled connections, all alive when Redis goes.
            await asyncio.gather(*(store.get_task(task.id) for _ in range(8)))
            (lease,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, time.time())
            redis_process.stop()
            redis_process.start()
            await asyncio.sleep(1.1)  # past the pool's health-check interval
            done = await store.complete(task.id, lease.token, Solution("ab12"), "ocr", time.time())
            assert done
            finished = await asyncio.gather(*(store.get_task(task.id) for _ in range(8)))
            assert all(t is not None and t.solution == Solution("ab12") for t in finished)
        finally:
            await store.close()

    asyncio.run(scenario())
