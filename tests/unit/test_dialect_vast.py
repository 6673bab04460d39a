"""Vast's dialect against seed 003 and docs.vast.sh (getBalance, authentication errors)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from capgate.dialects import ids, vast
from capgate.dialects.base import JsonDialect
from capgate.model import CapgateError, ErrorCode, Key, Solution, Task, TaskStatus, TaskType
from tests.support import make_task, seed_document

T0 = 1_764_000_000.25
SEED_ID = "9d55c404-5a45-4e7b-8a93-b8ed9f26bdcf"

# Seed 003's examples, as printed.
SEED_PROCESSING: dict[str, Any] = {"status": "processing"}
SEED_READY_RECAPTCHA: dict[str, Any] = {
    "status": "ready",
    "solution": {
        "gRecaptchaResponse": (
            "03AGdBq25nDZASDNcKOSrPQJ2Qy7RgC8GzP64fZunlJ-KFk2bvOr9kRCdvlrqrn8c3M2cXY..."
        )
    },
}
SEED_READY_HCAPTCHA: dict[str, Any] = {
    "status": "ready",
    "solution": {"token": "P1_eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJwYXNza2V5IjoiRXJ1SU..."},
}
SEED_FAILED: dict[str, Any] = {
    "status": "error",  # sic: the seed's status list says "failed", which capgate answers
    "error": {
        "errorId": 1,
        "errorCode": "ERROR_CAPTCHA_UNSOLVABLE",
        "errorDescription": "The captcha could not be solved",
    },
}


def make(status: TaskStatus, task_type: TaskType = TaskType.RECAPTCHA_V2, **kw: Any) -> Task:
    return make_task(
        status,
        task_type,
        **{"created_at": T0, "params": {"vendorType": "RecaptchaV2TaskProxyless"}, **kw},
    )


def decode(raw: bytes) -> Any:
    return json.loads(raw)


def without_errorid(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer less the top-level errorId that CLIENTS.md rule 2 adds to the seed's."""
    assert answer["errorId"] == 0
    return {k: v for k, v in answer.items() if k != "errorId"}


def test_the_seed_document_holds_the_examples_replayed_here() -> None:
    seed = seed_document("003")
    text = "".join(seed.read_text().split())
    for example in (SEED_PROCESSING, SEED_READY_RECAPTCHA, SEED_READY_HCAPTCHA, SEED_FAILED):
        assert "".join(json.dumps(example).split()) in text
    # The contradiction the dialect resolves: "failed" in the list, "error" in the example.
    assert "failed-Thetaskhasfailed" in text and '"status":"error"' in text


# --- seed 003: getTaskResult ------------------------------------------------------------


@pytest.mark.parametrize("status", [TaskStatus.QUEUED, TaskStatus.RUNNING])
def test_processing_matches_seed_003(status: TaskStatus) -> None:
    raw = vast.render_result(make(status))
    assert raw == b'{"errorId":0,"status":"processing"}'
    assert without_errorid(decode(raw)) == SEED_PROCESSING


def test_ready_recaptcha_matches_seed_003() -> None:
    token = SEED_READY_RECAPTCHA["solution"]["gRecaptchaResponse"]
    raw = vast.render_result(make(TaskStatus.READY, solution=Solution(token=token)))
    assert without_errorid(decode(raw)) == SEED_READY_RECAPTCHA
    assert raw.startswith(b'{"errorId":0,"status":"ready","solution":{"gRecaptchaResponse":')


def test_ready_hcaptcha_matches_seed_003() -> None:
    token = SEED_READY_HCAPTCHA["solution"]["token"]
    done = make(TaskStatus.READY, TaskType.HCAPTCHA, solution=Solution(token=token))
    assert without_errorid(decode(vast.render_result(done))) == SEED_READY_HCAPTCHA


def test_failed_carries_the_seed_error_object_and_says_failed() -> None:
    failed = make(
        TaskStatus.FAILED,
        error_code=ErrorCode.CAPTCHA_UNSOLVABLE,
        error_description="The captcha could not be solved",
    )
    answer = decode(vast.render_result(failed))
    assert answer["status"] == "failed"
    assert answer["error"] == SEED_FAILED["error"]
    # CLIENTS.md rule 2: the failure is also at the top, errorId > 0 with code and text.
    assert answer == {**SEED_FAILED["error"], "status": "failed", "error": SEED_FAILED["error"]}


