"""Who may spend or move whose money: worker leases bound to their worker, keys with one
role each, quotas on tasks that no balance bounds, limits on refunds, and the
tasks-in-flight limit under concurrent creates. Each against a real server."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from capgate.solvers.testkeys import RECAPTCHA_V2_TEST_KEY
from tests.support import BOOTSTRAP_KEY, CapgateServer, ServerFactory, captchas, image_task, run_cli

pytestmark = pytest.mark.system


def new_key(server: CapgateServer, *args: str) -> str:
    done = run_cli("keys", "create", *args, "--data", str(server.data))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def balance(server: CapgateServer, key: str = BOOTSTRAP_KEY) -> float:
    answer = server.post("/getBalance", {"clientKey": key})
    assert answer["errorId"] == 0, answer
    value: float = answer["balance"]
    return value


def recaptcha_test_task() -> dict[str, str]:
    return {
        "type": "RecaptchaV2TaskProxyless",
        "websiteURL": "https://example.com/login",
        "websiteKey": RECAPTCHA_V2_TEST_KEY,
    }


# --- worker leases ----------------------------------------------------------------------


def test_a_worker_cannot_answer_another_workers_lease(idle_server: CapgateServer) -> None:
    first = new_key(idle_server, "--worker", "--name", "w1")
    second = new_key(idle_server, "--worker", "--name", "w2")
    body, _ = captchas(4711, 1)[0]
    created = idle_server.post(
        "/createTask", {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)}
    )
    task_id = created["taskId"]
    ask = {"workerKey": first, "types": ["ImageToText"], "limit": 1, "requestId": "r-1"}
    (lease,) = idle_server.http.post("/worker/lease", json=ask).json()["leases"]
    token = lease["token"]
    # The token names no request id a stranger could guess, and carries 128 bits at least.
    assert "r-1" not in token and len(token.split(":", 1)[1]) >= 32
    # The second worker, with the first one's token or the token the old scheme made.
    for stolen in (token, "w1:r-1", "w2:r-1"):
        sent = {"workerKey": second, "taskId": task_id, "token": stolen}
        answer = idle_server.http.post(
            "/worker/complete", json={**sent, "solution": {"text": "HIJACKED"}}
        ).json()
        assert answer["ok"] is False, stolen
        assert idle_server.http.post("/worker/extend", json=sent).json()["ok"] is False
        failed = {**sent, "code": "CAPTCHA_UNSOLVABLE", "description": "x", "retry": False}
        assert idle_server.http.post("/worker/fail", json=failed).json()["ok"] is False
    poll = idle_server.post("/getTaskResult", {"clientKey": BOOTSTRAP_KEY, "taskId": task_id})
    assert poll["status"] == "processing"  # (its price is held, as at creation)
    # The worker that holds the lease answers.
    mine = {"workerKey": first, "taskId": task_id, "token": token, "solution": {"text": "AB12"}}
    assert idle_server.http.post("/worker/complete", json=mine).json()["ok"] is True
    done = idle_server.post("/getTaskResult", {"clientKey": BOOTSTRAP_KEY, "taskId": task_id})
    assert done["solution"]["text"] == "AB12"
    # A retried lease request of the first worker still finds nothing new (same token).
    assert idle_server.http.post("/worker/lease", json=ask).json()["leases"] == []


def test_keys_have_one_role(idle_server: CapgateServer) -> None:
    worker = new_key(idle_server, "--worker", "--name", "w")
    body, _ = captchas(4712, 1)[0]
    before = idle_server.db_counts()
    for path, payload in (
        ("/createTask", {"clientKey": worker, "task": image_task(body)}),
        ("/getBalance", {"clientKey": worker}),
        ("/getTaskResult", {"clientKey": worker, "taskId": 1}),
    ):
        answer = idle_server.post(path, payload)
        assert answer["errorCode"] == "ERROR_KEY_DOES_NOT_EXIST", (path, answer)
    legacy = idle_server.http.get("/res.php", params={"key": worker, "action": "getbalance"})
    assert legacy.text == "ERROR_KEY_DOES_NOT_EXIST"
    assert idle_server.db_counts() == before
    # And a client key cannot lease.
    ask = {"workerKey": BOOTSTRAP_KEY, "types": ["ImageToText"]}
    assert idle_server.http.post("/worker/lease", json=ask).status_code == 401


def test_metrics_may_require_a_bearer(start_server: ServerFactory, tmp_path: Path) -> None:
    secret = "m" * 32
    server = start_server(tmp_path / "locked", metrics_key=secret)
    refused = server.http.get("/metrics")
    assert refused.status_code == 401 and "capgate_" not in refused.text
    wrong = server.http.get("/metrics", headers={"Authorization": "Bearer " + "n" * 32})
    assert wrong.status_code == 401
    shown = server.http.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
    assert shown.status_code == 200 and "capgate_" in shown.text


# --- tasks no balance bounds ------------------------------------------------------------


def test_free_tasks_have_their_own_quotas(start_server: ServerFactory, tmp_path: Path) -> None:
    server = start_server(tmp_path / "free", free_tasks_per_second="2")
    broke = new_key(server, "--balance", "0", "--name", "broke")
    before = server.db_counts()
    # Fields no test-key task needs, under every per-field limit: refused as a free task.
    padded = {**recaptcha_test_task(), **{f"x{i}": "y" * 8000 for i in range(20)}}
    answer = server.post("/createTask", {"clientKey": broke, "task": padded})
    assert answer["errorCode"] == "ERROR_BAD_PARAMETERS", answer
    assert "free task" in answer["errorDescription"]
    assert server.db_counts() == before
    # A burst past the rate: the first two pass, the rest wait their turn.
    answers = [
        server.post("/createTask", {"clientKey": broke, "task": recaptcha_test_task()})
        for _ in range(6)
    ]
    accepted = [a for a in answers if a["errorId"] == 0]
    assert 2 <= len(accepted) <= 3, answers  # a third token may refill in the meantime
    assert {a["errorCode"] for a in answers if a["errorId"]} == {"ERROR_NO_SLOT_AVAILABLE"}


def test_free_tasks_in_flight_are_bounded(start_server: ServerFactory, tmp_path: Path) -> None:
    # No solver runs, so free tasks stay queued: the in-flight quota is what stops them.
    server = start_server(
        tmp_path / "queued", local_solving="false", free_tasks_in_flight="3",
        free_tasks_per_second="0",
    )  # fmt: skip
    broke = new_key(server, "--balance", "0", "--name", "broke")
    body, _ = captchas(4713, 1)[0]
    # Image tasks cost money and this key has none: only free test-key tasks get in.
    answers = [
        server.post("/createTask", {"clientKey": broke, "task": recaptcha_test_task()})
        for _ in range(5)
    ]
    assert [a["errorId"] for a in answers] == [0, 0, 0, 2, 2], answers
    paid = server.post("/createTask", {"clientKey": broke, "task": image_task(body)})
    assert paid["errorCode"] == "ERROR_ZERO_BALANCE"


def test_the_in_flight_limit_holds_under_concurrent_creates(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server(tmp_path / "limited", local_solving="false", max_tasks_in_flight="5")
    body, _ = captchas(4714, 1)[0]
    payload = json.dumps({"clientKey": BOOTSTRAP_KEY, "task": image_task(body)}).encode()
    request = (
        f"POST /createTask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode() + payload
    # Connections opened first and the requests sent back to back, so that the server
    # reads many of them in one event-loop turn (and one group commit).
    sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
    for sock in sockets:
        sock.sendall(request)
    accepted = 0
    for sock in sockets:
        sock.settimeout(30)
        with sock:
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        accepted += b'"errorId":0' in answer
    assert accepted == 5
    assert server.db_counts()[0] == 5
    assert balance(server) == pytest.approx(10.0 - 5 * 0.001)


# --- refunds ------------------------------------------------------------------------------


def solve_some(server: CapgateServer, n: int) -> list[int]:
    ids = []
    for body, _ in captchas(4715, n):
        created = server.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)})
        ids.append(created["taskId"])
    for task_id in ids:
        assert server.wait_final(BOOTSTRAP_KEY, task_id)["status"] == "ready"
    return ids


def test_reports_count_only_within_their_window(server: CapgateServer) -> None:
    first, second = solve_some(server, 2)
    server.advance(901)  # past the default 15-minute window
    spent = balance(server)
    late = server.post(
        "/reportIncorrectImageCaptcha", {"clientKey": BOOTSTRAP_KEY, "taskId": first}
    )
    assert (
        late["errorCode"] == "ERROR_NO_SUCH_CAPCHA_ID"
        and "within 900 s" in late["errorDescription"]
    ), late
    legacy = server.http.get(
        "/res.php", params={"key": BOOTSTRAP_KEY, "action": "reportbad", "id": str(second)}
    )
    assert legacy.text == "ERROR_REPORT_NOT_RECORDED"
    assert balance(server) == pytest.approx(spent)
    # A report that the answer was right is always taken.
    kept = server.post("/reportCorrect", {"clientKey": BOOTSTRAP_KEY, "taskId": first})
    assert kept["errorId"] == 0, kept


def test_a_key_cannot_have_every_answer_refunded(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server(tmp_path / "reports", report_allowance="2", max_report_share="0.4")
    ids = solve_some(server, 5)
    spent = balance(server)
    verdicts = [
        server.post("/reportIncorrectImageCaptcha", {"clientKey": BOOTSTRAP_KEY, "taskId": i})
        for i in ids
    ]
    # Two refunds are the allowance; a third would be 3 of 5 answers, over 40%.
    assert [v["errorId"] for v in verdicts] == [0, 0, 16, 16, 16], verdicts
    assert balance(server) == pytest.approx(spent + 2 * 0.001)
