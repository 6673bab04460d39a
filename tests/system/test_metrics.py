"""/metrics in Prometheus' text format, read from a real server."""

from __future__ import annotations

import re

import pytest

from tests.support import BOOTSTRAP_KEY, CapgateServer, captchas, image_task

pytestmark = pytest.mark.system


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample; fails if it is absent."""
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in:\n{text}")


def test_metrics_count_requests_tasks_and_solve_times(server: CapgateServer) -> None:
    for body, _ in captchas(9301, 3):
        task_id = server.post(
            "/createTask", {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)}
        )["taskId"]
        assert server.wait_final(BOOTSTRAP_KEY, task_id)["status"] == "ready"
    server.post("/capsolver/getBalance", {"clientKey": "not-a-key"})
    response = server.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert sample(text, "capgate_requests_total", dialect="root", code="ok") >= 6
    assert (
        sample(text, "capgate_requests_total", dialect="capsolver", code="KEY_DOES_NOT_EXIST") == 1
    )
    assert sample(text, "capgate_tasks_created_total", type="ImageToText") == 3
    finished = sample(
        text, "capgate_tasks_finished_total", type="ImageToText", status="ready", solver="ocr"
    )
    assert finished == 3
    assert sample(text, "capgate_solve_seconds_count", solver="ocr") == 3
    assert sample(text, "capgate_solve_seconds_bucket", solver="ocr", le="+Inf") == 3
    assert sample(text, "capgate_queue_depth") == 0
    # No secret, and nothing about any one key, is ever a label.
    assert BOOTSTRAP_KEY not in text and "not-a-key" not in text
    # (The test-keys solver is named for the vendors' test site keys, not for an API key.)
    unrelated = text.replace("KEY_DOES_NOT_EXIST", "").replace('solver="testkeys"', "")
    assert re.search(r"key", unrelated) is None
    assert sample(text, "capgate_solver_up", solver="ocr") == 1
