"""uCaptcha's REST dialect against seed 000's documented shapes and HTTP status codes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from capgate.dialects import ids, ucaptcha
from capgate.model import (
    CapgateError,
    ErrorCode,
    Solution,
    Task,
    TaskStatus,
    TaskType,
)
from tests.support import make_task

SEED_UUID = "550e8400-e29b-41d4-a716-446655440000"  # Seed 000's example task_id.
SEED_STATUSES = {"QUEUED", "RUNNING", "SUCCESS", "FAILED", "NOT_FOUND"}


def task(status: TaskStatus, task_type: TaskType = TaskType.TURNSTILE, **kw: Any) -> Task:
    return make_task(
        status,
        task_type,
        **{
            "id": 1000005,
            "created_at": 1692863536.4,
            "cost": 2990,
            "ip": "1.2.3.4",
            "attempts": 0,
            **kw,
        },
    )


def decoded(answer: tuple[int, bytes]) -> tuple[int, Any]:
    status, body = answer
    return status, json.loads(body)


# --- GET /task/result/:id, exactly per seed 000 -------------------------------------------


def test_queued_matches_seed() -> None:
    assert ucaptcha.render_result(task(TaskStatus.QUEUED)) == (200, b'{"status":"QUEUED"}')


def test_running_matches_seed() -> None:
    assert ucaptcha.render_result(task(TaskStatus.RUNNING)) == (200, b'{"status":"RUNNING"}')


def test_solved_matches_seed() -> None:
    done = task(TaskStatus.READY, solution=Solution(token="ct=abc123xyz..."))
    assert ucaptcha.render_result(done) == (
        200,
        b'{"status":"SUCCESS","result":{"token":"ct=abc123xyz..."}}',
    )


def test_failed_matches_seed() -> None:
    failed = task(TaskStatus.FAILED, error_code=ErrorCode.CAPTCHA_UNSOLVABLE)
    assert ucaptcha.render_result(failed) == (200, b'{"status":"FAILED","error":"Task failed"}')


def test_failed_carries_the_description() -> None:
    failed = task(
        TaskStatus.FAILED,
        error_code=ErrorCode.TASK_TIMEOUT,
        error_description="Not solved within 120 seconds",
    )
    assert decoded(ucaptcha.render_result(failed)) == (
        200,
        {"status": "FAILED", "error": "Not solved within 120 seconds"},
    )


def test_not_found_matches_seed() -> None:
    missing = CapgateError(ErrorCode.TASK_NOT_FOUND, f"Task {SEED_UUID} does not exist")
    assert ucaptcha.render_error(missing) == (404, b'{"status":"NOT_FOUND"}')


@pytest.mark.parametrize(
    "task_type",
    [
        TaskType.RECAPTCHA_V2,
        TaskType.RECAPTCHA_V2_ENTERPRISE,
        TaskType.RECAPTCHA_V3,
        TaskType.HCAPTCHA,
        TaskType.TURNSTILE,
        TaskType.FUNCAPTCHA,
        TaskType.GEETEST,
    ],
)
def test_token_tasks_answer_result_token(task_type: TaskType) -> None:
    done = task(TaskStatus.READY, task_type, solution=Solution(token="tok"))
    assert decoded(ucaptcha.render_result(done)) == (
        200,
        {"status": "SUCCESS", "result": {"token": "tok"}},
    )


def test_image_tasks_answer_text_and_token() -> None:
    done = task(TaskStatus.READY, TaskType.IMAGE_TO_TEXT, solution=Solution(text="W68HP"))
    assert decoded(ucaptcha.render_result(done)) == (
        200,
        {"status": "SUCCESS", "result": {"token": "W68HP", "text": "W68HP"}},
    )


def test_user_agent_is_added_when_known() -> None:
    done = task(TaskStatus.READY, solution=Solution(token="t", user_agent="UA/1"))
    assert decoded(ucaptcha.render_result(done))[1]["result"] == {
        "token": "t",
        "userAgent": "UA/1",
    }


def test_ready_without_a_solution_still_has_a_token_field() -> None:
    _, body = decoded(ucaptcha.render_result(task(TaskStatus.READY)))
    assert body == {"status": "SUCCESS", "result": {"token": ""}}


def test_seed_python_loop_reads_every_answer() -> None:
    """Seed 000's loop reads result["status"], then result["result"]["token"] or .get("error")."""
    answers = [
        ucaptcha.render_result(task(TaskStatus.QUEUED)),
        ucaptcha.render_result(task(TaskStatus.READY, solution=Solution(token="t"))),
        ucaptcha.render_result(task(TaskStatus.FAILED)),
        *(ucaptcha.render_error(CapgateError(code, "why")) for code in ErrorCode),
    ]
    for _, body in answers:
        result = json.loads(body)
        assert result["status"] in SEED_STATUSES
        if result["status"] == "SUCCESS":
            assert isinstance(result["result"]["token"], str)
        elif result["status"] == "FAILED":
            assert result.get("error")