def test_failed_without_a_description_still_explains() -> None:
    answer = decode(vast.render_result(make(TaskStatus.FAILED, error_code=ErrorCode.TASK_TIMEOUT)))
    assert answer["error"]["errorCode"] == "ERROR_CAPTCHA_UNSOLVABLE"
    assert answer["error"]["errorDescription"] and answer["errorDescription"]
    unknown = decode(vast.render_result(make(TaskStatus.FAILED)))
    assert unknown["errorCode"] == "ERROR_CAPTCHA_UNSOLVABLE"


@pytest.mark.parametrize(
    ("task_type", "solution", "expected"),
    [
        (TaskType.RECAPTCHA_V2, Solution(token="t", score=0.3), {"gRecaptchaResponse": "t"}),
        (TaskType.RECAPTCHA_V2_ENTERPRISE, Solution(token="t"), {"gRecaptchaResponse": "t"}),
        (
            TaskType.RECAPTCHA_V3,
            Solution(token="t", score=0.9),
            {"gRecaptchaResponse": "t", "score": 0.9},
        ),
        (TaskType.RECAPTCHA_V3, Solution(token="t"), {"gRecaptchaResponse": "t"}),
        (TaskType.HCAPTCHA, Solution(token="t"), {"token": "t"}),
        (TaskType.TURNSTILE, Solution(token="t"), {"token": "t"}),
        (TaskType.IMAGE_TO_TEXT, Solution(text="AB12", confidence=0.9), {"text": "AB12"}),
    ],
)
def test_solution_fields_per_type(
    task_type: TaskType, solution: Solution, expected: dict[str, Any]
) -> None:
    done = make(TaskStatus.READY, task_type, solution=solution)
    assert vast.render_solution(done) == expected


@pytest.mark.parametrize(
    ("task_type", "field"),
    [(TaskType.TURNSTILE, "token"), (TaskType.RECAPTCHA_V2, "gRecaptchaResponse")],
)
def test_user_agent_only_when_the_client_sent_its_own(task_type: TaskType, field: str) -> None:
    # Seed 003: userAgent is "present if a custom User-Agent was used".
    solution = Solution(token="t", user_agent="UA")
    custom = make(TaskStatus.READY, task_type, solution=solution, params={"userAgent": "UA"})
    assert vast.render_solution(custom) == {field: "t", "userAgent": "UA"}
    default = make(TaskStatus.READY, task_type, solution=solution, params={})
    assert vast.render_solution(default) == {field: "t"}


def test_result_stays_readable_after_ready() -> None:
    done = make(TaskStatus.READY, solution=Solution(token="t"))
    assert vast.render_result(done) == vast.render_result(done)


# --- createTask, ids --------------------------------------------------------------------


def test_created_answer_and_its_id_round_trip() -> None:
    for task_id in (1, 42, 74372499131, 2**62 - 1):
        task = make(TaskStatus.QUEUED, id=task_id)
        created = decode(vast.render_created(task))
        assert created == {"errorId": 0, "taskId": ids.to_uuid(task_id, T0)}
        assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", created["taskId"])
        body = json.dumps({"clientKey": "k", "taskId": created["taskId"]}).encode()
        assert vast.parse_result(body) == ("k", task_id)


def test_seed_curl_request_parses() -> None:
    body = b'{\n    "clientKey": "YOUR_API_KEY",\n    "taskId": "' + SEED_ID.encode() + b'"\n  }'
    assert vast.parse_result(body) == ("YOUR_API_KEY", ids.parse_id(SEED_ID))


@pytest.mark.parametrize("value", [42, "42", ids.to_ulid(42, T0), ids.to_uuid(42, T0).upper()])
def test_task_ids_in_every_form(value: object) -> None:
    body = json.dumps({"clientKey": "k", "taskId": value}).encode()
    assert vast.parse_result(body) == ("k", 42)


@pytest.mark.parametrize("value", [None, "", "x", False, 0, {}])
def test_bad_ids_are_not_found(value: object) -> None:
    body = json.dumps({"clientKey": "k", "taskId": value}).encode()
    with pytest.raises(CapgateError) as caught:
        vast.parse_result(body)
    assert caught.value.code is ErrorCode.TASK_NOT_FOUND
    assert decode(vast.render_error(caught.value))["error"]["errorCode"] == "ERROR_TASK_NOT_FOUND"


