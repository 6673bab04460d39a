"""Several API nodes and workers sharing one real redis-server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import BOOTSTRAP_KEY, ServerFactory, captchas, image_task, run_cli

pytestmark = pytest.mark.system


def test_nodes_share_tasks_and_survive_losing_one(
    start_server: ServerFactory,
    start_worker: Any,
    redis_url: str,
    tmp_path: Path,
) -> None:
    node_a = start_server(tmp_path / "a", store=redis_url, local_solving="false")
    node_b = start_server(tmp_path / "b", store=redis_url, local_solving="false")
    samples = captchas(seed=9501, n=8)
    ids = [
        node_a.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)})["taskId"]
        for body, _ in samples
    ]
    # Created on A, read on B.
    waiting = node_b.post("/getTaskResult", {"clientKey": BOOTSTRAP_KEY, "taskId": ids[0]})
    assert waiting == {"errorId": 0, "status": "processing"}
    done = run_cli("keys", "create", "--worker", "--store", redis_url, "--data", str(tmp_path))
    assert done.returncode == 0, done.stderr
    start_worker(node_b, done.stdout.strip())
    node_a.kill9()  # Nothing acknowledged by A lives only in A.
    read = 0
    for task_id, (_, label) in zip(ids, samples, strict=True):
        answer = node_b.wait_final(BOOTSTRAP_KEY, task_id)
        assert answer["status"] == "ready", answer
        read += answer["solution"]["text"] == label
    assert read >= 6
    balance = node_b.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"]
    assert balance == pytest.approx(10.0 - 8 * 0.001)


def test_a_node_with_local_solvers_on_redis(start_server: ServerFactory, redis_url: str) -> None:
    node = start_server(store=redis_url)
    body, _ = captchas(seed=9502, n=1)[0]
    task_id = node.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)})[
        "taskId"
    ]
    answer = node.wait_final(BOOTSTRAP_KEY, task_id)
    assert answer["status"] == "ready" and answer["solveCount"] == 1