# --- Errors: real HTTP status codes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.KEY_DOES_NOT_EXIST, 401),
        (ErrorCode.ZERO_BALANCE, 402),
        (ErrorCode.TASK_NOT_FOUND, 404),
        (ErrorCode.POLL_LIMIT_EXCEEDED, 429),
        (ErrorCode.BAD_REQUEST, 400),
        (ErrorCode.TASK_ABSENT, 400),
        (ErrorCode.TASK_NOT_SUPPORTED, 400),
        (ErrorCode.ZERO_CAPTCHA_FILESIZE, 400),
        (ErrorCode.TOO_BIG_CAPTCHA_FILESIZE, 400),
        (ErrorCode.IMAGE_TYPE_NOT_SUPPORTED, 400),
        (ErrorCode.REQUEST_TOO_LARGE, 413),
        (ErrorCode.NO_SUCH_METHOD, 405),
        (ErrorCode.INTERNAL, 503),
    ],
)
def test_http_status_codes(code: ErrorCode, status: int) -> None:
    assert ucaptcha.render_error(CapgateError(code, "why"))[0] == status


def test_every_error_code_is_mapped() -> None:
    assert set(ucaptcha.ERRORS) == set(ErrorCode)
    for code, (status, name) in ucaptcha.ERRORS.items():
        assert 200 <= status < 600, code
        assert name and name == name.upper(), code


def test_error_body_shape() -> None:
    error = CapgateError(ErrorCode.KEY_DOES_NOT_EXIST, "Send the API key as x-api-key")
    assert decoded(ucaptcha.render_error(error)) == (
        401,
        {
            "status": "FAILED",
            "error": "Send the API key as x-api-key",
            "code": "ERROR_KEY_DOES_NOT_EXIST",
        },
    )


def test_error_without_description_still_says_something() -> None:
    _, body = decoded(ucaptcha.render_error(CapgateError(ErrorCode.ZERO_BALANCE, "")))
    assert body["error"] == "ERROR_ZERO_BALANCE"


# --- Authentication --------------------------------------------------------------------------


def test_key_from_header() -> None:
    headers = [(b"content-type", b"application/json"), (b"x-api-key", b"secret")]
    assert ucaptcha.client_key(headers, b"") == "secret"


def test_key_header_name_is_case_insensitive() -> None:
    assert ucaptcha.client_key([(b"X-API-Key", b"secret")], b"") == "secret"


def test_key_from_token_query() -> None:
    assert ucaptcha.client_key([], b"foo=1&token=secret") == "secret"


def test_header_wins_over_query() -> None:
    assert ucaptcha.client_key([(b"x-api-key", b"head")], b"token=query") == "head"


def test_empty_header_falls_back_to_query() -> None:
    assert ucaptcha.client_key([(b"x-api-key", b"  ")], b"token=query") == "query"


@pytest.mark.parametrize("query", [b"", b"token=", b"key=secret", b"%%%", b"token"])
def test_missing_key(query: bytes) -> None:
    with pytest.raises(CapgateError) as caught:
        ucaptcha.client_key([(b"authorization", b"Bearer x")], query)
    assert caught.value.code is ErrorCode.KEY_DOES_NOT_EXIST
    assert ucaptcha.render_error(caught.value)[0] == 401


# --- Task ids --------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", [1, 1000005, 74372499131, 2**61])
def test_submitted_id_round_trips(task_id: int) -> None:
    created = task(TaskStatus.QUEUED, id=task_id)
    status, body = decoded(ucaptcha.render_submitted(created))
    assert status == 200
    assert body == {"task_id": ids.to_uuid(task_id, created.created_at), "status": "QUEUED"}
    assert ucaptcha.parse_task_id(body["task_id"]) == task_id


def test_seed_example_uuid_is_a_well_formed_id() -> None:
    # Well-formed: the store, not the dialect, decides it does not exist.
    assert ucaptcha.parse_task_id(SEED_UUID) > 0


def test_numeric_ids_are_accepted() -> None:
    assert ucaptcha.parse_task_id("1000005") == 1000005


@pytest.mark.parametrize(
    "tail", ["", "abc", "0", "-5", "../../etc/passwd", "550e8400-e29b-41d4-a716-44665544000g"]
)
def test_malformed_ids_are_not_found(tail: str) -> None:
    with pytest.raises(CapgateError) as caught:
        ucaptcha.parse_task_id(tail)
    assert caught.value.code is ErrorCode.TASK_NOT_FOUND
    assert ucaptcha.render_error(caught.value) == (404, b'{"status":"NOT_FOUND"}')


