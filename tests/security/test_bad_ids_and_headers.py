"""Well-formed input that used to end in a 5xx: a non-ASCII admin Bearer token or dashboard
cookie (hmac.compare_digest refuses non-ASCII str), and a task id of thousands of digits
(Python's int() refuses over 4,300). docs/guarantees.md promises no 5xx: each is answered
in its dialect's words, and nothing is logged as an internal error."""

from __future__ import annotations

import pytest

from tests.support import BOOTSTRAP_KEY, CapgateServer, ServerFactory

pytestmark = pytest.mark.system

K = BOOTSTRAP_KEY
ADMIN = "bad-headers-admin-key"
HUGE = "9" * 5000
# Where each JSON dialect polls a result (the Anti-Captcha family's shape, Vast's path).
RESULT_PATHS = [
    "/getTaskResult",
    "/anticaptcha/getTaskResult",
    "/2captcha/getTaskResult",
    "/capmonster/getTaskResult",
    "/capsolver/getTaskResult",
    "/anysolver/getTaskResult",
    "/api/solver/getTaskResult",
]
NON_ASCII = ["ключ".encode(), b"\xff\xfe", "é".encode("latin-1"), "🔑".encode()]


@pytest.fixture
def admin_server(start_server: ServerFactory) -> CapgateServer:
    return start_server(None, admin_key=ADMIN, local_solving="false")


def internal_errors(server: CapgateServer) -> list[str]:
    log = server.log.read_text(errors="replace")
    return [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line]


@pytest.mark.parametrize("token", NON_ASCII)
def test_a_non_ascii_bearer_token_is_refused_not_a_503(
    admin_server: CapgateServer, token: bytes
) -> None:
    for value in (b"Bearer " + token, token, b"Bearer " + ADMIN.encode() + token):
        answer = admin_server.http.get("/admin/overview", headers={b"authorization": value})
        assert answer.status_code == 401, (value, answer.status_code, answer.text)
    assert internal_errors(admin_server) == []


@pytest.mark.parametrize("token", NON_ASCII)
def test_a_non_ascii_dashboard_cookie_shows_the_log_in_page(
    admin_server: CapgateServer, token: bytes
) -> None:
    answer = admin_server.http.get("/dashboard", headers={b"cookie": b"capgate_admin=" + token})
    assert answer.status_code == 200 and 'id="key"' in answer.text
    # A non-ASCII key typed into the log-in form is a wrong key, not a crash.
    answer = admin_server.http.post(
        "/dashboard/login",
        content=b"key=" + token,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 401 and "not the admin key" in answer.text
    assert internal_errors(admin_server) == []


@pytest.mark.parametrize("task_id", [HUGE, "0" * 40 + "1", "9" * 20])
def test_an_overlong_task_id_is_not_found_in_every_dialect(
    idle_server: CapgateServer, task_id: str
) -> None:
    server = idle_server
    for path in RESULT_PATHS:
        answer = server.http.post(path, json={"clientKey": K, "taskId": task_id})
        assert answer.status_code < 500, (path, answer.status_code, answer.text[:200])
        assert b"Temporary server error" not in answer.content, (path, answer.text[:200])
    answer = server.post("/getTaskResult", {"clientKey": K, "taskId": task_id})
    assert answer["errorCode"] == "ERROR_NO_SUCH_CAPCHA_ID", answer
    for path in ("/reportIncorrectImageCaptcha", "/reportCorrect", "/feedbackTask"):
        answer = server.http.post(path, json={"clientKey": K, "taskId": task_id})
        assert answer.status_code < 500 and b"Temporary" not in answer.content, answer.text
    # uCaptcha's REST result path.
    answer = server.http.get(f"/task/result/{task_id}", headers={"x-api-key": K})
    assert (answer.status_code, answer.json()) == (404, {"status": "NOT_FOUND"})
    # 2Captcha's legacy res.php: id= and ids=, plain and JSON.
    form = {"key": K, "action": "get", "id": task_id}
    assert server.http.post("/res.php", data=form).text == "ERROR_WRONG_CAPTCHA_ID"
    form = {"key": K, "action": "reportbad", "id": task_id, "json": "1"}
    assert server.http.post("/res.php", data=form).json()["request"] == "ERROR_WRONG_CAPTCHA_ID"
    form = {"key": K, "action": "get", "ids": f"{task_id},1", "json": "1"}
    answer = server.http.post("/res.php", data=form).json()
    assert answer["request"] == "ERROR_WRONG_CAPTCHA_ID|ERROR_WRONG_CAPTCHA_ID", answer
    assert internal_errors(server) == []


def test_an_overlong_task_id_as_a_json_number(idle_server: CapgateServer) -> None:
    server = idle_server
    for path in RESULT_PATHS:
        body = b'{"clientKey": "' + K.encode() + b'", "taskId": ' + HUGE.encode() + b"}"
        answer = server.http.post(path, content=body)
        assert answer.status_code < 500, (path, answer.status_code, answer.text[:200])
        assert b"Temporary server error" not in answer.content
    body = b'{"workerKey": "x", "taskId": ' + HUGE.encode() + b', "token": "t"}'
    for path in ("/worker/extend", "/worker/fail"):
        answer = server.http.post(path, content=body)
        assert answer.status_code < 500, (path, answer.status_code, answer.text[:200])
    assert internal_errors(server) == []


def test_an_overlong_integer_option_on_in_php(idle_server: CapgateServer) -> None:
    before = idle_server.db_counts()
    form = {"key": K, "method": "base64", "body": "aGVsbG8=", "min_len": HUGE, "json": "1"}
    answer = idle_server.http.post("/in.php", data=form).json()
    assert answer["request"] == "ERROR_BAD_PARAMETERS", answer
    assert idle_server.db_counts() == before
    assert internal_errors(idle_server) == []
