"""CapSolver's dialect against seed 002 and docs.capsolver.com (createTask, getBalance,
feedbackTask, the error list)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from capgate.dialects import capsolver, ids
from capgate.dialects.base import ImageGroups, JsonDialect, StatsDialect
from capgate.model import CapgateError, ErrorCode, Key, Solution, Task, TaskStatus, TaskType
from tests.support import make_task, seed_document

T0 = 1_769_171_553.352

# docs.capsolver.com/guide/api-error: every errorCode CapSolver documents.
DOCUMENTED_CODES = {
    "ERROR_SERVICE_UNAVALIABLE",
    "ERROR_RATE_LIMIT",
    "ERROR_INVALID_TASK_DATA",
    "ERROR_BAD_REQUEST",
    "ERROR_TASKID_INVALID",
    "ERROR_TASK_TIMEOUT",
    "ERROR_SETTLEMENT_FAILED",
    "ERROR_KEY_DENIED_ACCESS",
    "ERROR_ZERO_BALANCE",
    "ERROR_TASK_NOT_SUPPORTED",
    "ERROR_CAPTCHA_UNSOLVABLE",
    "ERROR_UNKNOWN_QUESTION",
    "ERROR_PROXY_BANNED",
    "ERROR_IP_BANNED",
    "ERROR_KEY_TEMP_BLOCKED",
}


def make(status: TaskStatus, task_type: TaskType = TaskType.RECAPTCHA_V2, **kw: Any) -> Task:
    return make_task(
        status,
        task_type,
        **{
            "created_at": T0,
            "expires_at": T0 + 300,
            "params": {"vendorType": "ReCaptchaV2TaskProxyLess"},
            **kw,
        },
    )


def decode(raw: bytes) -> Any:
    return json.loads(raw)


def uuid_of(task: Task) -> str:
    return ids.to_uuid(task.id, task.created_at)


# --- seed 002: getTaskResult ------------------------------------------------------------


SEED_READY: dict[str, Any] = {
    "errorId": 0,
    "solution": {
        "userAgent": "xxx",
        "gRecaptchaResponse": "03AGdBq25SxXT-pmSeBXjzScW-EiocHwwpwqtk1QXlJnGnUJCZrgjwLLdt7cb0...",
    },
    "status": "ready",
}


def test_the_seed_document_holds_the_examples_replayed_here() -> None:
    seed = seed_document("002")
    text = seed.read_text()
    assert SEED_READY["solution"]["gRecaptchaResponse"] in text
    for status in ("idle", "processing", "ready"):
        assert status in text


def test_ready_matches_seed_002() -> None:
    token = SEED_READY["solution"]["gRecaptchaResponse"]
    done = make(TaskStatus.READY, solution=Solution(token=token, user_agent="xxx"))
    answer = decode(capsolver.render_result(done))
    # Every key and value of the seed's example, plus the empty error fields and the
    # task id CapSolver's own answers carry (docs: createTask / zh getTaskResult example).
    assert {k: answer[k] for k in SEED_READY} == SEED_READY
    extra = {k: v for k, v in answer.items() if k not in SEED_READY}
    assert extra == {"errorCode": "", "errorDescription": "", "taskId": uuid_of(done)}


@pytest.mark.parametrize(
    ("status", "word"), [(TaskStatus.QUEUED, "idle"), (TaskStatus.RUNNING, "processing")]
)
def test_waiting_statuses_follow_seed_002(status: TaskStatus, word: str) -> None:
    task = make(status)
    expected = {
        "errorId": 0,
        "errorCode": "",
        "errorDescription": "",
        "status": word,
        "taskId": uuid_of(task),
    }
    assert decode(capsolver.render_result(task)) == expected
    assert "solution" not in expected


def test_failed_task_is_errorid_1_with_its_code() -> None:
    failed = make(
        TaskStatus.FAILED,
        error_code=ErrorCode.CAPTCHA_UNSOLVABLE,
        error_description="Captcha not recognized",
    )
    assert decode(capsolver.render_result(failed)) == {
        "errorId": 1,
        "errorCode": "ERROR_CAPTCHA_UNSOLVABLE",
        "errorDescription": "Captcha not recognized",
        "taskId": uuid_of(failed),
    }
    timed_out = make(TaskStatus.FAILED, error_code=ErrorCode.TASK_TIMEOUT)
    answer = decode(capsolver.render_result(timed_out))
    assert answer["errorCode"] == "ERROR_TASK_TIMEOUT"
    assert answer["errorDescription"]  # never empty (CLIENTS.md rule 2)
    assert "status" not in answer
    unknown = decode(capsolver.render_result(make(TaskStatus.FAILED)))
    assert unknown["errorCode"] == "ERROR_CAPTCHA_UNSOLVABLE"


def test_result_stays_readable_after_ready() -> None:
    done = make(TaskStatus.READY, solution=Solution(token="t"))
    assert capsolver.render_result(done) == capsolver.render_result(done)


# --- createTask (docs.capsolver.com/guide/api-createtask) ------------------------------


def test_sync_image_answer_matches_the_docs() -> None:
    image = make(
        TaskStatus.READY,
        TaskType.IMAGE_TO_TEXT,
        params={"vendorType": "ImageToTextTask"},
        solution=Solution(text="44795sds", confidence=0.93),
    )
    assert decode(capsolver.render_created(image)) == {
        "errorId": 0,
        "errorCode": "",
        "errorDescription": "",
        "status": "ready",
        "solution": {"text": "44795sds"},
        "taskId": uuid_of(image),
    }
    assert {TaskType.IMAGE_TO_TEXT} == capsolver.SYNC_TYPES


def test_async_token_answer_has_the_id_and_a_status() -> None:
    queued = make(TaskStatus.QUEUED)
    answer = decode(capsolver.render_created(queued))
    # The docs' async example (errorId, errorCode, errorDescription, taskId) plus the
    # status the capsolver SDK reads from every createTask answer.
    assert answer == {
        "errorId": 0,
        "errorCode": "",
        "errorDescription": "",
        "status": "idle",
        "taskId": uuid_of(queued),
    }


def test_a_failed_sync_task_answers_createtask_with_the_error() -> None:
    failed = make(
        TaskStatus.FAILED,
        TaskType.IMAGE_TO_TEXT,
        error_code=ErrorCode.CAPTCHA_UNSOLVABLE,
        error_description="no text",
    )
    answer = decode(capsolver.render_created(failed))
    assert (answer["errorId"], answer["errorCode"]) == (1, "ERROR_CAPTCHA_UNSOLVABLE")


def test_the_id_createtask_gives_is_read_back() -> None:
    for task_id in (1, 42, 74372499131, 2**62 - 1):
        task = make(TaskStatus.QUEUED, id=task_id)
        given = decode(capsolver.render_created(task))["taskId"]
        assert re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", given
        )
        body = json.dumps({"clientKey": "k", "taskId": given}).encode()
        assert capsolver.parse_result(body) == ("k", task_id)


@pytest.mark.parametrize("value", [42, "42", " 42 ", ids.to_ulid(42, T0), ids.to_uuid(42, T0)])
def test_task_ids_in_every_form(value: object) -> None:
    body = json.dumps({"clientKey": "k", "taskId": value}).encode()
    assert capsolver.parse_result(body) == ("k", 42)


def test_seed_request_example_parses() -> None:
    body = b'{"clientKey":"YOUR_API_KEY","taskId": "37223a89-06ed-442c-a0b8-22067b79c5b4"}'
    key, task_id = capsolver.parse_result(body)
    assert key == "YOUR_API_KEY"
    assert task_id == ids.parse_id("37223a89-06ed-442c-a0b8-22067b79c5b4")


@pytest.mark.parametrize("value", [None, "", "nope", True, 0, -1, [], {}])
def test_bad_task_ids_are_not_found(value: object) -> None:
    body = json.dumps({"clientKey": "k", "taskId": value}).encode()
    with pytest.raises(CapgateError) as caught:
        capsolver.parse_result(body)
    assert caught.value.code is ErrorCode.TASK_NOT_FOUND


def test_junk_in_a_result_request_is_ignored() -> None:
    body = b'{"clientKey":"k","taskId":"7","errorId":0,"errorCode":"","errorDescription":null}'
    assert capsolver.parse_result(body) == ("k", 7)


def test_docs_create_request_parses_with_appid_and_empty_callback() -> None:
    body = (
        b'{"clientKey":"YOUR_API_KEY","appId":"APP_ID","callbackUrl":"",'
        b'"task":{"type":"ImageToTextTask","body":"aGVsbG8=","module":"common",'
        b'"score":0.8,"case":true,"websiteURL":null,"comment":""}}'
    )
    create = capsolver.parse_create(body)
    assert create.client_key == "YOUR_API_KEY"
    spec = capsolver.parse_task(create.task)
    assert spec.type is TaskType.IMAGE_TO_TEXT
    assert spec.body == b"hello"
    # CapSolver's image options stay in params, and the top-level appId goes with the
    # task (its softId: getSpendingStats filters by it); junk (null, "") is dropped.
    assert spec.params == {
        "module": "common",
        "score": 0.8,
        "case": True,
        "appId": "APP_ID",
        "vendorType": "ImageToTextTask",
    }


@pytest.mark.parametrize(
    ("name", "task_type"),
    [
        ("ReCaptchaV2TaskProxyLess", TaskType.RECAPTCHA_V2),
        ("ReCaptchaV2Task", TaskType.RECAPTCHA_V2),
        ("ReCaptchaV2EnterpriseTaskProxyLess", TaskType.RECAPTCHA_V2_ENTERPRISE),
        ("ReCaptchaV3TaskProxyLess", TaskType.RECAPTCHA_V3),
        ("ReCaptchaV3EnterpriseTaskProxyLess", TaskType.RECAPTCHA_V3),
        ("AntiTurnstileTaskProxyLess", TaskType.TURNSTILE),
        ("GeeTestTaskProxyLess", TaskType.GEETEST),
    ],
)
def test_capsolver_type_names_map(name: str, task_type: TaskType) -> None:
    spec = capsolver.parse_task({"type": name, "websiteURL": "https://x/", "websiteKey": "k"})
    assert spec.type is task_type
    assert spec.params["vendorType"] == name


def test_unknown_type_is_not_supported() -> None:
    with pytest.raises(CapgateError) as caught:
        capsolver.parse_task({"type": "DataDomeSliderTask", "websiteURL": "u"})
    assert caught.value.code is ErrorCode.TASK_NOT_SUPPORTED
    assert decode(capsolver.render_error(caught.value))["errorCode"] == "ERROR_TASK_NOT_SUPPORTED"


# --- getBalance, feedbackTask -----------------------------------------------------------


def test_balance_matches_the_docs() -> None:
    key = Key(1, "k", b"", 9_999_000, 1000, 0.0)
    assert capsolver.render_balance(key) == b'{"errorId":0,"balance":9.999,"packages":[]}'
    assert capsolver.parse_balance(b'{"clientKey":"k"}') == "k"


@pytest.mark.parametrize(("invalid", "correct"), [(True, False), (False, True)])
def test_feedback_verdict_comes_from_the_body(invalid: bool, correct: bool) -> None:
    task = make(TaskStatus.READY)
    body = json.dumps(
        {
            "clientKey": "YOUR_API_KEY",
            "appId": "APP_ID",
            "taskId": uuid_of(task),
            "result": {"invalid": invalid, "code": 1001, "message": "invalid token"},
        }
    ).encode()
    assert capsolver.REPORT_PATHS == {"feedbackTask": None}
    report = capsolver.parse_report(body, capsolver.REPORT_PATHS["feedbackTask"])
    assert (report.client_key, report.task_id, report.correct) == ("YOUR_API_KEY", 42, correct)


@pytest.mark.parametrize("result", [None, {}, {"invalid": "yes"}, "invalid", {"invalid": None}])
def test_feedback_without_a_verdict_is_a_bad_request(result: object) -> None:
    body = json.dumps({"clientKey": "k", "taskId": "42", "result": result}).encode()
    with pytest.raises(CapgateError) as caught:
        capsolver.parse_report(body, None)
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert decode(capsolver.render_error(caught.value))["errorCode"] == "ERROR_INVALID_TASK_DATA"


def test_feedback_answer_matches_the_docs() -> None:
    answer = decode(capsolver.render_reported(make(TaskStatus.READY)))
    assert answer == {"errorId": 0, "errorCode": "", "errorDescription": "", "message": "ok"}


# --- errors -----------------------------------------------------------------------------


def test_every_error_code_has_a_documented_capsolver_code() -> None:
    for code in ErrorCode:
        assert capsolver.ERRORS[code] in DOCUMENTED_CODES
        answer = decode(capsolver.render_error(CapgateError(code, "why")))
        assert answer == {
            "errorId": 1,
            "errorCode": capsolver.ERRORS[code],
            "errorDescription": "why",
        }


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (ErrorCode.KEY_DOES_NOT_EXIST, "ERROR_KEY_DENIED_ACCESS"),
        (ErrorCode.ZERO_BALANCE, "ERROR_ZERO_BALANCE"),
        (ErrorCode.TASK_NOT_FOUND, "ERROR_TASKID_INVALID"),
        (ErrorCode.POLL_LIMIT_EXCEEDED, "ERROR_TASKID_INVALID"),
        (ErrorCode.TASK_NOT_SUPPORTED, "ERROR_TASK_NOT_SUPPORTED"),
        (ErrorCode.BAD_REQUEST, "ERROR_INVALID_TASK_DATA"),
        (ErrorCode.CAPTCHA_UNSOLVABLE, "ERROR_CAPTCHA_UNSOLVABLE"),
        (ErrorCode.TASK_TIMEOUT, "ERROR_TASK_TIMEOUT"),
        (ErrorCode.INTERNAL, "ERROR_SERVICE_UNAVALIABLE"),
    ],
)
def test_the_main_codes(code: ErrorCode, name: str) -> None:
    assert capsolver.ERRORS[code] == name


def test_an_empty_description_is_filled_in() -> None:
    answer = decode(capsolver.render_error(CapgateError(ErrorCode.INTERNAL, "")))
    assert answer["errorDescription"]


def test_bad_bodies_are_bad_requests() -> None:
    for body in (b"", b"{", b"[1]", b'"x"'):
        with pytest.raises(CapgateError) as caught:
            capsolver.parse_result(body)
        assert caught.value.code is ErrorCode.BAD_REQUEST
    with pytest.raises(CapgateError) as caught:
        capsolver.parse_balance(b'{"clientKey":null}')
    assert caught.value.code is ErrorCode.KEY_DOES_NOT_EXIST


def test_retention_is_five_minutes() -> None:
    assert capsolver.RETENTION_SECONDS == 300.0


def _typecheck() -> None:
    dialect: JsonDialect = capsolver
    del dialect


# --- ImageToText's images, and the solution fields per type ---------------------------


def test_one_image_in_images_is_a_plain_task() -> None:
    task = {"type": "ImageToTextTask", "module": "number", "websiteURL": "https://x/"}
    (spec,) = capsolver.parse_tasks({**task, "images": ["aGVsbG8="]})
    assert spec.body == b"hello"
    assert spec.params == {
        "module": "number",
        "websiteURL": "https://x/",
        "vendorType": "ImageToTextTask",
    }
    assert capsolver.parse_task({**task, "images": ["aGVsbG8="]}) == spec


def test_several_images_are_a_task_each_and_answered_as_a_list() -> None:
    # docs.capsolver.com ImageToTextTask: images, "up to 9", answered as solution.answers.
    specs = capsolver.parse_tasks({"type": "ImageToTextTask", "images": ["aGVsbG8=", "aGk="]})
    assert [s.body for s in specs] == [b"hello", b"hi"]
    first = capsolver.grouped(specs[0], [8])
    assert first.params[capsolver.GROUP_PARAM] == [8]
    lead = make(
        TaskStatus.READY,
        TaskType.IMAGE_TO_TEXT,
        id=9,
        params=first.params,
        solution=Solution(text="12"),
    )
    other = make(TaskStatus.READY, TaskType.IMAGE_TO_TEXT, id=8, solution=Solution(text="34"))
    assert capsolver.group_of(lead) == [8] and capsolver.group_of(other) == []
    answer = decode(capsolver.render_group(lead, [other]))
    assert answer["status"] == "ready" and answer["taskId"] == uuid_of(lead)
    assert answer["solution"] == {"text": "12", "answers": ["12", "34"]}
    waiting = decode(capsolver.render_group(lead, [make(TaskStatus.RUNNING, id=8)]))
    assert (waiting["status"], "solution" in waiting) == ("processing", False)
    queued = make(TaskStatus.QUEUED, TaskType.IMAGE_TO_TEXT, id=9)
    assert decode(capsolver.render_group(queued, [make(TaskStatus.QUEUED, id=8)]))["status"] == (
        "idle"
    )
    failed = make(TaskStatus.FAILED, id=8, error_code=ErrorCode.CAPTCHA_UNSOLVABLE)
    broken = decode(capsolver.render_group(lead, [failed]))
    assert (broken["errorId"], broken["taskId"]) == (1, uuid_of(lead))


@pytest.mark.parametrize(
    "images",
    [["aGVsbG8="] * 10, "aGVsbG8=", [1, 2], ["aGVsbG8=", ""], [{"x": 1}]],
)
def test_bad_images_are_refused(images: object) -> None:
    with pytest.raises(CapgateError) as caught:
        capsolver.parse_tasks({"type": "ImageToTextTask", "images": images})
    assert caught.value.code is ErrorCode.BAD_REQUEST


def test_images_and_body_together_or_for_a_token_task_are_refused() -> None:
    with pytest.raises(CapgateError):
        capsolver.parse_tasks({"type": "ImageToTextTask", "body": "aGk=", "images": ["aGk="]})
    turnstile = {"type": "AntiTurnstileTaskProxyLess", "websiteURL": "https://x/"}
    with pytest.raises(CapgateError):
        capsolver.parse_tasks({**turnstile, "websiteKey": "k", "images": ["aGk=", "aGk="]})


@pytest.mark.parametrize(
    ("task_type", "expected"),
    [
        (TaskType.RECAPTCHA_V2, {"gRecaptchaResponse": "t", "userAgent": "UA"}),
        (TaskType.RECAPTCHA_V3, {"gRecaptchaResponse": "t", "userAgent": "UA"}),
        (TaskType.HCAPTCHA, {"gRecaptchaResponse": "t", "token": "t", "userAgent": "UA"}),
        # docs.capsolver.com, Cloudflare Turnstile: token, type and userAgent.
        (TaskType.TURNSTILE, {"token": "t", "type": "turnstile", "userAgent": "UA"}),
    ],
)
def test_token_solution_fields(task_type: TaskType, expected: dict[str, str]) -> None:
    done = make(TaskStatus.READY, task_type, solution=Solution(token="t", user_agent="UA"))
    assert capsolver.render_solution(done) == expected


def test_capsolver_answers_image_groups() -> None:
    groups: ImageGroups = capsolver  # checked by mypy: the module has every function
    assert isinstance(groups, ImageGroups)
    assert not isinstance(capsolver, StatsDialect)
