"""The root dialect's pure functions against the seed's documented shapes."""

from __future__ import annotations

from typing import Any

import pytest

from capgate.dialects import anticaptcha
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


def task(status: TaskStatus, task_type: TaskType = TaskType.IMAGE_TO_TEXT, **kw: Any) -> Task:
    return make_task(
        status,
        task_type,
        **{
            "id": 74372499131,
            "created_at": 1692863536.4,
            "cost": 2990,
            "ip": "1.2.3.4",
            "finished_at": 1692863556.9,
            **kw,
        },
    )


def test_ready_matches_seed_001() -> None:
    done = task(TaskStatus.READY, solution=Solution(text="W68HP", confidence=0.9))
    assert anticaptcha.render_result(done) == (
        b'{"errorId":0,"status":"ready","solution":{"text":"W68HP"},"cost":"0.00299",'
        b'"ip":"1.2.3.4","createTime":1692863536,"endTime":1692863556,"solveCount":1}'
    )


@pytest.mark.parametrize("status", [TaskStatus.QUEUED, TaskStatus.RUNNING])
def test_waiting_is_processing(status: TaskStatus) -> None:
    assert anticaptcha.render_result(task(status)) == b'{"errorId":0,"status":"processing"}'


def test_failed_matches_seed_001() -> None:
    failed = task(
        TaskStatus.FAILED,
        error_code=ErrorCode.CAPTCHA_UNSOLVABLE,
        error_description="Workers could not solve the Captcha",
    )
    assert anticaptcha.render_result(failed) == (
        b'{"errorId":12,"errorCode":"ERROR_CAPTCHA_UNSOLVABLE",'
        b'"errorDescription":"Workers could not solve the Captcha"}'
    )


@pytest.mark.parametrize(
    ("task_type", "expected"),
    [
        (TaskType.RECAPTCHA_V2, {"gRecaptchaResponse": "t"}),
        (TaskType.RECAPTCHA_V3, {"gRecaptchaResponse": "t"}),
        (TaskType.HCAPTCHA, {"gRecaptchaResponse": "t", "token": "t"}),
        (TaskType.TURNSTILE, {"token": "t"}),
    ],
)
def test_token_solution_fields(task_type: TaskType, expected: dict[str, str]) -> None:
    done = task(TaskStatus.READY, task_type, solution=Solution(token="t"))
    assert anticaptcha.render_solution(done) == expected
    with_agent = task(TaskStatus.READY, task_type, solution=Solution(token="t", user_agent="UA"))
    assert anticaptcha.render_solution(with_agent) == {**expected, "userAgent": "UA"}


def test_every_error_code_has_a_mapping_and_never_errorid_11() -> None:
    for code in ErrorCode:
        error_id, name = anticaptcha.ERRORS[code]
        assert error_id > 0 and error_id != 11
        assert name.startswith("ERROR_")


@pytest.mark.parametrize("value", [5, "5", " 5 "])
def test_task_id_int_or_numeric_string(value: object) -> None:
    assert anticaptcha.parse_task_id(value) == 5


@pytest.mark.parametrize("value", [None, True, "x", 1.0, -3, 0, 2**63, "", []])
def test_bad_task_ids(value: object) -> None:
    with pytest.raises(CapgateError) as caught:
        anticaptcha.parse_task_id(value)
    assert caught.value.code is ErrorCode.TASK_NOT_FOUND


@pytest.mark.parametrize(
    "name",
    [
        "NoCaptchaTaskProxyless",
        "NoCaptchaTaskProxyLess",
        "RecaptchaV2TaskProxyless",
        "RecaptchaV2Task",
        "recaptchav2taskproxyless",
        "ReCaptchaV2TokenProxyLess",
    ],
)
def test_aliases_map_to_one_type(name: str) -> None:
    spec = anticaptcha.parse_task({"type": name, "websiteURL": "u", "websiteKey": "k"})
    assert spec.type is TaskType.RECAPTCHA_V2
    assert spec.params["vendorType"] == name


def test_junk_optional_fields_are_dropped() -> None:
    spec = anticaptcha.parse_task(
        {"type": "ImageToTextTask", "body": "aGVsbG8=", "phrase": None, "comment": "", "case": True}
    )
    assert spec.body == b"hello"
    assert spec.params == {"case": True, "vendorType": "ImageToTextTask"}


def test_language_pool_at_top_level_moves_into_the_task() -> None:
    request = anticaptcha.parse_create(
        b'{"clientKey":"k","task":{"type":"ImageToTextTask"},"languagePool":"rn"}'
    )
    assert request.task["languagePool"] == "rn"


def test_data_uri_bodies_are_accepted() -> None:
    assert anticaptcha.decode_image("data:image/png;base64,aGVsbG8=") == b"hello"
    assert anticaptcha.decode_image("aGVs\nbG8=") == b"hello"


def test_balance() -> None:
    key = Key(1, "k", b"", 9_999_000, 1000, 0.0)
    assert anticaptcha.render_balance(key) == b'{"errorId":0,"balance":9.999}'
