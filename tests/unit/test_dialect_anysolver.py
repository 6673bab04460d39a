"""AnySolver's dialect against seed 004 and anysolver.com/docs (createTask, error handling)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from capgate.dialects import anysolver, ids
from capgate.dialects.base import JsonDialect
from capgate.model import CapgateError, ErrorCode, Key, Solution, Task, TaskStatus, TaskType
from tests.support import make_task, seed_document

T0 = 1_769_171_553.352
SEED_ID = "01KFNDF328KAN2AJ3BNHCQYE88"
ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")

# Seed 004's three answers, as printed (minified). Their taskId is AnySolver's own; ours
# carries capgate's id in the same ULID form, so the tests substitute it.
SEED_PROCESSING = (
    b'{"status":"processing","taskId":"01KFNDF328KAN2AJ3BNHCQYE88","errorId":0,'
    b'"taskType":"ReCaptchaV2TokenProxyLess","provider":"Multibot","solution":null}'
)
SEED_READY = (
    b'{"status":"ready","taskId":"01KFNDF328KAN2AJ3BNHCQYE88","errorId":0,"cost":0.00013,'
    b'"taskType":"ReCaptchaV2TokenProxyLess","provider":"Multibot",'
    b'"solution":{"token":"03AGdBq24PBCbwiDRaS_MJ7Z..."}}'
)
SEED_FAILED = (
    b'{"status":"failed","taskId":"01KFNDF328KAN2AJ3BNHCQYE88","errorId":1,'
    b'"errorCode":"CAPTCHA_UNSOLVABLE","errorDescription":"The captcha could not be solved.",'
    b'"taskType":"ReCaptchaV2TokenProxyLess","provider":"Multibot","solution":null}'
)
# Seed 004's JavaScript example task.
SEED_TASK = {
    "type": "ReCaptchaV2TokenProxyLess",
    "websiteURL": "https://www.google.com/recaptcha/api2/demo",
    "websiteKey": "6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI",
    "pageTitle": "reCAPTCHA demo",
}


def make(status: TaskStatus, task_type: TaskType = TaskType.RECAPTCHA_V2, **kw: Any) -> Task:
    return make_task(
        status,
        task_type,
        **{
            "created_at": T0,
            "cost": 130,
            "params": {"vendorType": "ReCaptchaV2TokenProxyLess"},
            **kw,
        },
    )


def as_seed(rendered: bytes, task: Task) -> bytes:
    """The rendered answer with its id swapped for the seed's, for a byte comparison."""
    ours = ids.to_ulid(task.id, task.created_at).encode()
    assert rendered.count(ours) == 1
    return rendered.replace(ours, SEED_ID.encode())


def decode(raw: bytes) -> Any:
    return json.loads(raw)


def test_the_seed_document_holds_the_examples_replayed_here() -> None:
    seed = seed_document("004")
    text = "".join(seed.read_text().split())
    for example in (SEED_PROCESSING, SEED_READY, SEED_FAILED):
        assert "".join(example.decode().split()) in text


# --- seed 004: getTaskResult ------------------------------------------------------------


def test_processing_while_running_matches_seed_004() -> None:
    running = make(TaskStatus.RUNNING, solver="Multibot")
    assert as_seed(anysolver.render_result(running), running) == SEED_PROCESSING


def test_processing_while_queued_names_the_requested_provider() -> None:
    # Seed 004: "processing" means "queued or being solved"; before a solver has the
    # task, the provider is the one the client asked for.
    params = {"vendorType": "ReCaptchaV2TokenProxyLess", "provider": "Multibot"}
    queued = make(TaskStatus.QUEUED, params=params)
    assert as_seed(anysolver.render_result(queued), queued) == SEED_PROCESSING


def test_processing_without_a_provider_says_auto() -> None:
    answer = decode(anysolver.render_result(make(TaskStatus.QUEUED)))
    assert answer["provider"] == anysolver.AUTO_PROVIDER == "auto"
    assert answer["solution"] is None and "cost" not in answer and "errorCode" not in answer


def test_ready_matches_seed_004() -> None:
    done = make(
        TaskStatus.READY, solver="Multibot", solution=Solution(token="03AGdBq24PBCbwiDRaS_MJ7Z...")
    )
    assert as_seed(anysolver.render_result(done), done) == SEED_READY
    assert isinstance(decode(anysolver.render_result(done))["cost"], float)


def test_failed_matches_seed_004() -> None:
    failed = make(
        TaskStatus.FAILED,
        solver="Multibot",
        error_code=ErrorCode.CAPTCHA_UNSOLVABLE,
        error_description="The captcha could not be solved.",
    )
    assert as_seed(anysolver.render_result(failed), failed) == SEED_FAILED


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (ErrorCode.TASK_NOT_FOUND, "TASK_NOT_FOUND"),
        (ErrorCode.CAPTCHA_UNSOLVABLE, "CAPTCHA_UNSOLVABLE"),
        (ErrorCode.TASK_TIMEOUT, "TASK_TIMEOUT"),
    ],
)
def test_seed_common_errors(code: ErrorCode, name: str) -> None:
    failed = decode(anysolver.render_result(make(TaskStatus.FAILED, error_code=code)))
    assert (failed["status"], failed["errorId"], failed["errorCode"]) == ("failed", 1, name)
    assert failed["errorDescription"]  # never empty (CLIENTS.md rule 2)
    assert decode(anysolver.render_error(CapgateError(code, "x")))["errorCode"] == name


