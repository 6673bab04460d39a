"""The seed documents' rules, enforced by a real server: statuses, deadline, retention,
poll limit, money and tenant isolation. Time moves by the test clock, never by sleeping."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import BOOTSTRAP_KEY, CapgateServer, ServerFactory, captchas, image_task, run_cli

pytestmark = pytest.mark.system


def create_image_task(server: CapgateServer, key: str = BOOTSTRAP_KEY) -> int:
    body, _ = captchas(seed=77, n=1)[0]
    answer = server.post("/createTask", {"clientKey": key, "task": image_task(body)})
    assert answer["errorId"] == 0, answer
    task_id: int = answer["taskId"]
    return task_id


def result(server: CapgateServer, task_id: int, key: str = BOOTSTRAP_KEY) -> dict[str, object]:
    answer: dict[str, object] = server.post("/getTaskResult", {"clientKey": key, "taskId": task_id})
    return answer


def new_key(server: CapgateServer, balance: str) -> str:
    done = run_cli("keys", "create", "--balance", balance, "--data", str(server.data))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_waiting_is_exactly_processing(idle_server: CapgateServer) -> None:
    task_id = create_image_task(idle_server)
    assert result(idle_server, task_id) == {"errorId": 0, "status": "processing"}


def test_a_task_nobody_solves_times_out_and_is_refunded(idle_server: CapgateServer) -> None:
    task_id = create_image_task(idle_server)
    _, money_before = idle_server.db_counts()
    assert idle_server.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"] == 9.999
    idle_server.advance(119)
    assert result(idle_server, task_id)["status"] == "processing"
    idle_server.advance(2)
    answer = result(idle_server, task_id)
    assert answer == {
        "errorId": 12,
        "errorCode": "ERROR_CAPTCHA_UNSOLVABLE",
        "errorDescription": "No solver finished the task within its 120 s deadline",
    }
    assert idle_server.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"] == 10.0
    assert idle_server.db_counts()[1] == money_before + 1000


def test_the_deadline_is_configurable(start_server: ServerFactory) -> None:
    server = start_server(local_solving="false", task_deadline_seconds="10")
    task_id = create_image_task(server)
    server.advance(11)
    assert result(server, task_id)["errorCode"] == "ERROR_CAPTCHA_UNSOLVABLE"


def test_results_are_kept_24_hours_after_creation(server: CapgateServer) -> None:
    task_id = create_image_task(server)
    ready = server.wait_final(BOOTSTRAP_KEY, task_id)
    assert ready["status"] == "ready"
    server.advance(24 * 3600 - 60)
    assert result(server, task_id) == ready
    server.advance(61)
    answer = result(server, task_id)
    assert answer["errorId"] == 16
    assert answer["errorCode"] == "ERROR_NO_SUCH_CAPCHA_ID"
    # The sweep deletes it from the store too.
    assert server.db_counts()[0] == 0


def test_at_most_120_polls_per_task(idle_server: CapgateServer) -> None:
    task_id = create_image_task(idle_server)
    for _ in range(120):
        assert result(idle_server, task_id)["status"] == "processing"
    answer = result(idle_server, task_id)
    assert answer["errorId"] == 16
    assert "polled more than 120 times" in str(answer["errorDescription"])


def test_zero_balance_refuses_before_anything_is_queued(idle_server: CapgateServer) -> None:
    broke = new_key(idle_server, "0")
    before = idle_server.db_counts()
    body, _ = captchas(seed=1, n=1)[0]
    answer = idle_server.post("/createTask", {"clientKey": broke, "task": image_task(body)})
    assert answer["errorId"] == 10
    assert answer["errorCode"] == "ERROR_ZERO_BALANCE"
    assert answer["errorDescription"]
    assert idle_server.db_counts() == before


def test_another_keys_task_is_not_found(idle_server: CapgateServer) -> None:
    other = new_key(idle_server, "1")
    task_id = create_image_task(idle_server)
    answer = result(idle_server, task_id, key=other)
    assert answer["errorId"] == 16
    assert answer["errorCode"] == "ERROR_NO_SUCH_CAPCHA_ID"
    assert "status" not in answer
    # The owner's view is untouched by the stranger's poll.
    assert result(idle_server, task_id)["status"] == "processing"


def test_keys_created_by_the_cli_work_and_are_listed(idle_server: CapgateServer) -> None:
    secret = new_key(idle_server, "2.5")
    assert len(secret) == 32
    answer = idle_server.post("/getBalance", {"clientKey": secret})
    assert answer == {"errorId": 0, "balance": 2.5}
    create_image_task(idle_server, key=secret)
    listing = run_cli("keys", "list", "--data", str(idle_server.data))
    assert listing.returncode == 0, listing.stderr
    assert secret not in listing.stdout
    assert BOOTSTRAP_KEY not in listing.stdout
    assert "2.49900" in listing.stdout


def test_report_incorrect_refunds_once(server: CapgateServer) -> None:
    task_id = create_image_task(server)
    assert server.wait_final(BOOTSTRAP_KEY, task_id)["status"] == "ready"
    balance = server.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"]
    assert balance == 9.999
    stranger = new_key(server, "1")
    answer = server.post("/reportIncorrectImageCaptcha", {"clientKey": stranger, "taskId": task_id})
    assert answer["errorCode"] == "ERROR_NO_SUCH_CAPCHA_ID"
    for _ in range(2):
        answer = server.post(
            "/reportIncorrectImageCaptcha", {"clientKey": BOOTSTRAP_KEY, "taskId": task_id}
        )
        assert answer == {"errorId": 0, "status": "success"}
    assert server.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"] == 10.0


def test_reporting_an_unfinished_task_is_refused(idle_server: CapgateServer) -> None:
    task_id = create_image_task(idle_server)
    answer = idle_server.post("/reportIncorrect", {"clientKey": BOOTSTRAP_KEY, "taskId": task_id})
    assert answer["errorId"] == 16
    assert "no answer to report" in answer["errorDescription"]


def test_an_idempotency_key_makes_a_retried_create_safe(idle_server: CapgateServer) -> None:
    import concurrent.futures

    import httpx

    body, _ = captchas(seed=78, n=1)[0]
    payload = {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)}

    def create(headers: dict[str, str]) -> dict[str, object]:
        answer: dict[str, object] = httpx.post(
            f"{idle_server.base}/createTask", json=payload, headers=headers, timeout=30
        ).json()
        return answer

    # Ten concurrent duplicates: one task, one charge.
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(create, [{"Idempotency-Key": "order-17"}] * 10))
    assert {a["errorId"] for a in answers} == {0}
    assert len({a["taskId"] for a in answers}) == 1
    assert idle_server.db_counts()[0] == 1
    assert idle_server.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"] == 9.999
    # The same key in the body works too; a different task under it is refused.
    again = idle_server.post("/createTask", {**payload, "idempotencyKey": "order-17"})
    assert again["taskId"] == answers[0]["taskId"]
    other_body, _ = captchas(seed=79, n=1)[0]
    refused = idle_server.post(
        "/createTask",
        {"clientKey": BOOTSTRAP_KEY, "task": image_task(other_body), "idempotencyKey": "order-17"},
    )
    assert refused["errorId"] == 110 and "different task" in refused["errorDescription"]
    assert idle_server.db_counts()[0] == 1


def test_per_key_limits_answer_no_slot_and_spare_other_keys(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server(tmp_path / "limits", local_solving="false", max_tasks_in_flight="2")
    other = new_key(server, "1")
    body, _ = captchas(seed=80, n=1)[0]
    task = image_task(body)
    for _ in range(2):
        assert (
            server.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": task})["errorId"] == 0
        )
    refused = server.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": task})
    assert (refused["errorId"], refused["errorCode"]) == (2, "ERROR_NO_SLOT_AVAILABLE")
    assert "in flight" in refused["errorDescription"]
    assert server.post("/createTask", {"clientKey": other, "task": task})["errorId"] == 0
    assert server.db_counts()[0] == 3

    rated = start_server(tmp_path / "rate", local_solving="false", max_creates_per_second="2")
    answers = [
        rated.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": task})["errorId"]
        for _ in range(6)
    ]
    assert answers[:2] == [0, 0] and 2 in answers[2:]


def test_no_dialect_shows_another_keys_task(server: CapgateServer) -> None:
    """Tenant isolation on every read path, including a finished task the server now answers
    from memory: a stranger's key finds nothing, in any dialect, and changes nothing."""
    from capgate.dialects import ids

    task_id = create_image_task(server)
    owner_view = server.wait_final(BOOTSTRAP_KEY, task_id)
    assert owner_view["status"] == "ready"
    created_at = float(owner_view["createTime"])
    stranger = new_key(server, "1")
    uuid, ulid = ids.to_uuid(task_id, created_at), ids.to_ulid(task_id, created_at)
    for path, task_ref in (
        ("/getTaskResult", task_id),
        ("/anticaptcha/getTaskResult", task_id),
        ("/2captcha/getTaskResult", task_id),
        ("/capmonster/getTaskResult", task_id),
        ("/capsolver/getTaskResult", uuid),
        ("/anysolver/getTaskResult", ulid),
        ("/api/solver/getTaskResult", uuid),
        ("/reportIncorrectImageCaptcha", task_id),
        ("/capsolver/feedbackTask", uuid),
    ):
        body = {"clientKey": stranger, "taskId": task_ref, "result": {"invalid": True}}
        answer = server.post(path, body)
        assert answer["errorId"] != 0, (path, answer)
        assert "solution" not in answer or answer["solution"] is None, (path, answer)
    rest = server.http.get(f"/task/result/{uuid}", headers={"x-api-key": stranger})
    assert (rest.status_code, rest.json()) == (404, {"status": "NOT_FOUND"})
    legacy = server.http.post("/res.php", data={"key": stranger, "action": "get", "id": task_id})
    assert legacy.text == "ERROR_WRONG_CAPTCHA_ID"
    # The owner's task is as it was: not reported, not refunded to anyone, and a stranger's
    # polls do not use up the owner's 120.
    # (The stranger's report attempts above dropped the cached copy; the owner's poll
    # caches it again, so the stranger's polls below go through the cache too.)
    assert server.wait_final(BOOTSTRAP_KEY, task_id) == owner_view
    for _ in range(130):
        server.post("/getTaskResult", {"clientKey": stranger, "taskId": task_id})
    assert server.wait_final(BOOTSTRAP_KEY, task_id) == owner_view
    assert server.post("/getBalance", {"clientKey": stranger})["balance"] == 1


def test_an_optional_floor_between_polls(start_server: ServerFactory, tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "floor", local_solving="false", min_poll_interval_seconds="0.5"
    )
    task_id = create_image_task(server)
    assert result(server, task_id) == {"errorId": 0, "status": "processing"}
    too_soon = result(server, task_id)
    assert (too_soon["errorId"], too_soon["errorCode"]) == (2, "ERROR_NO_SLOT_AVAILABLE")
    assert "at most every 0.5 s" in str(too_soon["errorDescription"])
    time.sleep(0.6)
    assert result(server, task_id) == {"errorId": 0, "status": "processing"}
