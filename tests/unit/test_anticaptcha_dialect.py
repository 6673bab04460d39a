"""The root dialect's pure functions against the seed's documented shapes."""

from __future__ import annotations

from typing import Any

import pytest

from capgate.dialects import anticaptcha
from capgate.dialects.base import ImageGroups, StatsDialect
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
        # 2Captcha documents both names for reCAPTCHA; Anti-Captcha and CapMonster the first.
        (TaskType.RECAPTCHA_V2, {"gRecaptchaResponse": "t", "token": "t"}),
        (TaskType.RECAPTCHA_V3, {"gRecaptchaResponse": "t", "token": "t"}),
        (TaskType.RECAPTCHA_V2_ENTERPRISE, {"gRecaptchaResponse": "t", "token": "t"}),
        # hCaptcha: all three vendors show respKey (empty when the solver gave none).
        (TaskType.HCAPTCHA, {"gRecaptchaResponse": "t", "token": "t", "respKey": ""}),
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


def test_capmonster_token_report_and_anti_captchas_correct_report() -> None:
    # docs.capmonster.cloud: reportIncorrectTokenCaptcha, with the two older names as aliases.
    paths = anticaptcha.REPORT_PATHS
    assert paths["reportIncorrectTokenCaptcha"] is False
    assert paths["reportIncorrectRecaptcha"] is False and paths["reportIncorrectHcaptcha"] is False
    assert paths["reportCorrectRecaptcha"] is True
    report = anticaptcha.parse_report(b'{"clientKey":"k","taskId":"7"}', True)
    assert (report.task_id, report.correct) == (7, True)


def test_soft_id_and_app_id_go_with_the_task_and_junk_is_ignored() -> None:
    request = anticaptcha.parse_create(
        b'{"clientKey":"k","softId":30,"appId":"A-1","task":{"type":"ImageToTextTask"}}'
    )
    assert (request.task["softId"], request.task["appId"]) == (30, "A-1")
    junk = anticaptcha.parse_create(
        b'{"clientKey":"k","softId":{"x":1},"appId":null,"task":{"type":"ImageToTextTask"}}'
    )
    assert "softId" not in junk.task and "appId" not in junk.task
    inside = anticaptcha.parse_create(
        b'{"clientKey":"k","softId":1,"task":{"type":"ImageToTextTask","softId":2}}'
    )
    assert inside.task["softId"] == 2  # the task's own field wins


def test_hcaptcha_and_user_agent_fields() -> None:
    done = task(
        TaskStatus.READY, TaskType.HCAPTCHA, solution=Solution(token="P1_x", user_agent="UA")
    )
    assert anticaptcha.render_solution(done) == {
        "gRecaptchaResponse": "P1_x",
        "token": "P1_x",
        "respKey": "",
        "userAgent": "UA",
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"queueId":6}', TaskType.RECAPTCHA_V2),
        (b'{"queueId":"1","clientKey":"k"}', TaskType.IMAGE_TO_TEXT),
        (b'{"queueId":27}', TaskType.TURNSTILE),
        (b'{"queueId":20}', TaskType.RECAPTCHA_V3),
        (b'{"queueId":29}', TaskType.HCAPTCHA),
        (b'{"queueId":25,"templateName":"x"}', None),
    ],
)
def test_queue_ids_from_the_docs(body: bytes, expected: TaskType | None) -> None:
    assert anticaptcha.parse_queue_stats(body) is expected


@pytest.mark.parametrize("body", [b"{}", b'{"queueId":3}', b'{"queueId":true}', b'{"queueId":"x"}'])
def test_unknown_queues_are_bad_requests(body: bytes) -> None:
    with pytest.raises(CapgateError) as caught:
        anticaptcha.parse_queue_stats(body)
    assert caught.value.code is ErrorCode.BAD_REQUEST


def test_queue_stats_answer_shape() -> None:
    from capgate.service import QueueStats

    raw = anticaptcha.render_queue_stats(QueueStats(3, 12.5, 1000, 1.25, 4))
    # The documented fields (bid as a string, as the docs' example has it) after errorId.
    assert raw == (b'{"errorId":0,"waiting":3,"load":12.5,"bid":"0.001000","speed":1.25,"total":4}')


def test_spending_stats_request_and_answer() -> None:
    from capgate.service import SpendingRecord

    query = anticaptcha.parse_spending_stats(
        b'{"clientKey":"k","date":1672185600,"queue":"Recaptcha Proxyless","softId":30,'
        b'"ip":"1.2.3.4"}'
    )
    assert query.client_key == "k" and query.start == 1672185600.0
    assert query.types == frozenset({TaskType.RECAPTCHA_V2})
    assert (query.soft_id, query.ip) == ("30", "1.2.3.4")
    bare = anticaptcha.parse_spending_stats(b'{"clientKey":"k","date":null,"queue":""}')
    assert (bare.start, bare.types, bare.soft_id, bare.ip) == (None, None, None, None)
    for name, task_type in [
        ("English ImageToText", TaskType.IMAGE_TO_TEXT),
        ("Russian ImageToText", TaskType.IMAGE_TO_TEXT),
        ("Recaptcha V3 s0.9", TaskType.RECAPTCHA_V3),
        ("Recaptcha Enterprise V2 Proxyless", TaskType.RECAPTCHA_V2_ENTERPRISE),
        ("hCaptcha Proxy-On", TaskType.HCAPTCHA),
        ("Turnstile", TaskType.TURNSTILE),
        ("TurnstileTaskProxyless", TaskType.TURNSTILE),
    ]:
        body = b'{"clientKey":"k","queue":"' + name.encode() + b'"}'
        assert anticaptcha.parse_spending_stats(body).types == frozenset({task_type})
    for bad in (b'"queue":"Nonsense"', b'"date":"yesterday"', b'"date":-5'):
        with pytest.raises(CapgateError) as caught:
            anticaptcha.parse_spending_stats(b'{"clientKey":"k",' + bad + b"}")
        assert caught.value.code is ErrorCode.BAD_REQUEST
    raw = anticaptcha.render_spending_stats([SpendingRecord(1550533500, 1550537099, 1899, 7495948)])
    assert raw == (
        b'{"errorId":0,"data":[{"dateFrom":1550533500,"dateTill":1550537099,'
        b'"volume":1899,"money":7.495948}]}'
    )


def test_the_family_serves_the_statistics_methods() -> None:
    stats: StatsDialect = anticaptcha  # checked by mypy: the module has every function
    assert isinstance(stats, StatsDialect)
    assert not isinstance(anticaptcha, ImageGroups)