# --- POST /task/submit -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "task_type"),
    [
        ("turnstile", TaskType.TURNSTILE),
        ("Turnstile", TaskType.TURNSTILE),
        ("TurnstileTaskProxyless", TaskType.TURNSTILE),
        ("AntiTurnstileTaskProxyLess", TaskType.TURNSTILE),
        ("recaptcha_v2", TaskType.RECAPTCHA_V2),
        ("reCAPTCHA v2", TaskType.RECAPTCHA_V2),
        ("NoCaptchaTaskProxyless", TaskType.RECAPTCHA_V2),
        ("recaptcha-v3", TaskType.RECAPTCHA_V3),
        ("recaptchav2enterprise", TaskType.RECAPTCHA_V2_ENTERPRISE),
        ("hcaptcha", TaskType.HCAPTCHA),
        ("HCaptchaTaskProxyless", TaskType.HCAPTCHA),
    ],
)
def test_token_type_names(name: str, task_type: TaskType) -> None:
    body = json.dumps({"type": name, "websiteURL": "https://x", "websiteKey": "k"}).encode()
    spec = ucaptcha.parse_submit(body)
    assert spec.type is task_type
    assert spec.params["vendorType"] == name


def test_short_field_names() -> None:
    spec = ucaptcha.parse_submit(
        b'{"type":"turnstile","sitekey":"1x00000000000000000000AA","url":"https://x",'
        b'"user_agent":"UA"}'
    )
    assert spec.type is TaskType.TURNSTILE
    assert spec.params == {
        "websiteKey": "1x00000000000000000000AA",
        "websiteURL": "https://x",
        "userAgent": "UA",
        "vendorType": "turnstile",
    }


def test_task_nested_under_task_and_keys_never_stored() -> None:
    spec = ucaptcha.parse_submit(
        b'{"clientKey":"secret","task":{"type":"HCaptchaTaskProxyless",'
        b'"websiteURL":"https://x","websiteKey":"k","token":"secret","apiKey":"secret"}}'
    )
    assert spec.type is TaskType.HCAPTCHA
    assert "secret" not in json.dumps(spec.params)


def test_image_task_with_short_names() -> None:
    spec = ucaptcha.parse_submit(b'{"type":"image","image":"aGVsbG8="}')
    assert spec.type is TaskType.IMAGE_TO_TEXT
    assert spec.body == b"hello"
    assert spec.params == {"vendorType": "image"}


def test_image_task_data_uri() -> None:
    spec = ucaptcha.parse_submit(
        b'{"type":"ImageToTextTask","body":"data:image/png;base64,aGVsbG8=","case":true}'
    )
    assert spec.body == b"hello"
    assert spec.params == {"case": True, "vendorType": "ImageToTextTask"}


def test_junk_optional_fields_are_dropped() -> None:
    spec = ucaptcha.parse_submit(
        b'{"type":"turnstile","sitekey":"k","websiteKey":null,"url":"u","websiteURL":"",'
        b'"callbackUrl":"","proxy":null}'
    )
    assert spec.params == {"websiteKey": "k", "websiteURL": "u", "vendorType": "turnstile"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", ErrorCode.BAD_REQUEST),
        (b"not json", ErrorCode.BAD_REQUEST),
        (b"[1, 2]", ErrorCode.BAD_REQUEST),
        (b'{"task": "turnstile"}', ErrorCode.BAD_REQUEST),
        (b'{"task": null}', ErrorCode.TASK_ABSENT),
        (b'{"task": {}}', ErrorCode.TASK_ABSENT),
        (b"{}", ErrorCode.TASK_ABSENT),
        (b'{"websiteURL": "u", "websiteKey": "k"}', ErrorCode.TASK_NOT_SUPPORTED),
        (b'{"type": 5, "websiteURL": "u", "websiteKey": "k"}', ErrorCode.TASK_NOT_SUPPORTED),
        (b'{"type": "audio"}', ErrorCode.TASK_NOT_SUPPORTED),
        (b'{"type": "turnstile", "url": "u"}', ErrorCode.BAD_REQUEST),
        (b'{"type": "turnstile", "sitekey": 5, "url": "u"}', ErrorCode.BAD_REQUEST),
        (b'{"type": "image"}', ErrorCode.ZERO_CAPTCHA_FILESIZE),
        (b'{"type": "image", "body": "***"}', ErrorCode.IMAGE_TYPE_NOT_SUPPORTED),
    ],
)
def test_bad_submissions(body: bytes, code: ErrorCode) -> None:
    with pytest.raises(CapgateError) as caught:
        ucaptcha.parse_submit(body)
    assert caught.value.code is code
    assert caught.value.description
    assert ucaptcha.render_error(caught.value)[0] == 400