def test_every_task_answer_has_taskid_tasktype_and_provider() -> None:
    for status in TaskStatus:
        answer = decode(anysolver.render_result(make(status, solution=Solution(token="t"))))
        assert ULID.fullmatch(answer["taskId"])
        assert answer["taskType"] == "ReCaptchaV2TokenProxyLess"
        assert isinstance(answer["provider"], str) and answer["provider"]
        assert "solution" in answer
        assert answer["status"] in ("processing", "ready", "failed")


def test_tasktype_falls_back_to_the_internal_name() -> None:
    answer = decode(anysolver.render_result(make(TaskStatus.QUEUED, params={})))
    assert answer["taskType"] == TaskType.RECAPTCHA_V2.value


@pytest.mark.parametrize(
    ("task_type", "solution", "expected"),
    [
        (TaskType.TURNSTILE, Solution(token="t"), {"token": "t"}),
        (
            TaskType.HCAPTCHA,
            Solution(token="t", user_agent="UA"),
            {"token": "t", "userAgent": "UA"},
        ),
        (TaskType.RECAPTCHA_V3, Solution(token="t", score=0.9), {"token": "t"}),
        (TaskType.IMAGE_TO_TEXT, Solution(text="AB12"), {"text": "AB12"}),
    ],
)
def test_solution_fields(task_type: TaskType, solution: Solution, expected: dict[str, Any]) -> None:
    assert anysolver.render_solution(make(TaskStatus.READY, task_type, solution=solution)) == (
        expected
    )


# --- createTask, ids --------------------------------------------------------------------


def test_created_answer_matches_the_docs_and_its_id_is_read_back() -> None:
    for task_id in (1, 42, 74372499131, 2**62 - 1):
        task = make(TaskStatus.QUEUED, id=task_id)
        created = decode(anysolver.render_created(task))
        assert created == {"errorId": 0, "taskId": ids.to_ulid(task_id, T0)}
        assert ULID.fullmatch(created["taskId"])
        body = json.dumps({"clientKey": "k", "taskId": created["taskId"]}).encode()
        assert anysolver.parse_result(body) == ("k", task_id)


def test_seed_request_example_parses() -> None:
    body = b'{ "clientKey": "your-api-key-from-dashboard", "taskId": "01KFNDF328KAN2AJ3BNHCQYE88"}'
    assert anysolver.parse_result(body) == ("your-api-key-from-dashboard", ids.parse_id(SEED_ID))


@pytest.mark.parametrize("value", [42, "42", ids.to_uuid(42, T0), ids.to_ulid(42, T0).lower()])
def test_task_ids_in_every_form(value: object) -> None:
    body = json.dumps({"clientKey": "k", "taskId": value}).encode()
    assert anysolver.parse_result(body) == ("k", 42)


def test_seed_javascript_task_parses() -> None:
    create = anysolver.parse_create(json.dumps({"clientKey": "K", "task": SEED_TASK}).encode())
    spec = anysolver.parse_task(create.task)
    assert spec.type is TaskType.RECAPTCHA_V2
    assert spec.params == {
        "websiteURL": SEED_TASK["websiteURL"],
        "websiteKey": SEED_TASK["websiteKey"],
        "pageTitle": "reCAPTCHA demo",
        "vendorType": "ReCaptchaV2TokenProxyLess",
    }


def test_a_top_level_provider_is_kept_with_the_task() -> None:
    body = json.dumps(
        {"clientKey": "K", "task": SEED_TASK, "provider": "Multibot", "selectionMode": "priority"}
    ).encode()
    spec = anysolver.parse_task(anysolver.parse_create(body).task)
    assert spec.params["provider"] == "Multibot"
    for junk in (None, "", 5):
        body = json.dumps({"clientKey": "K", "task": SEED_TASK, "provider": junk}).encode()
        assert "provider" not in anysolver.parse_task(anysolver.parse_create(body).task).params


def test_the_solver_that_answered_is_the_provider() -> None:
    params = {"vendorType": "TurnstileTokenProxyLess", "provider": "Multibot"}
    done = make(TaskStatus.READY, TaskType.TURNSTILE, params=params, solver="testkeys")
    assert decode(anysolver.render_result(done))["provider"] == "testkeys"


@pytest.mark.parametrize(
    ("name", "task_type"),
    [
        ("ReCaptchaV2TokenProxyLess", TaskType.RECAPTCHA_V2),
        ("ReCaptchaV2Token", TaskType.RECAPTCHA_V2),
        ("recaptchav2tokenproxyless", TaskType.RECAPTCHA_V2),
        ("ReCaptchaV2EnterpriseTokenProxyLess", TaskType.RECAPTCHA_V2_ENTERPRISE),
        ("ReCaptchaV3TokenProxyLess", TaskType.RECAPTCHA_V3),
        ("HCaptchaTokenProxyLess", TaskType.HCAPTCHA),
        ("TurnstileTokenProxyLess", TaskType.TURNSTILE),
        ("TurnstileToken", TaskType.TURNSTILE),
    ],
)
def test_token_names_map(name: str, task_type: TaskType) -> None:
    spec = anysolver.parse_task({"type": name, "websiteURL": "https://x/", "websiteKey": "k"})
    assert spec.type is task_type
    assert spec.params["vendorType"] == name


