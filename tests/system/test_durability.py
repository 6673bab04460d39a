"""Nothing acknowledged is lost: kill -9 the server and start it again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import BOOTSTRAP_KEY, ServerFactory, captchas, image_task

pytestmark = pytest.mark.system


def test_acknowledged_tasks_survive_kill_9(start_server: ServerFactory) -> None:
    idle = start_server(local_solving="false")
    samples = captchas(seed=99, n=20)
    ids = []
    for body, _ in samples:
        answer = idle.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)})
        assert answer["errorId"] == 0
        ids.append(answer["taskId"])
    idle.kill9()

    # Restarted with its solvers on, the same data directory: every task is there and solved.
    solving = start_server()
    for task_id in ids:
        answer = solving.wait_final(BOOTSTRAP_KEY, task_id)
        assert answer["status"] == "ready", answer
        assert answer["solveCount"] == 1
    balance = solving.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"]
    assert balance == pytest.approx(10.0 - 20 * 0.001)


def test_a_task_leased_when_the_server_died_is_solved_after_restart(
    start_server: ServerFactory,
) -> None:
    first = start_server()
    body, _ = captchas(seed=100, n=1)[0]
    # Queue enough work that some of it is mid-lease when the process dies.
    ids = [
        first.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)})["taskId"]
        for _ in range(30)
    ]
    first.kill9()
    second = start_server()
    second.advance(31)  # Past the lease time: the sweep returns orphaned leases to the queue.
    attempts = []
    for task_id in ids:
        answer = second.wait_final(BOOTSTRAP_KEY, task_id)
        assert answer["status"] == "ready", answer
        attempts.append(answer["solveCount"])
    assert set(attempts) <= {1, 2}
    balance = second.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"]
    assert balance == pytest.approx(10.0 - 30 * 0.001)


def test_several_server_processes_share_one_port_and_one_store(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server(tmp_path / "multi", "--workers", "2", test_clock="false")
    samples = captchas(seed=101, n=12)
    ids = [
        server.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)})["taskId"]
        for body, _ in samples
    ]
    assert len(set(ids)) == 12
    for task_id in ids:
        answer = server.wait_final(BOOTSTRAP_KEY, task_id)
        assert answer["status"] == "ready" and answer["solveCount"] == 1
    balance = server.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"]
    assert balance == pytest.approx(10.0 - 12 * 0.001)
