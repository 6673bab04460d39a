"""Secrets never appear in logs or error answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import BOOTSTRAP_KEY, ServerFactory, captchas, image_task

pytestmark = pytest.mark.system


def test_keys_stay_out_of_logs_and_answers(start_server: ServerFactory, tmp_path: Path) -> None:
    server = start_server(tmp_path / "s", log_level="debug")
    wrong = "f00d" * 8
    body, _ = captchas(9401, 1)[0]
    answers = [
        server.http.post(
            "/createTask", json={"clientKey": BOOTSTRAP_KEY, "task": image_task(body)}
        ),
        server.http.post("/createTask", json={"clientKey": wrong, "task": image_task(body)}),
        server.http.post("/getBalance", json={"clientKey": wrong}),
        server.http.post("/capsolver/getTaskResult", json={"clientKey": wrong, "taskId": "x"}),
        server.http.get(f"/res.php?key={wrong}&action=getbalance"),
        server.http.get("/task/result/1", headers={"x-api-key": wrong}),
        server.http.post("/worker/lease", json={"workerKey": wrong, "types": ["ImageToText"]}),
        server.http.post("/createTask", content=b'{"clientKey": "' + wrong.encode() + b'", '),
    ]
    task_id = answers[0].json()["taskId"]
    server.wait_final(BOOTSTRAP_KEY, task_id)
    for response in answers:
        assert BOOTSTRAP_KEY not in response.text and wrong not in response.text
    server.stop()
    log = server.log.read_text()
    # The log is real: the HTTP server's own lines are in it (granian's, or uvicorn's).
    assert any(line in log for line in ("granian", "Started server process", "Uvicorn running"))
    assert BOOTSTRAP_KEY not in log
    assert wrong not in log


def test_json_logs_carry_the_request_id(start_server: ServerFactory, tmp_path: Path) -> None:
    import json

    # No OCR pool: its worker processes are not the server's logs.
    server = start_server(tmp_path / "j", log_level="debug", log_format="json", ocr="false")
    server.http.post(
        "/getBalance", json={"clientKey": "nope"}, headers={"X-Request-Id": "trace-me-42"}
    )
    server.stop()
    entries = [json.loads(line) for line in server.log.read_text().splitlines() if line]
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    traced = [e for e in entries if e.get("request_id") == "trace-me-42"]
    assert traced and "KEY_DOES_NOT_EXIST" in traced[0]["message"]