@pytest.mark.parametrize("name", ["TextRecognition", "HumanRecognition", "ImageToTextTask"])
def test_image_tasks_take_imagebase64_or_body(name: str) -> None:
    spec = anysolver.parse_task(
        {"type": name, "imageBase64": "data:image/png;base64,aGVsbG8=", "comment": None}
    )
    assert (spec.type, spec.body) == (TaskType.IMAGE_TO_TEXT, b"hello")
    assert spec.params == {"vendorType": name}
    assert anysolver.parse_task({"type": name, "body": "aGVsbG8=", "imageBase64": ""}).body == (
        b"hello"
    )


def test_junk_optional_fields_are_dropped() -> None:
    spec = anysolver.parse_task({**SEED_TASK, "pageTitle": None, "proxy": "", "isInvisible": False})
    assert "pageTitle" not in spec.params and "proxy" not in spec.params
    assert spec.params["isInvisible"] is False


# --- getBalance, reports, errors --------------------------------------------------------


def test_balance_is_a_number() -> None:
    key = Key(1, "k", b"", 9_999_000, 1000, 0.0)
    assert anysolver.render_balance(key) == b'{"errorId":0,"balance":9.999}'


def test_no_report_endpoint() -> None:
    # AnySolver documents no report/feedback method.
    assert anysolver.REPORT_PATHS == {}


def test_every_error_code_is_mapped_without_the_prefix() -> None:
    for code in ErrorCode:
        error_id, name = anysolver.ERRORS[code]
        assert error_id in (1, 2)
        assert re.fullmatch(r"[A-Z_]+", name) and not name.startswith("ERROR_")
        answer = decode(anysolver.render_error(CapgateError(code, "why")))
        assert answer == {"errorId": error_id, "errorCode": name, "errorDescription": "why"}


def test_internal_errors_are_errorid_2() -> None:
    answer = decode(anysolver.render_error(CapgateError(ErrorCode.INTERNAL, "")))
    assert (answer["errorId"], answer["errorCode"]) == (2, "INTERNAL_ERROR")
    assert answer["errorDescription"]
    failed = make(TaskStatus.FAILED, error_code=ErrorCode.INTERNAL)
    assert decode(anysolver.render_result(failed))["errorId"] == 2


def test_request_errors() -> None:
    with pytest.raises(CapgateError) as caught:
        anysolver.parse_create(b'{"clientKey":"K"}')
    assert caught.value.code is ErrorCode.TASK_ABSENT
    with pytest.raises(CapgateError) as caught:
        anysolver.parse_task({"type": "NoSuchToken"})
    assert caught.value.code is ErrorCode.TASK_NOT_SUPPORTED
    with pytest.raises(CapgateError) as caught:
        anysolver.parse_create(b"{")
    assert caught.value.code is ErrorCode.BAD_REQUEST


def test_constants() -> None:
    assert not anysolver.SYNC_TYPES
    assert anysolver.RETENTION_SECONDS is None


def _typecheck() -> None:
    dialect: JsonDialect = anysolver
    del dialect


@pytest.mark.parametrize(
    ("mode", "policy"),
    [
        ("autoCheapest", "cheapest"),
        ("autoFastest", "fastest"),
        ("autoMostReliable", "reliable"),
        ("priority", "priority"),
    ],
)
def test_selection_modes_become_the_router_policy(mode: str, policy: str) -> None:
    # anysolver.com/docs routing strategies, overridden per request.
    for body in (
        {"clientKey": "k", "task": SEED_TASK, "selectionMode": mode},
        {"clientKey": "k", "task": SEED_TASK, "settings": {"routing": {"mode": mode}}},
        {"clientKey": "k", "task": {**SEED_TASK, "selectionMode": mode}},
    ):
        create = anysolver.parse_create(json.dumps(body).encode())
        spec = anysolver.parse_task(create.task)
        assert spec.params["routingPolicy"] == policy
        assert "selectionMode" not in spec.params


def test_no_selection_mode_leaves_the_routing_alone() -> None:
    create = anysolver.parse_create(
        json.dumps({"clientKey": "k", "task": SEED_TASK, "selectionMode": None}).encode()
    )
    assert "routingPolicy" not in anysolver.parse_task(create.task).params


@pytest.mark.parametrize("mode", ["autoRandom", 3, ["autoCheapest"]])
def test_an_unknown_selection_mode_is_a_clear_error(mode: object) -> None:
    create = anysolver.parse_create(
        json.dumps({"clientKey": "k", "task": SEED_TASK, "selectionMode": mode}).encode()
    )
    with pytest.raises(CapgateError) as caught:
        anysolver.parse_task(create.task)
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert "autoCheapest" in caught.value.description
