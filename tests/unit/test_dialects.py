"""The dialects' pure functions: ids, shapes per status, error tables, request parsing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from capgate.dialects import (
    JSON_DIALECTS,
    anysolver,
    capsolver,
    ids,
    twocaptcha_legacy,
    ucaptcha,
    vast,
)
from capgate.dialects.base import JsonDialect
from capgate.model import (
    CapgateError,
    ErrorCode,
    Key,
    Solution,
    Task,
    TaskStatus,
    TaskType,
)
from tests.support import make_task

T0 = 1_764_000_000.25


def task(status: TaskStatus, task_type: TaskType = TaskType.TURNSTILE, **kw: Any) -> Task:
    return make_task(
        status,
        task_type,
        **{
            "created_at": T0,
            "cost": 1300,
            "params": {"vendorType": "AntiTurnstileTaskProxyLess"},
            **kw,
        },
    )


READY = task(TaskStatus.READY, solution=Solution(token="tok"), solver="testkeys")
FAILED = task(
    TaskStatus.FAILED, error_code=ErrorCode.CAPTCHA_UNSOLVABLE, error_description="no luck"
)


@pytest.mark.parametrize("task_id", [1, 42, 74372499131, 2**62 - 1])
def test_ids_round_trip_in_every_form(task_id: int) -> None:
    as_uuid = ids.to_uuid(task_id, T0)
    assert uuid.UUID(as_uuid).version == 4
    assert ids.parse_id(as_uuid) == task_id
    as_ulid = ids.to_ulid(task_id, T0)
    assert len(as_ulid) == 26
    assert ids.parse_id(as_ulid) == task_id
    assert ids.parse_id(task_id) == ids.parse_id(str(task_id)) == task_id


def test_later_tasks_get_later_ids_in_every_form() -> None:
    assert ids.to_ulid(2, T0 + 1) > ids.to_ulid(1, T0)
    assert ids.to_uuid(2, T0 + 1) > ids.to_uuid(1, T0)


@pytest.mark.parametrize("junk", [None, True, 0, -5, 1.5, "", "abc", "0" * 36, "!" * 26, []])
def test_junk_ids_are_none(junk: object) -> None:
    assert ids.parse_id(junk) is None


@pytest.mark.parametrize("module", list(JSON_DIALECTS.values()))
def test_every_error_code_is_mapped_in_every_json_dialect(module: JsonDialect) -> None:
    for code in ErrorCode:
        assert module.render_error(CapgateError(code, "why"))


def test_every_error_code_is_mapped_in_the_other_dialects() -> None:
    for code in ErrorCode:
        assert code in ucaptcha.ERRORS
        assert code in twocaptcha_legacy.ERRORS
        assert b"ERROR" in twocaptcha_legacy.render_error(CapgateError(code, "x"), as_json=False)


def test_capsolver_statuses() -> None:
    import json

    queued = json.loads(capsolver.render_result(task(TaskStatus.QUEUED)))
    assert queued["status"] == "idle" and queued["errorId"] == 0
    running = json.loads(capsolver.render_result(task(TaskStatus.RUNNING)))
    assert running["status"] == "processing"
    ready = json.loads(capsolver.render_result(READY))
    # docs.capsolver.com, Cloudflare Turnstile: the solution names its type.
    assert ready["status"] == "ready"
    assert ready["solution"] == {"token": "tok", "type": "turnstile"}
    failed = json.loads(capsolver.render_result(FAILED))
    assert (failed["errorId"], failed["errorCode"]) == (1, "ERROR_CAPTCHA_UNSOLVABLE")
    assert ids.parse_id(ready["taskId"]) == 42
    report = capsolver.parse_report(
        b'{"clientKey":"k","taskId":"' + ready["taskId"].encode() + b'","result":{"invalid":true}}',
        None,
    )
    assert (report.task_id, report.correct) == (42, False)


def test_anysolver_shapes_follow_seed_004() -> None:
    import json

    ready = json.loads(anysolver.render_result(READY))
    assert ready == {
        "status": "ready",
        "taskId": ids.to_ulid(42, T0),
        "errorId": 0,
        "taskType": "AntiTurnstileTaskProxyLess",
        "provider": "testkeys",
        "solution": {"token": "tok"},
        "cost": 0.0013,
    }
    failed = json.loads(anysolver.render_result(FAILED))
    assert failed["solution"] is None and failed["errorCode"] == "CAPTCHA_UNSOLVABLE"
    internal = json.loads(anysolver.render_error(CapgateError(ErrorCode.INTERNAL, "x")))
    assert internal["errorId"] == 2
    for _, code in anysolver.ERRORS.values():
        assert not code.startswith("ERROR_")


def test_vast_failed_has_the_nested_error() -> None:
    import json

    failed = json.loads(vast.render_result(FAILED))
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "errorId": 1,
        "errorCode": "ERROR_CAPTCHA_UNSOLVABLE",
        "errorDescription": "no luck",
    }
    v3 = task(TaskStatus.READY, TaskType.RECAPTCHA_V3, solution=Solution(token="t", score=0.9))
    assert vast.render_solution(v3) == {"gRecaptchaResponse": "t", "score": 0.9}


def test_ucaptcha_statuses_and_errors() -> None:
    assert ucaptcha.render_result(task(TaskStatus.QUEUED)) == (200, b'{"status":"QUEUED"}')
    assert ucaptcha.render_result(task(TaskStatus.RUNNING)) == (200, b'{"status":"RUNNING"}')
    assert ucaptcha.render_result(READY) == (200, b'{"status":"SUCCESS","result":{"token":"tok"}}')
    assert ucaptcha.render_result(FAILED) == (200, b'{"status":"FAILED","error":"no luck"}')
    not_found = CapgateError(ErrorCode.TASK_NOT_FOUND, "x")
    assert ucaptcha.render_error(not_found) == (404, b'{"status":"NOT_FOUND"}')
    assert ucaptcha.render_error(CapgateError(ErrorCode.KEY_DOES_NOT_EXIST, "x"))[0] == 401
    assert ucaptcha.render_error(CapgateError(ErrorCode.ZERO_BALANCE, "x"))[0] == 402
    assert ucaptcha.render_error(CapgateError(ErrorCode.POLL_LIMIT_EXCEEDED, "x"))[0] == 429
    assert ucaptcha.client_key([(b"x-api-key", b"abc")], b"token=def") == "abc"
    assert ucaptcha.client_key([], b"token=def") == "def"
    with pytest.raises(CapgateError):
        ucaptcha.client_key([], b"")
    spec = ucaptcha.parse_submit(b'{"type":"turnstile","sitekey":"k","url":"https://x"}')
    assert spec.type is TaskType.TURNSTILE
    assert (spec.params["websiteKey"], spec.params["websiteURL"]) == ("k", "https://x")


def test_legacy_forms() -> None:
    boundary = b"XyZ"
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="key"\r\n\r\nabc\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="method"\r\n\r\npost\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="c.png"\r\n'
        b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\x00\x01\r\n--XyZ--\r\n"
    )
    form = twocaptcha_legacy.parse_form(b"multipart/form-data; boundary=" + boundary, b"", body)
    assert form["key"] == "abc" and form["method"] == "post"
    assert form["file"] == b"\x89PNG\r\n\x1a\n\x00\x01"
    key, spec, as_json = twocaptcha_legacy.parse_in(form)
    assert (key, spec.type, spec.body, as_json) == (
        "abc",
        TaskType.IMAGE_TO_TEXT,
        form["file"],
        False,
    )
    form = twocaptcha_legacy.parse_form(
        None, b"key=k&method=userrecaptcha&json=1", b"googlekey=g&pageurl=p&version=v3"
    )
    key, spec, as_json = twocaptcha_legacy.parse_in(form)
    assert (spec.type, as_json) == (TaskType.RECAPTCHA_V3, True)
    res = twocaptcha_legacy.parse_res(
        twocaptcha_legacy.parse_form(None, b"key=k&action=get&ids=1,2", b"")
    )
    assert (res.action, res.task_ids) == ("get", [1, 2])
    with pytest.raises(CapgateError):
        twocaptcha_legacy.parse_res({"key": "k", "action": "explode"})


def test_legacy_answers() -> None:
    image = task(TaskStatus.READY, TaskType.IMAGE_TO_TEXT, solution=Solution(text="AB12"))
    assert twocaptcha_legacy.render_in(image, False) == b"OK|42"
    assert twocaptcha_legacy.render_res_task(image, False, False) == b"OK|AB12"
    assert twocaptcha_legacy.render_res_task(image, True, True) == (
        b'{"status":1,"request":"AB12","price":"0.00130"}'
    )
    waiting = task(TaskStatus.QUEUED)
    assert twocaptcha_legacy.render_res_task(waiting, False, False) == b"CAPCHA_NOT_READY"
    assert twocaptcha_legacy.render_res_many([image, None, waiting], False) == (
        b"AB12|ERROR_WRONG_CAPTCHA_ID|CAPCHA_NOT_READY"
    )
    key = Key(1, "k", b"", 9_999_000, 0, 0.0)
    assert twocaptcha_legacy.render_balance(key, False) == b"9.999"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("fe80::1", False),
        ("224.0.0.1", False),
    ],
)
def test_callbacks_refuse_non_public_addresses_unless_allowed(address: str, allowed: bool) -> None:
    import ipaddress

    from capgate.callbacks import address_allowed

    assert address_allowed(address, []) is allowed
    assert address_allowed(
        address, [ipaddress.ip_network("::/0"), ipaddress.ip_network("0.0.0.0/0")]
    )