@pytest.mark.parametrize(
    ("name", "task_type"),
    [
        ("RecaptchaV2TaskProxyless", TaskType.RECAPTCHA_V2),
        ("ReCaptchaV2TaskProxyLess", TaskType.RECAPTCHA_V2),
        ("RecaptchaV3TaskProxyless", TaskType.RECAPTCHA_V3),
        ("HCaptchaTaskProxyless", TaskType.HCAPTCHA),
        ("TurnstileTaskProxyless", TaskType.TURNSTILE),
        ("AntiTurnstileTaskProxyLess", TaskType.TURNSTILE),
    ],
)
def test_type_names_map(name: str, task_type: TaskType) -> None:
    spec = vast.parse_task({"type": name, "websiteURL": "https://x/", "websiteKey": "k"})
    assert spec.type is task_type


def test_junk_is_tolerated() -> None:
    body = (
        b'{"clientKey":"k","callbackUrl":"","softId":"7","task":{"type":"ImageToTextTask",'
        b'"body":"aGVsbG8=","comment":false,"phrase":null,"minLength":""}}'
    )
    spec = vast.parse_task(vast.parse_create(body).task)
    assert spec.body == b"hello"
    # softId at the top goes with the task (getSpendingStats filters by it).
    assert spec.params == {"comment": False, "softId": "7", "vendorType": "ImageToTextTask"}


# --- getBalance, reports, errors --------------------------------------------------------


def test_balance_matches_the_docs_plus_errorid() -> None:
    key = Key(1, "k", b"", 10_250_000, 0, 0.0)
    assert vast.render_balance(key) == b'{"errorId":0,"balance":10.25}'
    assert vast.parse_balance(b'{"clientKey": "YOUR_API_KEY"}') == "YOUR_API_KEY"


def test_reports_take_the_uuid() -> None:
    body = json.dumps({"clientKey": "k", "taskId": ids.to_uuid(42, T0)}).encode()
    for path, verdict in vast.REPORT_PATHS.items():
        report = vast.parse_report(body, verdict)
        assert (report.task_id, report.correct) == (42, path == "reportCorrect")
    assert vast.render_reported(make(TaskStatus.READY)) == b'{"errorId":0,"status":"success"}'


def test_request_errors_are_nested_at_the_top_and_end_a_polling_loop() -> None:
    raw = vast.render_error(CapgateError(ErrorCode.KEY_DOES_NOT_EXIST, "Invalid API key"))
    fields = {
        "errorId": 1,
        "errorCode": "ERROR_KEY_DOES_NOT_EXIST",
        "errorDescription": "Invalid API key",
    }
    # Seed 003: poll "until the status is either ready or failed"; a bad key or an unknown
    # id must stop that loop as a failed task does.
    assert decode(raw) == {**fields, "status": "failed", "error": fields}


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (ErrorCode.KEY_DOES_NOT_EXIST, "ERROR_KEY_DOES_NOT_EXIST"),
        (ErrorCode.ZERO_BALANCE, "ERROR_INSUFFICIENT_BALANCE"),
        (ErrorCode.TASK_NOT_FOUND, "ERROR_TASK_NOT_FOUND"),
        (ErrorCode.CAPTCHA_UNSOLVABLE, "ERROR_CAPTCHA_UNSOLVABLE"),
        (ErrorCode.BAD_REQUEST, "ERROR_BAD_PARAMETERS"),
    ],
)
def test_documented_codes(code: ErrorCode, name: str) -> None:
    assert vast.ERRORS[code] == name


def test_every_error_code_is_mapped() -> None:
    for code in ErrorCode:
        answer = decode(vast.render_error(CapgateError(code, "")))
        assert answer["errorId"] == 1 and answer["error"]["errorId"] == 1
        assert answer["errorCode"] == vast.ERRORS[code] and answer["errorCode"].startswith("ERROR_")
        assert answer["errorDescription"]
        assert answer["status"] == "failed"


def test_constants() -> None:
    assert not vast.SYNC_TYPES
    assert vast.RETENTION_SECONDS is None


def _typecheck() -> None:
    dialect: JsonDialect = vast
    del dialect
