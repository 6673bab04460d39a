"""Remote workers: real `capgate worker` processes leasing from an API-only node."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.support import BOOTSTRAP_KEY, CapgateServer, captchas, image_task, run_cli

pytestmark = pytest.mark.system
ADMIN = "worker-test-admin-key-0123456789abcdef"


def worker_key(server: CapgateServer) -> str:
    done = run_cli("keys", "create", "--worker", "--name", "w", "--data", str(server.data))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def create(server: CapgateServer, body: str) -> int:
    answer = server.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)})
    assert answer["errorId"] == 0, answer
    task_id: int = answer["taskId"]
    return task_id


def test_a_worker_solves_what_an_api_only_node_queues(
    idle_server: CapgateServer, start_worker: Any
) -> None:
    samples = captchas(9201, 6)
    ids = [create(idle_server, body) for body, _ in samples]
    start_worker(idle_server, worker_key(idle_server))
    read = 0
    for task_id, (_, label) in zip(ids, samples, strict=True):
        answer = idle_server.wait_final(BOOTSTRAP_KEY, task_id)
        assert answer["status"] == "ready", answer
        read += answer["solution"]["text"] == label
    assert read >= 4
    balance = idle_server.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"]
    assert balance == pytest.approx(10.0 - 6 * 0.001)


def test_leases_are_fenced_retried_and_recovered(
    idle_server: CapgateServer, start_worker: Any
) -> None:
    key = worker_key(idle_server)
    body, _ = captchas(9202, 1)[0]
    task_id = create(idle_server, body)
    ask = {"workerKey": key, "types": ["ImageToText"], "limit": 5, "requestId": "r-1"}
    first = idle_server.http.post("/worker/lease", json=ask).json()["leases"]
    assert [lease["taskId"] for lease in first] == [task_id]
    assert first[0]["body"] == body and first[0]["attempt"] == 1
    # The answer got lost; the worker retries the same request and gets the same lease.
    again = idle_server.http.post("/worker/lease", json=ask).json()["leases"]
    assert again == first
    # The worker dies holding the lease. Past its expiry the sweep requeues the task...
    idle_server.advance(31)
    stale = {"workerKey": key, "taskId": task_id, "token": first[0]["token"]}
    late = idle_server.http.post("/worker/complete", json={**stale, "solution": {"text": "X"}})
    assert late.json()["ok"] is False  # ...and a late answer from the dead lease is ignored.
    start_worker(idle_server, key)
    answer = idle_server.wait_final(BOOTSTRAP_KEY, task_id)
    assert answer["status"] == "ready" and answer["solveCount"] == 2
    assert answer["solution"]["text"] != "X"


def test_only_worker_keys_lease_and_bad_requests_are_refused(
    idle_server: CapgateServer,
) -> None:
    client_key = {"workerKey": BOOTSTRAP_KEY, "types": ["ImageToText"]}
    refused = idle_server.http.post("/worker/lease", json=client_key)
    assert refused.status_code == 401 and refused.json()["ok"] is False
    key = worker_key(idle_server)
    for bad in (
        {"workerKey": key, "types": ["Astrology"]},
        {"workerKey": key, "types": "ImageToText"},
        {"workerKey": key, "types": ["ImageToText"], "surprise": 1},
    ):
        response = idle_server.http.post("/worker/lease", json=bad)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "BAD_REQUEST"
    assert idle_server.db_counts()[0] == 0


def test_one_keys_flood_does_not_starve_another_key(idle_server: CapgateServer) -> None:
    body = captchas(seed=5, n=1)[0][0]
    flood = [
        idle_server.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)})
        for _ in range(60)
    ]
    done = run_cli("keys", "create", "--balance", "1", "--data", str(idle_server.data))
    quiet = done.stdout.strip()
    late = idle_server.post("/createTask", {"clientKey": quiet, "task": image_task(body)})
    ask = {"workerKey": worker_key(idle_server), "types": ["ImageToText"], "limit": 2}
    leases = idle_server.http.post("/worker/lease", json=ask).json()["leases"]
    # Oldest-first would hand out two of the flood's 60; fair leasing takes one of each.
    assert [lease["taskId"] for lease in leases] == [flood[0]["taskId"], late["taskId"]]


def test_a_worker_reads_each_site_with_the_registry_model(
    start_server: Any, start_worker: Any, tmp_path: Path
) -> None:
    """A worker follows the server's model registry (docs/learning.md): a task of a site
    with a model is read with it (here a model whose alphabet is reversed, so its answers
    are told apart), and its answer counts for the site; another task is read as before."""
    import asyncio
    import json

    from capgate.ocr.engine import DEFAULT_MODEL
    from capgate.store import SqliteStore

    server = start_server(tmp_path / "api", local_solving="false", learning="true", admin_key=ADMIN)
    spec = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    charset = spec["charset"]
    spec["charset"] = charset[::-1]
    spec.pop("calibration")

    async def publish() -> None:
        store = SqliteStore(server.data / "capgate.db")
        await store.open()
        try:
            await store.publish_model(
                "shop.example", DEFAULT_MODEL.read_bytes(), json.dumps(spec).encode(),
                0.0, 0.99, {}, 0.0, "by hand", labels=0,
            )  # fmt: skip
        finally:
            await store.close()

    asyncio.run(publish())
    body, _ = captchas(9301, 1)[0]
    with_site = server.post(
        "/createTask",
        {"clientKey": BOOTSTRAP_KEY,
         "task": {**image_task(body), "websiteURL": "https://shop.example/login"}},
    )["taskId"]  # fmt: skip
    without = create(server, body)
    start_worker(server, worker_key(server))
    plain = server.wait_final(BOOTSTRAP_KEY, without)["solution"]["text"]
    site_text = server.wait_final(BOOTSTRAP_KEY, with_site)["solution"]["text"]
    assert plain and site_text == "".join(charset[::-1][charset.index(c)] for c in plain)
    overview = server.http.get("/admin/overview", headers={"authorization": f"Bearer {ADMIN}"})
    (site,) = overview.json()["sites"]
    assert (site["site"], site["by_model"], site["local"]) == ("shop.example", 1, 1)


def test_a_worker_cannot_claim_a_site_model_that_is_not_serving(
    start_server: Any, tmp_path: Path
) -> None:
    server = start_server(tmp_path / "api", local_solving="false", learning="true")
    key = worker_key(server)
    body, _ = captchas(9302, 1)[0]
    task_id = server.post(
        "/createTask",
        {"clientKey": BOOTSTRAP_KEY,
         "task": {**image_task(body), "websiteURL": "https://shop.example/"}},
    )["taskId"]  # fmt: skip
    ask = {"workerKey": key, "types": ["ImageToText"], "limit": 1, "requestId": "r"}
    (lease,) = server.http.post("/worker/lease", json=ask).json()["leases"]
    assert lease["site"] == "shop.example"
    assert server.http.post("/worker/models", json={"workerKey": key}).json() == {"models": []}
    missing = server.http.post(
        "/worker/model", json={"workerKey": key, "site": "shop.example", "version": 1}
    )
    assert missing.status_code == 400 and missing.json()["ok"] is False
    claimed = {"text": "ABCD", "siteModel": 7}
    done = server.http.post(
        "/worker/complete",
        json={"workerKey": key, "taskId": task_id, "token": lease["token"], "solution": claimed},
    )
    assert done.json() == {"ok": True}
    assert server.wait_final(BOOTSTRAP_KEY, task_id)["solution"]["text"] == "ABCD"
    with sqlite3.connect(server.data / "capgate.db") as db:
        (solution,) = db.execute("SELECT solution FROM tasks WHERE id = ?", (task_id,)).fetchone()
    db.close()
    assert "site_model" not in str(solution)
