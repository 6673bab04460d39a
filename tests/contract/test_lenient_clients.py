"""What real clients send that the vendors accept, against a real server: capgate must be
as lenient (issue: every client, every newcomer)."""

from __future__ import annotations

import json

import pytest

from tests.support import BOOTSTRAP_KEY, CapgateServer, captchas

pytestmark = pytest.mark.system


def test_in_php_reads_a_json_body_sent_as_text_plain(server: CapgateServer) -> None:
    """The `2captcha` npm package 3.x posts JSON through node-fetch, which labels a string
    body `text/plain;charset=UTF-8`."""
    body, _ = captchas(5150, 1)[0]
    payload = {"key": BOOTSTRAP_KEY, "method": "base64", "body": body, "json": 1}
    sent = server.http.post(
        "/in.php",
        content=json.dumps(payload).encode(),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    answer = sent.json()
    assert answer["status"] == 1, answer
    task_id = answer["request"]
    for _ in range(400):
        got = server.http.get(
            "/res.php", params={"key": BOOTSTRAP_KEY, "action": "get", "id": task_id, "json": 1}
        ).json()
        if got["request"] != "CAPCHA_NOT_READY":
            break
    assert got["status"] == 1 and isinstance(got["request"], str), got


def test_legacy_options_of_older_clients_are_accepted(server: CapgateServer) -> None:
    body, _ = captchas(5151, 1)[0]
    form = {
        "key": BOOTSTRAP_KEY,
        "method": "base64",
        "body": body,
        "is_russian": "0",
        "calc": "0",
        "regsense": "1",
        "soft_id": "2834",
        "softId": "2834",
        "header_acao": "1",
    }
    answer = server.http.post("/in.php", data=form)
    assert answer.text.startswith("OK|"), answer.text


def test_header_acao_answers_with_a_cors_header(server: CapgateServer) -> None:
    """2Captcha documents header_acao=1 on in.php and res.php; the npm clients send it."""
    asked = {"key": BOOTSTRAP_KEY, "action": "getbalance", "header_acao": "1"}
    answer = server.http.get("/res.php", params=asked)
    assert answer.headers["access-control-allow-origin"] == "*"
    wrong = server.http.get("/res.php", params={**asked, "key": "f" * 32})
    assert wrong.text == "ERROR_KEY_DOES_NOT_EXIST"
    assert wrong.headers["access-control-allow-origin"] == "*"
    plain = server.http.get("/res.php", params={"key": BOOTSTRAP_KEY, "action": "getbalance"})
    assert "access-control-allow-origin" not in plain.headers
