"""Each dialect against its seed document and vendor docs, on a real server process."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from capgate.solvers.testkeys import DOCUMENTED_USER_AGENT
from tests.support import (
    BOOTSTRAP_KEY,
    CapgateServer,
    captchas,
    image_task,
    run_cli,
    seed_document,
)

pytestmark = pytest.mark.system

K = BOOTSTRAP_KEY
TURNSTILE_PASS = {
    "type": "AntiTurnstileTaskProxyLess",
    "websiteURL": "https://example.com/",
    "websiteKey": "1x00000000000000000000AA",
}
TURNSTILE_BLOCK = {**TURNSTILE_PASS, "websiteKey": "2x00000000000000000000AB"}
RECAPTCHA_TEST = {
    "type": "ReCaptchaV2TokenProxyLess",
    "websiteURL": "https://www.google.com/recaptcha/api2/demo",
    "websiteKey": "6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI",
}
HCAPTCHA_TEST = {
    "type": "HCaptchaTaskProxyless",
    "websiteURL": "https://example.com/",
    "websiteKey": "10000000-ffff-ffff-ffff-000000000001",
}


def seed(name: str) -> str:
    return seed_document(name).read_text()


def poll(server: CapgateServer, path: str, task_id: Any, done: tuple[str, ...]) -> Any:
    for _ in range(400):
        answer = server.post(path, {"clientKey": K, "taskId": task_id})
        if answer.get("status") in done or answer.get("errorId", 0) != 0:
            return answer
    raise AssertionError(f"{task_id} never left processing")


# --- CapSolver (seed 002) ---------------------------------------------------------------


def test_capsolver_idle_then_ready_with_string_ids(idle_server: CapgateServer) -> None:
    created = idle_server.post("/capsolver/createTask", {"clientKey": K, "task": TURNSTILE_PASS})
    assert created["errorId"] == 0 and created["status"] == "idle"
    task_id = created["taskId"]
    assert isinstance(task_id, str) and len(task_id) == 36
    answer = idle_server.post("/capsolver/getTaskResult", {"clientKey": K, "taskId": task_id})
    assert answer["status"] == "idle"
    assert answer["errorId"] == 0


def test_capsolver_answers_images_inside_create_task(server: CapgateServer) -> None:
    body, _ = captchas(8001, 1)[0]
    created = server.post("/capsolver/createTask", {"clientKey": K, "task": image_task(body)})
    assert created["errorId"] == 0
    assert created["status"] == "ready"
    assert set(created["solution"]) == {"text"}
    again = server.post("/capsolver/getTaskResult", {"clientKey": K, "taskId": created["taskId"]})
    assert again["status"] == "ready" and again["solution"] == created["solution"]


def test_capsolver_failure_is_errorid_1_with_a_string_code(server: CapgateServer) -> None:
    created = server.post("/capsolver/createTask", {"clientKey": K, "task": TURNSTILE_BLOCK})
    answer = poll(server, "/capsolver/getTaskResult", created["taskId"], ("ready",))
    assert answer["errorId"] == 1
    assert answer["errorCode"] == "ERROR_CAPTCHA_UNSOLVABLE"
    assert answer["errorDescription"]
    bad = server.post("/capsolver/getBalance", {"clientKey": "nope"})
    assert (bad["errorId"], bad["errorCode"]) == (1, "ERROR_KEY_DENIED_ACCESS")


def test_capsolver_results_last_five_minutes(server: CapgateServer) -> None:
    created = server.post("/capsolver/createTask", {"clientKey": K, "task": TURNSTILE_PASS})
    task_id = created["taskId"]
    assert poll(server, "/capsolver/getTaskResult", task_id, ("ready",))["status"] == "ready"
    server.advance(299)
    answer = server.post("/capsolver/getTaskResult", {"clientKey": K, "taskId": task_id})
    assert answer["status"] == "ready"
    server.advance(2)
    answer = server.post("/capsolver/getTaskResult", {"clientKey": K, "taskId": task_id})
    assert (answer["errorId"], answer["errorCode"]) == (1, "ERROR_TASKID_INVALID")


def test_capsolver_feedback_refunds_a_wrong_answer(server: CapgateServer) -> None:
    body, _ = captchas(8002, 1)[0]
    created = server.post("/capsolver/createTask", {"clientKey": K, "task": image_task(body)})
    assert server.post("/capsolver/getBalance", {"clientKey": K})["balance"] == 9.999
    answer = server.post(
        "/capsolver/feedbackTask",
        {"clientKey": K, "taskId": created["taskId"], "result": {"invalid": True}},
    )
    assert answer["errorId"] == 0
    assert server.post("/capsolver/getBalance", {"clientKey": K})["balance"] == 10.0


# --- AnySolver (seed 004) ---------------------------------------------------------------


def test_anysolver_shapes(server: CapgateServer, idle_server: CapgateServer) -> None:
    created = idle_server.post("/anysolver/createTask", {"clientKey": K, "task": RECAPTCHA_TEST})
    assert created["errorId"] == 0 and len(created["taskId"]) == 26
    waiting = idle_server.post(
        "/anysolver/getTaskResult", {"clientKey": K, "taskId": created["taskId"]}
    )
    assert waiting == {
        "status": "processing",
        "taskId": created["taskId"],
        "errorId": 0,
        "taskType": "ReCaptchaV2TokenProxyLess",
        "provider": "auto",
        "solution": None,
    }
    created = server.post("/anysolver/createTask", {"clientKey": K, "task": RECAPTCHA_TEST})
    ready = poll(server, "/anysolver/getTaskResult", created["taskId"], ("ready", "failed"))
    assert ready["status"] == "ready" and ready["errorId"] == 0
    assert isinstance(ready["cost"], (int, float))
    assert set(ready) == {"status", "taskId", "errorId", "cost", "taskType", "provider", "solution"}
    created = server.post("/anysolver/createTask", {"clientKey": K, "task": TURNSTILE_BLOCK})
    failed = poll(server, "/anysolver/getTaskResult", created["taskId"], ("ready", "failed"))
    assert failed["status"] == "failed"
    assert (failed["errorId"], failed["errorCode"]) == (1, "CAPTCHA_UNSOLVABLE")
    assert failed["solution"] is None and failed["taskType"] == "AntiTurnstileTaskProxyLess"
    missing = server.post(
        "/anysolver/getTaskResult", {"clientKey": K, "taskId": "01KFNDF328KAN2AJ3BNHCQYE88"}
    )
    assert (missing["errorId"], missing["errorCode"]) == (1, "TASK_NOT_FOUND")


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_anysolver_seed_javascript_loop_runs_unchanged_but_for_the_base_url(
    server: CapgateServer, tmp_path: Path
) -> None:
    text = seed("004")
    code = text[text.index("const API_KEY") : text.index("Solution Formats")]
    code = code.replace("https://api.anysolver.com", f"{server.base}/anysolver")
    code = code.replace("YOUR_API_KEY", K)
    script = tmp_path / "loop.mjs"
    script.write_text(code)
    done = subprocess.run(
        ["node", str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Task completed!" in done.stdout
    assert f"Solved: capgate-test-token.recaptcha-v2.{RECAPTCHA_TEST['websiteKey']}" in done.stdout


# --- Vast (seed 003) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "solution_keys"),
    [(RECAPTCHA_TEST, {"gRecaptchaResponse"}), (HCAPTCHA_TEST, {"token"})],
)
def test_vast_ready_solutions(
    server: CapgateServer, task: dict[str, str], solution_keys: set[str]
) -> None:
    created = server.post("/api/solver/createTask", {"clientKey": K, "task": task})
    answer = poll(server, "/api/solver/getTaskResult", created["taskId"], ("ready", "failed"))
    assert answer["status"] == "ready"
    assert set(answer["solution"]) == solution_keys


def test_vast_processing_and_failed(server: CapgateServer, idle_server: CapgateServer) -> None:
    created = idle_server.post("/api/solver/createTask", {"clientKey": K, "task": TURNSTILE_PASS})
    answer = idle_server.post(
        "/api/solver/getTaskResult", {"clientKey": K, "taskId": created["taskId"]}
    )
    assert answer == {"errorId": 0, "status": "processing"}
    created = server.post("/api/solver/createTask", {"clientKey": K, "task": TURNSTILE_BLOCK})
    failed = poll(server, "/api/solver/getTaskResult", created["taskId"], ("ready", "failed"))
    assert failed["status"] == "failed"
    assert failed["error"]["errorId"] == 1
    assert failed["error"]["errorCode"] == "ERROR_CAPTCHA_UNSOLVABLE"
    # The seed's curl example, with its own (unknown) id: "task not found".
    response = httpx.post(
        f"{server.base}/api/solver/getTaskResult",
        headers={"Content-Type": "application/json"},
        content=(
            '{\n    "clientKey": "' + K + '",\n'
            '    "taskId": "9d55c404-5a45-4e7b-8a93-b8ed9f26bdcf"\n  }'
        ),
    )
    assert response.json()["errorCode"] == "ERROR_TASK_NOT_FOUND"


# --- uCaptcha REST (seed 000) -----------------------------------------------------------


def submit(server: CapgateServer, task: dict[str, Any], key: str = K) -> str:
    response = server.http.post("/task/submit", json=task, headers={"x-api-key": key})
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


def test_ucaptcha_statuses_and_http_codes(
    server: CapgateServer, idle_server: CapgateServer
) -> None:
    queued = submit(idle_server, TURNSTILE_PASS)
    response = idle_server.http.get(f"/task/result/{queued}", headers={"x-api-key": K})
    assert (response.status_code, response.json()) == (200, {"status": "QUEUED"})
    ok = submit(server, {"type": "turnstile", "sitekey": "1x00000000000000000000AA", "url": "u"})
    for _ in range(200):
        response = server.http.get(f"/task/result/{ok}?token={K}")
        if response.json()["status"] == "SUCCESS":
            break
    # The seed's shape; a test-key answer also names the user agent to submit it with.
    assert response.json() == {
        "status": "SUCCESS",
        "result": {"token": "XXXX.DUMMY.TOKEN.XXXX", "userAgent": DOCUMENTED_USER_AGENT},
    }
    bad = submit(server, TURNSTILE_BLOCK)
    for _ in range(200):
        response = server.http.get(f"/task/result/{bad}", headers={"x-api-key": K})
        if response.json()["status"] == "FAILED":
            break
    assert response.json()["status"] == "FAILED" and response.json()["error"]
    missing = server.http.get("/task/result/550e8400-e29b-41d4-a716-446655440000?token=" + K)
    assert (missing.status_code, missing.json()) == (404, {"status": "NOT_FOUND"})
    assert server.http.get(f"/task/result/{ok}").status_code == 401
    broke = run_cli("keys", "create", "--balance", "0", "--data", str(server.data)).stdout.strip()
    body, _ = captchas(9, 1)[0]
    response = server.http.post(
        "/task/submit", json={"type": "image", "body": body}, headers={"x-api-key": broke}
    )
    assert response.status_code == 402


def test_ucaptcha_poll_limit_is_429(idle_server: CapgateServer) -> None:
    task_id = submit(idle_server, TURNSTILE_PASS)
    for _ in range(120):
        assert idle_server.http.get(f"/task/result/{task_id}?token={K}").status_code == 200
    assert idle_server.http.get(f"/task/result/{task_id}?token={K}").status_code == 429


def test_ucaptcha_image_results_carry_text_and_token(server: CapgateServer) -> None:
    body, _ = captchas(8003, 1)[0]
    task_id = submit(server, {"type": "ImageToTextTask", "body": body})
    for _ in range(400):
        answer = server.http.get(f"/task/result/{task_id}?token={K}").json()
        if answer["status"] == "SUCCESS":
            break
    assert answer["status"] == "SUCCESS"
    assert answer["result"]["text"] == answer["result"]["token"] != ""


def test_ucaptcha_seed_python_loop(server: CapgateServer, tmp_path: Path) -> None:
    task_id = submit(server, TURNSTILE_PASS)
    # Seed 000's Python loop, re-indented (the seed lost its line breaks), base URL changed.
    script = tmp_path / "loop.py"
    script.write_text(
        "import requests\n"
        "import time\n\n"
        f'task_id = "{task_id}"\n'
        f'API_KEY = "{K}"\n\n'
        "while True:\n"
        "    result = requests.get(\n"
        f'        f"{server.base}/task/result/{{task_id}}",\n'
        '        headers={"x-api-key": API_KEY}\n'
        "    ).json()\n\n"
        '    if result["status"] == "SUCCESS":\n'
        '        print("Token:", result["result"]["token"])\n'
        "        break\n"
        '    elif result["status"] in ("FAILED", "NOT_FOUND"):\n'
        '        print("Failed:", result.get("error"))\n'
        "        break\n\n"
        "    time.sleep(2)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "Token: XXXX.DUMMY.TOKEN.XXXX", done.stderr


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_ucaptcha_seed_javascript_loop(server: CapgateServer, tmp_path: Path) -> None:
    task_id = submit(server, TURNSTILE_PASS)
    text = seed("000")
    code = text[text.index('const API_KEY = "YOUR_API_KEY";') :]
    code = code.replace("https://api.ucaptcha.net", server.base).replace("YOUR_API_KEY", K)
    code = re.sub(r"550e8400-e29b-41d4-a716-446655440000", task_id, code)
    script = tmp_path / "loop.mjs"
    script.write_text(code)
    done = subprocess.run(
        ["node", str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Token: XXXX.DUMMY.TOKEN.XXXX"


# --- 2Captcha legacy --------------------------------------------------------------------


def test_legacy_plain_and_json(server: CapgateServer) -> None:
    body, _ = captchas(8004, 1)[0]
    created = server.http.post("/in.php", data={"key": K, "method": "base64", "body": body})
    assert created.text.startswith("OK|")
    task_id = created.text[3:]
    for _ in range(400):
        answer = server.http.get("/res.php", params={"key": K, "action": "get", "id": task_id})
        if answer.text != "CAPCHA_NOT_READY":
            break
    assert answer.text.startswith("OK|") and len(answer.text) > 3
    as_json = server.http.get(
        "/res.php", params={"key": K, "action": "get2", "id": task_id, "json": "1"}
    ).json()
    assert as_json == {"status": 1, "request": answer.text[3:], "price": "0.00100"}
    balance = server.http.get("/res.php", params={"key": K, "action": "getbalance"})
    assert float(balance.text) == pytest.approx(9.999)
    report = server.http.get("/res.php", params={"key": K, "action": "reportbad", "id": task_id})
    assert report.text == "OK_REPORT_RECORDED"
    assert float(server.http.get("/res.php", params={"key": K, "action": "getbalance"}).text) == 10


def test_legacy_multipart_upload_and_errors(idle_server: CapgateServer) -> None:
    body, _ = captchas(8005, 1)[0]
    created = idle_server.http.post(
        "/in.php",
        data={"key": K, "method": "post", "json": "1"},
        files={"file": ("captcha.png", base64.b64decode(body), "image/png")},
    )
    assert created.json()["status"] == 1
    task_id = created.json()["request"]
    waiting = idle_server.http.get(
        "/res.php", params={"key": K, "action": "get", "id": task_id, "json": "1"}
    )
    assert waiting.json() == {"status": 0, "request": "CAPCHA_NOT_READY"}
    bad_key = idle_server.http.get("/res.php", params={"key": "x", "action": "getbalance"})
    assert bad_key.status_code == 200 and "ERROR" in bad_key.text
    unknown = idle_server.http.get("/res.php", params={"key": K, "action": "get", "id": "999"})
    assert unknown.text == "ERROR_WRONG_CAPTCHA_ID"
    no_image = idle_server.http.post("/in.php", data={"key": K, "method": "post"})
    assert no_image.text == "ERROR_ZERO_CAPTCHA_FILESIZE"


# --- across dialects --------------------------------------------------------------------


def test_a_task_created_in_one_dialect_is_read_in_every_other(server: CapgateServer) -> None:
    created = server.post("/createTask", {"clientKey": K, "task": TURNSTILE_PASS})
    root_id = created["taskId"]
    assert poll(server, "/getTaskResult", root_id, ("ready",))["status"] == "ready"
    capsolver = server.post("/capsolver/createTask", {"clientKey": K, "task": TURNSTILE_PASS})
    for path, task_id in (
        ("/capsolver/getTaskResult", root_id),
        ("/anysolver/getTaskResult", root_id),
        ("/api/solver/getTaskResult", root_id),
        ("/getTaskResult", capsolver["taskId"]),
    ):
        answer = poll(server, path, task_id, ("ready",))
        assert answer["status"] == "ready", (path, answer)
    legacy = server.http.get("/res.php", params={"key": K, "action": "get", "id": root_id})
    assert legacy.text == "OK|XXXX.DUMMY.TOKEN.XXXX"
    rest = server.http.get(f"/task/result/{root_id}", headers={"x-api-key": K})
    assert rest.json()["status"] == "SUCCESS"


def test_a_key_can_choose_the_dialect_of_the_root(server: CapgateServer) -> None:
    done = run_cli(
        "keys", "create", "--balance", "1", "--dialect", "capsolver", "--data", str(server.data)
    )
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip()
    body, _ = captchas(8006, 1)[0]
    created = server.post("/createTask", {"clientKey": secret, "task": image_task(body)})
    assert created["status"] == "ready" and isinstance(created["taskId"], str)
    assert server.post("/getBalance", {"clientKey": secret})["packages"] == []
    # Everybody else still gets the Anti-Captcha family at the root.
    plain = server.post("/createTask", {"clientKey": K, "task": image_task(body)})
    assert set(plain) == {"errorId", "taskId"}
    refused = run_cli("keys", "create", "--dialect", "klingon", "--data", str(server.data))
    assert refused.returncode == 1 and "unknown dialect" in refused.stderr


# --- long-poll (opt-in) -----------------------------------------------------------------


def test_wait_seconds_answers_the_moment_the_task_is_done(server: CapgateServer) -> None:
    body, _ = captchas(8101, 1)[0]
    for prefix in ("", "/capsolver", "/anysolver", "/api/solver"):
        created = server.post(f"{prefix}/createTask", {"clientKey": K, "task": TURNSTILE_PASS})
        answer = server.post(
            f"{prefix}/getTaskResult",
            {"clientKey": K, "taskId": created["taskId"], "waitSeconds": 20},
        )
        assert answer["status"] == "ready", (prefix, answer)
    created = server.post("/createTask", {"clientKey": K, "task": image_task(body)})
    answer = server.post(
        "/getTaskResult", {"clientKey": K, "taskId": created["taskId"], "waitSeconds": 20}
    )
    assert answer["status"] == "ready"
    task_id = submit(server, TURNSTILE_PASS)
    rest = server.http.get(f"/task/result/{task_id}?wait=20", headers={"x-api-key": K})
    assert rest.json()["status"] == "SUCCESS"


def test_wait_seconds_gives_up_and_answers_processing(idle_server: CapgateServer) -> None:
    created = idle_server.post("/createTask", {"clientKey": K, "task": TURNSTILE_PASS})
    answer = idle_server.post(
        "/getTaskResult", {"clientKey": K, "taskId": created["taskId"], "waitSeconds": 0.3}
    )
    assert answer == {"errorId": 0, "status": "processing"}


def test_numeric_option_constrains_the_reader(server: CapgateServer) -> None:
    from capgate.ocr import synth

    images = synth.generate(8201, 3, "0123456789", 4, 4)
    for png, _ in images:
        body = base64.b64encode(png).decode()
        for numeric, allowed in ((1, str.isdigit), (2, str.isalpha)):
            task = {**image_task(body), "numeric": numeric}
            created = server.post("/capsolver/createTask", {"clientKey": K, "task": task})
            text = created["solution"]["text"]
            assert text and all(allowed(c) for c in text), (numeric, text)


def test_length_options_constrain_the_reader(server: CapgateServer) -> None:
    body, _ = captchas(8202, 1)[0]
    for options, check in (
        ({"minLength": 4, "maxLength": 4}, lambda text: len(text) == 4),
        ({"minLength": 6, "maxLength": 6}, lambda text: len(text) == 6),
        ({"maxLength": 2}, lambda text: 1 <= len(text) <= 2),
        ({"minLength": "", "maxLength": None}, lambda text: text != ""),
    ):
        task = {**image_task(body), **options}
        created = server.post("/capsolver/createTask", {"clientKey": K, "task": task})
        assert check(created["solution"]["text"]), (options, created)


def test_math_and_phrase_options_answer_in_their_shape(server: CapgateServer) -> None:
    from capgate.ocr import synth
    from capgate.ocr.grammar import evaluate

    ((sum_png, expression),) = synth.generate(8203, 1, "", 0, 0, kind="math")
    ((phrase_png, _),) = synth.generate(8204, 1, "", 0, 0, kind="phrase")
    for png, options, check in (
        (sum_png, {"math": True}, lambda text: text.lstrip("-").isdigit()),
        (phrase_png, {"phrase": True}, lambda text: len(text.split(" ")) >= 2),
    ):
        task = {**image_task(base64.b64encode(png).decode()), **options}
        created = server.post("/capsolver/createTask", {"clientKey": K, "task": task})
        assert check(created["solution"]["text"]), (options, created)
    assert evaluate(expression) is not None
