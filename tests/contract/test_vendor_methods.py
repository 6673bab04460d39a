"""Vendor methods and fields that clients beyond the four installed SDKs rely on (issue 15),
against a real capgate: CapMonster's token report, every documented solution field,
CapSolver's SDKs that reach the root, Anti-Captcha's account statistics, CapSolver's
images, AnySolver's selectionMode, softId everywhere, uCaptcha's rate-limit headers and
Vast's status word on errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from capgate.solvers.testkeys import DOCUMENTED_USER_AGENT, TURNSTILE_DUMMY_TOKEN
from tests.support import BOOTSTRAP_KEY, CapgateServer, ServerFactory, captchas, image_task

pytestmark = pytest.mark.system

K = BOOTSTRAP_KEY
TURNSTILE = {
    "type": "TurnstileTaskProxyless",
    "websiteURL": "https://example.com/",
    "websiteKey": "1x00000000000000000000AA",
}
RECAPTCHA = {
    "type": "RecaptchaV2TaskProxyless",
    "websiteURL": "https://www.google.com/recaptcha/api2/demo",
    "websiteKey": "6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI",
}
# python3-capsolver sends its own appId with every createTask (core/const.py APP_ID).
PYTHON3_CAPSOLVER_APP_ID = "3E36E3CD-7EB5-4CAF-AA15-91011E652321"


def create(server: CapgateServer, task: dict[str, Any], prefix: str = "", **top: Any) -> Any:
    answer = server.post(f"{prefix}/createTask", {"clientKey": K, "task": task, **top})
    assert answer["errorId"] == 0, answer
    return answer["taskId"]


def poll(server: CapgateServer, prefix: str, task_id: Any) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = server.post(f"{prefix}/getTaskResult", {"clientKey": K, "taskId": task_id})
        if answer.get("status") not in ("processing", "idle"):
            return answer
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} still processing")


# --- 1. CapMonster Cloud's reportIncorrectTokenCaptcha ---------------------------------


@pytest.mark.parametrize("prefix", ["", "/capmonster"])
@pytest.mark.parametrize(
    "method", ["reportIncorrectTokenCaptcha", "reportIncorrectRecaptcha", "reportIncorrectHcaptcha"]
)
def test_capmonster_reports_a_bad_token_by_every_documented_name(
    server: CapgateServer, prefix: str, method: str
) -> None:
    # docs.capmonster.cloud (bad tokens): reportIncorrectTokenCaptcha, and the two older
    # names that work the same; {clientKey, taskId} in, {errorId: 0, status: success} out.
    task_id = create(server, RECAPTCHA, prefix)
    assert poll(server, prefix, task_id)["status"] == "ready"
    answer = server.post(f"{prefix}/{method}", {"clientKey": K, "taskId": task_id})
    assert answer == {"errorId": 0, "status": "success"}


def test_anticaptcha_reports_a_correct_recaptcha(
    server: CapgateServer, anticaptcha_sdk: None
) -> None:
    from anticaptchaofficial.recaptchav2proxyless import recaptchaV2Proxyless

    solver = recaptchaV2Proxyless()
    solver.set_key(K)
    solver.set_website_url(RECAPTCHA["websiteURL"])
    solver.set_website_key(RECAPTCHA["websiteKey"])
    assert solver.solve_and_return_solution().startswith("capgate-test-token")
    assert solver.report_correct_recaptcha() == {"errorId": 0, "status": "success"}


# --- 2. every documented solution field ------------------------------------------------


def test_anticaptchaofficial_gets_the_turnstile_user_agent(
    server: CapgateServer, anticaptcha_sdk: None
) -> None:
    from anticaptchaofficial.turnstileproxyless import turnstileProxyless

    solver = turnstileProxyless()
    solver.set_key(K)
    solver.set_website_url(TURNSTILE["websiteURL"])
    solver.set_website_key(TURNSTILE["websiteKey"])
    assert solver.solve_and_return_solution() == TURNSTILE_DUMMY_TOKEN
    # The SDK keeps solution.userAgent to submit the token with.
    assert solver.user_agent == DOCUMENTED_USER_AGENT


def test_async_2captcha_turnstile_model_finds_its_required_fields(server: CapgateServer) -> None:
    # async-2captcha's TurnstileSolution requires both token and userAgent (str).
    answer = poll(server, "/2captcha", create(server, TURNSTILE, "/2captcha"))
    assert answer["solution"] == {
        "token": TURNSTILE_DUMMY_TOKEN,
        "userAgent": DOCUMENTED_USER_AGENT,
    }
    # A client's own user agent is the one the answer names.
    own = {**TURNSTILE, "userAgent": "Mozilla/5.0 (X11) Mine"}
    mine = poll(server, "/2captcha", create(server, own, "/2captcha"))
    assert mine["solution"]["userAgent"] == "Mozilla/5.0 (X11) Mine"


def test_capsolver_turnstile_and_recaptcha_solutions_as_documented(server: CapgateServer) -> None:
    turnstile = poll(server, "/capsolver", create(server, TURNSTILE, "/capsolver"))
    assert turnstile["solution"] == {
        "token": TURNSTILE_DUMMY_TOKEN,
        "type": "turnstile",
        "userAgent": DOCUMENTED_USER_AGENT,
    }
    recaptcha = poll(server, "/capsolver", create(server, RECAPTCHA, "/capsolver"))
    assert set(recaptcha["solution"]) == {"gRecaptchaResponse", "userAgent"}


# --- 3. CapSolver's SDKs that reach the root -------------------------------------------


def test_python3_capsolver_without_a_trailing_slash_gets_capsolver_shapes_at_the_root(
    server: CapgateServer,
) -> None:
    # python3-capsolver urljoins "createTask" onto "http://host/capsolver", which drops the
    # prefix: its requests land at the root, always with its appId.
    created = server.post(
        "/createTask", {"clientKey": K, "task": TURNSTILE, "appId": PYTHON3_CAPSOLVER_APP_ID}
    )
    assert created["errorCode"] == "" and created["status"] in ("idle", "processing", "ready")
    assert isinstance(created["taskId"], str)
    answer = poll(server, "", created["taskId"])
    assert answer == {
        "errorId": 0,
        "errorCode": "",
        "errorDescription": "",
        "status": "ready",
        "solution": {
            "token": TURNSTILE_DUMMY_TOKEN,
            "type": "turnstile",
            "userAgent": DOCUMENTED_USER_AGENT,
        },
        "taskId": created["taskId"],
    }
    # Anti-Captcha's clients at the root, without appId, keep their closed shapes.
    task_id = create(server, TURNSTILE)
    assert isinstance(task_id, int)
    assert "cost" in poll(server, "", task_id)


# --- 4. Anti-Captcha's getQueueStats and getSpendingStats ------------------------------


@pytest.mark.parametrize("prefix", ["", "/anticaptcha"])
def test_queue_stats_answer_the_documented_fields(server: CapgateServer, prefix: str) -> None:
    # anti-captcha.com/apidoc/methods/getQueueStats: {queueId} in, no key needed.
    image = server.post(f"{prefix}/getQueueStats", {"queueId": 1})
    assert set(image) == {"errorId", "waiting", "load", "bid", "speed", "total"}
    assert image["errorId"] == 0 and image["total"] >= 1  # the local OCR solver
    assert image["bid"] == "0.001000" and float(image["bid"]) == 0.001
    assert isinstance(image["load"], float) and isinstance(image["speed"], float)
    turnstile = server.post(f"{prefix}/getQueueStats", {"clientKey": K, "queueId": "27"})
    assert turnstile["total"] == 1  # the test-key solver
    antigate = server.post(f"{prefix}/getQueueStats", {"queueId": 25})
    assert (antigate["total"], antigate["waiting"]) == (0, 0)
    unknown = server.post(f"{prefix}/getQueueStats", {"queueId": 3})
    assert (unknown["errorId"], unknown["errorCode"]) == (110, "ERROR_BAD_PARAMETERS")
    assert "queueId" in unknown["errorDescription"]


def test_spending_stats_count_answers_by_hour_queue_and_soft_id(server: CapgateServer) -> None:
    samples = captchas(seed=7151, n=2)
    for number, (body, _) in enumerate(samples):
        top: dict[str, Any] = {"softId": 1234} if number == 0 else {}
        task_id = create(server, image_task(body), **top)
        assert poll(server, "", task_id)["status"] == "ready"
    poll(server, "", create(server, TURNSTILE))  # free: not spending, not in the ledger
    answer = server.post("/getSpendingStats", {"clientKey": K})
    assert answer["errorId"] == 0 and len(answer["data"]) == 24
    for record in answer["data"]:
        assert set(record) == {"dateFrom", "dateTill", "volume", "money"}
        assert record["dateTill"] - record["dateFrom"] == 3599
    now = answer["data"][-1]  # the last record is the current hour
    assert (now["volume"], now["money"]) == (2, pytest.approx(0.002))
    images = server.post(
        "/getSpendingStats",
        {"clientKey": K, "date": now["dateFrom"] + 5, "queue": "English ImageToText"},
    )
    assert images["data"][0]["dateFrom"] == now["dateFrom"]
    assert (images["data"][0]["volume"], images["data"][0]["money"]) == (2, pytest.approx(0.002))
    soft = server.post("/getSpendingStats", {"clientKey": K, "softId": 1234})["data"][-1]
    assert (soft["volume"], soft["money"]) == (1, pytest.approx(0.001))
    recaptcha = server.post("/getSpendingStats", {"clientKey": K, "queue": "Recaptcha Proxyless"})
    assert all(r["volume"] == 0 for r in recaptcha["data"])
    bad = server.post("/getSpendingStats", {"clientKey": K, "queue": "Nonsense Queue"})
    assert (bad["errorId"], bad["errorCode"]) == (110, "ERROR_BAD_PARAMETERS")
    wrong_key = server.post("/getSpendingStats", {"clientKey": "f" * 32})
    assert wrong_key["errorCode"] == "ERROR_KEY_DOES_NOT_EXIST"


# --- 5. CapSolver's ImageToText: module, websiteURL, images; getBalance ----------------


def test_capsolver_images_are_answered_as_a_list(server: CapgateServer, capsolver_sdk: Any) -> None:
    bodies = [body for body, _ in captchas(seed=7152, n=3)]
    options = {"type": "ImageToTextTask", "module": "number", "websiteURL": "https://x.test/"}
    several = capsolver_sdk.solve({**options, "images": bodies})
    # docs.capsolver.com ImageToTextTask: the number module answers `answers`, in order.
    assert len(several["answers"]) == 3 and all(several["answers"])
    assert several["text"] == several["answers"][0]
    one = capsolver_sdk.solve({**options, "images": bodies[:1]})
    assert set(one) == {"text"} and one["text"]
    # Four tasks, each charged as one; the balance lists its (empty) packages.
    balance = capsolver_sdk.balance()
    assert balance["balance"] == pytest.approx(10 - 4 * 0.001) and balance["packages"] == []


def test_capsolver_image_groups_are_read_back_and_bad_ones_refused(server: CapgateServer) -> None:
    bodies = [body for body, _ in captchas(seed=7153, n=2)]
    task = {"type": "ImageToTextTask", "module": "number", "images": bodies}
    created = server.post("/capsolver/createTask", {"clientKey": K, "task": task})
    assert created["status"] == "ready", created
    again = poll(server, "/capsolver", created["taskId"])
    assert again["solution"] == created["solution"]
    stored = server.db_counts()
    too_many = {**task, "images": bodies * 5}
    refused = server.post("/capsolver/createTask", {"clientKey": K, "task": too_many})
    assert refused["errorCode"] == "ERROR_INVALID_TASK_DATA" and "9" in refused["errorDescription"]
    broken = {**task, "images": [bodies[0], "not an image"]}
    refused = server.post("/capsolver/createTask", {"clientKey": K, "task": broken})
    assert refused["errorId"] == 1
    assert server.db_counts() == stored  # no image of a refused group became a task


@pytest.mark.parametrize(
    ("limit", "code"),
    [
        ({"max_creates_per_second": "2"}, "ERROR_RATE_LIMIT"),
        ({"max_tasks_in_flight": "2"}, "ERROR_RATE_LIMIT"),
        ({"bootstrap_balance": "0.002"}, "ERROR_ZERO_BALANCE"),
    ],
)
def test_an_image_group_past_a_limit_is_refused_whole(
    start_server: ServerFactory, tmp_path: Path, limit: dict[str, str], code: str
) -> None:
    """A limit that would stop the group partway refuses it before any task is made."""
    server = start_server(tmp_path / "limited", local_solving="false", **limit)
    bodies = [body for body, _ in captchas(seed=7154, n=3)]
    task = {"type": "ImageToTextTask", "module": "number", "images": bodies}
    stored = server.db_counts()
    refused = server.post("/capsolver/createTask", {"clientKey": K, "task": task})
    assert refused["errorCode"] == code, refused
    assert server.db_counts() == stored
    two = server.post(
        "/capsolver/createTask", {"clientKey": K, "task": {**task, "images": bodies[:2]}}
    )
    assert two["errorId"] == 0, two


# --- 6. AnySolver's per-task selectionMode ---------------------------------------------


def gateway(start_server: ServerFactory, tmp_path: Path, upstream: CapgateServer) -> CapgateServer:
    """A capgate whose only solvers are two providers in front of `upstream`: the first
    listed dear, the second cheap."""
    lines = []
    for name, price in (("dear", "0.002"), ("cheap", "0.0005")):
        lines += [
            "[[providers]]",
            f'name = "{name}"',
            'kind = "2captcha"',
            f'url = "{upstream.base}/2captcha"',
            'key_env = "CAPGATE_UPSTREAM_KEY"',
            f'prices = {{ ImageToText = "{price}" }}',
            "first_wait_seconds = 0.02",
            "poll_interval_seconds = 0.05",
        ]
    config = tmp_path / "gateway.toml"
    config.write_text("\n".join(lines) + "\n")
    return start_server(
        tmp_path / "gateway",
        "--config",
        str(config),
        ocr="false",
        test_keys="false",
        upstream_key=K,
    )


def test_anysolver_selection_mode_picks_the_router_policy(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    upstream = start_server(tmp_path / "upstream")
    server = gateway(start_server, tmp_path, upstream)
    body = captchas(seed=7154, n=1)[0][0]
    task = {"type": "ImageToTextTask", "body": body}

    def provider(**top: Any) -> str:
        answer = poll(server, "/anysolver", create(server, task, "/anysolver", **top))
        assert answer["status"] == "ready", answer
        name: str = answer["provider"]
        return name

    assert provider() == "dear"  # the configured order
    assert provider(selectionMode="autoCheapest") == "cheap"
    assert provider(selectionMode="priority") == "dear"
    assert provider(settings={"routing": {"mode": "autoCheapest"}}) == "cheap"
    inside = poll(
        server,
        "/anysolver",
        create(server, {**task, "selectionMode": "autoCheapest"}, "/anysolver"),
    )
    assert inside["provider"] == "cheap"
    stored = server.db_counts()
    refused = server.post(
        "/anysolver/createTask", {"clientKey": K, "task": task, "selectionMode": "autoRandom"}
    )
    assert (refused["errorId"], refused["errorCode"]) == (1, "INVALID_TASK_DATA")
    assert "autoCheapest" in refused["errorDescription"]
    assert server.db_counts() == stored


# --- 7. softId, languagePool and the vendors' extra fields, everywhere -----------------

EXTRAS: dict[str, Any] = {
    "softId": "1234",
    "languagePool": "rn",
    "nocache": True,  # CapMonster
    "fallbackToActualUA": True,  # CapMonster
    "recognizingThreshold": 90,  # CapMonster
    "isInvisible": False,
    "apiDomain": "",
    "enterprisePayload": {"s": "payload"},  # 2Captcha
    "metadata": {"action": "login"},  # CapSolver
    "cookies": "a=b; c=d",
}


@pytest.mark.parametrize(
    "prefix",
    ["", "/anticaptcha", "/2captcha", "/capmonster", "/capsolver", "/anysolver", "/api/solver"],
)
def test_soft_id_and_extra_fields_are_accepted_everywhere(
    server: CapgateServer, prefix: str
) -> None:
    top = {"softId": 1234, "languagePool": "en", "appId": "APP", "callbackUrl": ""}
    task_id = create(server, {**TURNSTILE, **EXTRAS}, prefix, **top)
    assert poll(server, prefix, task_id)["status"] == "ready"
    image = create(server, {**image_task(captchas(seed=7155, n=1)[0][0]), **EXTRAS}, prefix)
    assert poll(server, prefix, image)["status"] == "ready"


def test_soft_id_and_extras_on_the_rest_routes(server: CapgateServer) -> None:
    response = server.http.post(
        "/task/submit", headers={"x-api-key": K}, json={**TURNSTILE, **EXTRAS}
    )
    assert response.status_code == 200, response.text


# --- 8. uCaptcha's rate-limit headers --------------------------------------------------


def test_ucaptcha_routes_carry_the_rate_limit_headers(start_server: ServerFactory) -> None:
    server = start_server(max_creates_per_second="2")
    submit = {"type": "turnstile", "sitekey": TURNSTILE["websiteKey"], "url": "https://x/"}
    headers = {"x-api-key": K}
    before = time.time()
    first = server.http.post("/task/submit", headers=headers, json=submit)
    assert first.status_code == 200
    # ucaptcha.net/docs/api/overview: limit, remaining, and the Unix time the window resets.
    assert first.headers["x-ratelimit-limit"] == "2"
    assert first.headers["x-ratelimit-remaining"] == "1"
    assert before - 5 <= int(first.headers["x-ratelimit-reset"]) <= time.time() + 5
    server.http.post("/task/submit", headers=headers, json=submit)
    limited = server.http.post("/task/submit", headers=headers, json=submit)
    assert limited.status_code == 429
    assert limited.headers["x-ratelimit-remaining"] == "0"
    task_id = first.json()["task_id"]
    result = server.http.get(f"/task/result/{task_id}", headers=headers)
    assert result.status_code == 200 and "x-ratelimit-limit" in result.headers


def test_no_rate_limit_headers_without_a_rate(server: CapgateServer) -> None:
    submit = {"type": "turnstile", "sitekey": TURNSTILE["websiteKey"], "url": "https://x/"}
    answer = server.http.post("/task/submit", headers={"x-api-key": K}, json=submit)
    assert answer.status_code == 200 and "x-ratelimit-limit" not in answer.headers


# --- 9. Vast: a status word beside every error -----------------------------------------


def test_vast_errors_end_a_loop_polling_until_ready_or_failed(server: CapgateServer) -> None:
    unknown = server.post(
        "/api/solver/getTaskResult",
        {"clientKey": K, "taskId": "9d55c404-5a45-4e7b-8a93-b8ed9f26bdcf"},
    )
    assert unknown["status"] == "failed"
    assert unknown["error"]["errorCode"] == "ERROR_TASK_NOT_FOUND"
    task_id = create(server, TURNSTILE, "/api/solver")
    wrong_key = server.post("/api/solver/getTaskResult", {"clientKey": "f" * 32, "taskId": task_id})
    assert wrong_key["status"] == "failed"
    assert wrong_key["error"]["errorCode"] == "ERROR_KEY_DOES_NOT_EXIST"
    # The seed's own polling loop stops on them.
    for answer in (unknown, wrong_key):
        assert answer["status"] in ("ready", "failed")
