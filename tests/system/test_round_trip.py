"""One task from createTask to a solved answer, against a real server process."""

from __future__ import annotations

from typing import Any

import pytest

from capgate.solvers.testkeys import DOCUMENTED_USER_AGENT, RECAPTCHA_TEST_TOKEN
from tests.support import BOOTSTRAP_KEY, CapgateServer, captchas, image_task

pytestmark = pytest.mark.system

# The only keys CLIENTS.md allows at the root in a getTaskResult answer.
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


def create(server: CapgateServer, task: dict[str, Any], key: str = BOOTSTRAP_KEY) -> int:
    answer = server.post("/createTask", {"clientKey": key, "task": task})
    assert set(answer) == {"errorId", "taskId"}, answer
    assert answer["errorId"] == 0
    assert isinstance(answer["taskId"], int)
    task_id: int = answer["taskId"]
    return task_id


def balance(server: CapgateServer, key: str = BOOTSTRAP_KEY) -> float:
    answer = server.post("/getBalance", {"clientKey": key})
    assert answer["errorId"] == 0
    value: float = answer["balance"]
    return value


def test_image_to_text_round_trip(server: CapgateServer) -> None:
    assert balance(server) == 10.0
    samples = captchas(seed=424242, n=6)
    ids = [create(server, image_task(body)) for body, _ in samples]
    read = 0
    for task_id, (_, label) in zip(ids, samples, strict=True):
        answer = server.wait_final(BOOTSTRAP_KEY, task_id)
        assert set(answer) == ROOT_RESULT_KEYS - {"errorCode", "errorDescription"}, answer
        assert answer["errorId"] == 0
        assert answer["status"] == "ready"
        assert set(answer["solution"]) == {"text"}
        assert isinstance(answer["solution"]["text"], str)
        assert answer["cost"] == "0.00100"
        assert answer["ip"] == "127.0.0.1"
        assert answer["solveCount"] == 1
        assert isinstance(answer["createTime"], int)
        assert answer["createTime"] <= answer["endTime"]
        read += answer["solution"]["text"] == label
        # A result stays readable, unchanged, after it is ready.
        assert server.post("/getTaskResult", {"clientKey": BOOTSTRAP_KEY, "taskId": task_id}) == (
            answer
        )
    # The engine must read most of these; it need not read every one.
    assert read >= 4, f"only {read} of 6 captchas read correctly"
    # Charged once per solved task, and only once.
    assert balance(server) == pytest.approx(10.0 - 6 * 0.001)


def test_task_id_as_numeric_string_and_junk_fields(server: CapgateServer) -> None:
    body, _ = captchas(seed=5, n=1)[0]
    task = {**image_task(body), "phrase": None, "comment": False, "numeric": ""}
    answer = server.post(
        "/createTask",
        {"clientKey": BOOTSTRAP_KEY, "task": task, "softId": "123", "callbackUrl": ""},
    )
    assert answer["errorId"] == 0, answer
    task_id = answer["taskId"]
    server.wait_final(BOOTSTRAP_KEY, task_id)
    answer = server.post(
        "/getTaskResult",
        {
            "clientKey": BOOTSTRAP_KEY,
            "taskId": str(task_id),
            "errorId": 0,
            "errorCode": None,
            "errorDescription": None,
        },
    )
    assert answer["status"] == "ready"


@pytest.mark.parametrize(
    ("task_type", "site_key", "solution"),
    [
        (
            "TurnstileTaskProxyless",
            "1x00000000000000000000AA",
            {"token": "XXXX.DUMMY.TOKEN.XXXX", "userAgent": DOCUMENTED_USER_AGENT},
        ),
        (
            "AntiTurnstileTaskProxyLess",
            "3x00000000000000000000FF",
            {"token": "XXXX.DUMMY.TOKEN.XXXX", "userAgent": DOCUMENTED_USER_AGENT},
        ),
        (
            "HCaptchaTaskProxyless",
            "10000000-ffff-ffff-ffff-000000000001",
            {
                "gRecaptchaResponse": "10000000-aaaa-bbbb-cccc-000000000001",
                "token": "10000000-aaaa-bbbb-cccc-000000000001",
                "respKey": "",
                "userAgent": DOCUMENTED_USER_AGENT,
            },
        ),
        (
            "NoCaptchaTaskProxyless",
            "6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI",
            {
                "gRecaptchaResponse": RECAPTCHA_TEST_TOKEN,
                "token": RECAPTCHA_TEST_TOKEN,
                "userAgent": DOCUMENTED_USER_AGENT,
            },
        ),
    ],
)
def test_documented_test_keys_answer_for_free(
    server: CapgateServer, task_type: str, site_key: str, solution: dict[str, str]
) -> None:
    task = {"type": task_type, "websiteURL": "https://example.com/", "websiteKey": site_key}
    task_id = create(server, task)
    answer = server.wait_final(BOOTSTRAP_KEY, task_id)
    assert answer["status"] == "ready", answer
    assert answer["solution"] == solution
    assert answer["cost"] == "0.00000"
    assert balance(server) == 10.0


def test_a_blocking_test_key_fails_and_costs_nothing(server: CapgateServer) -> None:
    task = {
        "type": "TurnstileTaskProxyless",
        "websiteURL": "https://example.com/",
        "websiteKey": "2x00000000000000000000AB",
    }
    task_id = create(server, task)
    answer = server.wait_final(BOOTSTRAP_KEY, task_id)
    assert answer["errorId"] == 12
    assert answer["errorCode"] == "ERROR_CAPTCHA_UNSOLVABLE"
    assert "always blocks" in answer["errorDescription"]
    assert set(answer) <= ROOT_RESULT_KEYS
    assert balance(server) == 10.0
