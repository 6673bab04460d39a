"""Every rule of CLIENTS.md ("Rules every JSON dialect must keep"), checked on a live server.

Each test names its rule. Rules that belong to one dialect (CapSolver's "idle", uCaptcha's
HTTP statuses) are checked with that dialect's contract tests.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from tests.support import BOOTSTRAP_KEY, CapgateServer, captchas, image_task

pytestmark = pytest.mark.system

ROOT_RESULT_KEYS = {
    "errorId",
    "errorCode",
    "errorDescription",
    "status",
    "solution",
    "cost",
    "ip",
    "createTime",
    "endTime",
    "solveCount",
}


def create(server: CapgateServer, task: Mapping[str, object]) -> int:
    answer = server.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": task})
    assert answer["errorId"] == 0, answer
    task_id: int = answer["taskId"]
    return task_id


def test_rule_1_waiting_is_processing_never_idle(idle_server: CapgateServer) -> None:
    task_id = create(idle_server, image_task(captchas(1, 1)[0][0]))
    for _ in range(3):
        answer = idle_server.post("/getTaskResult", {"clientKey": BOOTSTRAP_KEY, "taskId": task_id})
        assert answer == {"errorId": 0, "status": "processing"}


def test_rule_2_every_reply_has_errorid_and_errors_are_http_200(
    idle_server: CapgateServer,
) -> None:
    for path, payload in (
        ("/createTask", {"clientKey": "nope", "task": {"type": "ImageToTextTask"}}),
        ("/getTaskResult", {"clientKey": BOOTSTRAP_KEY, "taskId": 12345}),
        ("/getBalance", {"clientKey": BOOTSTRAP_KEY}),
        ("/reportIncorrectImageCaptcha", {"clientKey": BOOTSTRAP_KEY, "taskId": 1}),
    ):
        response = idle_server.http.post(path, json=payload)
        assert response.status_code == 200
        body = response.json()
        assert isinstance(body["errorId"], int)
        if body["errorId"] > 0:
            assert body["errorCode"] and body["errorDescription"]
            assert "status" not in body or body["status"] != "failed"


def test_rule_3_integer_ids_also_accepted_as_strings(server: CapgateServer) -> None:
    task_id = create(server, image_task(captchas(2, 1)[0][0]))
    assert isinstance(task_id, int)
    server.wait_final(BOOTSTRAP_KEY, task_id)
    answer = server.post("/getTaskResult", {"clientKey": BOOTSTRAP_KEY, "taskId": str(task_id)})
    assert answer["status"] == "ready"
    report = server.post(
        "/reportIncorrectImageCaptcha", {"clientKey": BOOTSTRAP_KEY, "taskId": str(task_id)}
    )
    assert report == {"errorId": 0, "status": "success"}


def test_rule_4_a_ready_result_stays_readable_and_unchanged(server: CapgateServer) -> None:
    task_id = create(server, image_task(captchas(3, 1)[0][0]))
    first = server.wait_final(BOOTSTRAP_KEY, task_id)
    assert first["status"] == "ready"
    # One client polls 29 times whatever happens: that and more must see the same answer.
    for _ in range(40):
        assert (
            server.post("/getTaskResult", {"clientKey": BOOTSTRAP_KEY, "taskId": task_id}) == first
        )
    assert set(first) <= ROOT_RESULT_KEYS


@pytest.mark.parametrize(
    ("task", "solution"),
    [
        # Every field the family's docs show (a test-key answer names its user agent).
        (
            {"websiteKey": "6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI", "type": "RecaptchaV2Task"},
            {"gRecaptchaResponse", "token", "userAgent"},
        ),
        (
            {"websiteKey": "10000000-ffff-ffff-ffff-000000000001", "type": "HCaptchaTask"},
            {"gRecaptchaResponse", "token", "respKey", "userAgent"},
        ),
        (
            {"websiteKey": "1x00000000000000000000AA", "type": "TurnstileTask"},
            {"token", "userAgent"},
        ),
    ],
)
def test_rule_5_and_6_solution_fields_and_proxy_type_names_without_proxy(
    server: CapgateServer, task: dict[str, str], solution: set[str]
) -> None:
    # Rule 6: a proxy-type name sent without proxy fields means proxyless.
    task_id = create(server, {**task, "websiteURL": "https://example.com/"})
    answer = server.wait_final(BOOTSTRAP_KEY, task_id)
    assert set(answer["solution"]) == solution
    float(answer["cost"])  # Rule 5: clients only float() the cost.


def test_rule_6_type_names_match_case_insensitively(server: CapgateServer) -> None:
    body = captchas(4, 1)[0][0]
    task_id = create(server, {"type": "imagetotexttask", "body": body})
    assert server.wait_final(BOOTSTRAP_KEY, task_id)["status"] == "ready"


def test_rule_7_junk_is_tolerated(server: CapgateServer) -> None:
    body = captchas(5, 1)[0][0]
    answer = server.post(
        "/createTask",
        {
            "clientKey": BOOTSTRAP_KEY,
            "task": {
                "type": "ImageToTextTask",
                "body": body,
                "phrase": None,
                "comment": False,
                "minLength": "",
            },
            "softId": "0",
            "callbackUrl": "",
            "languagePool": "en",
        },
    )
    assert answer["errorId"] == 0, answer
    answer = server.post(
        "/getTaskResult",
        {
            "clientKey": BOOTSTRAP_KEY,
            "taskId": answer["taskId"],
            "errorId": 0,
            "errorCode": "",
            "errorDescription": None,
        },
    )
    assert answer["errorId"] == 0


def test_rule_8_replies_are_application_json(idle_server: CapgateServer) -> None:
    for path in ("/createTask", "/getTaskResult", "/getBalance"):
        response = idle_server.http.post(path, content=b"{}")
        assert response.headers["content-type"] == "application/json"


def test_rule_10_never_errorid_11(idle_server: CapgateServer) -> None:
    for payload in ({}, {"clientKey": "x"}, {"clientKey": BOOTSTRAP_KEY, "task": {}}):
        for path in ("/createTask", "/getTaskResult", "/getBalance"):
            assert idle_server.post(path, payload)["errorId"] != 11
