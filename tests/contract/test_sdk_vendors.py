"""The vendors' own Python SDKs, from PyPI, against a real capgate on their own paths."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from tests.support import BOOTSTRAP_KEY, CapgateServer, captchas

pytestmark = pytest.mark.system


def test_capsolver_sdk_reads_an_image_inside_create_task(
    server: CapgateServer, capsolver_sdk: Any
) -> None:
    samples = captchas(seed=7101, n=3)
    read = 0
    for body, label in samples:
        solution = capsolver_sdk.solve({"type": "ImageToTextTask", "body": body})
        assert isinstance(solution["text"], str) and solution["text"]
        read += solution["text"] == label
    assert read >= 2
    assert capsolver_sdk.balance()["balance"] == pytest.approx(10.0 - 3 * 0.001)


def test_capsolver_sdk_gets_a_test_key_token(server: CapgateServer, capsolver_sdk: Any) -> None:
    solution = capsolver_sdk.solve(
        {
            "type": "AntiTurnstileTaskProxyLess",
            "websiteURL": "https://example.com/",
            "websiteKey": "1x00000000000000000000AA",
        }
    )
    assert solution["token"] == "XXXX.DUMMY.TOKEN.XXXX"


@pytest.fixture
def twocaptcha_sdk(server: CapgateServer) -> Iterator[None]:
    """Point 2captcha-python at capgate.

    It builds 'https://' + host + '/in.php' with a hard-coded https scheme (CLIENTS.md): the
    least intrusive redirect is to swap the `requests` its API module calls for a shim that
    rewrites that URL and leaves everything else (multipart upload, params) as sent.
    """
    from twocaptcha import api

    def rewrite(url: str) -> str:
        return url.replace("https://2captcha.com", server.base)

    shim = SimpleNamespace(
        RequestException=requests.RequestException,
        post=lambda url, **kw: requests.post(rewrite(url), **kw),
        get=lambda url, **kw: requests.get(rewrite(url), **kw),
    )
    original = api.requests
    api.requests = shim
    yield
    api.requests = original


def test_2captcha_python_solves_an_image_over_the_legacy_api(
    server: CapgateServer, twocaptcha_sdk: None, tmp_path: Path
) -> None:
    from twocaptcha import TwoCaptcha

    body, _ = captchas(seed=7102, n=1)[0]
    path = tmp_path / "captcha.png"
    path.write_bytes(base64.b64decode(body))
    solver = TwoCaptcha(BOOTSTRAP_KEY)
    assert solver.balance() == 10.0
    result = solver.normal(str(path))  # multipart upload with a `file` part
    assert isinstance(result["code"], str) and result["code"]
    task_id = result["captchaId"]
    assert task_id.isdigit()
    assert solver.balance() == pytest.approx(9.999)
    solver.report(task_id, False)
    assert solver.balance() == 10.0


def test_2captcha_python_base64_and_a_test_key_token(
    server: CapgateServer, twocaptcha_sdk: None
) -> None:
    from twocaptcha import TwoCaptcha

    solver = TwoCaptcha(BOOTSTRAP_KEY, pollingInterval=1)
    body, _ = captchas(seed=7103, n=1)[0]
    assert solver.normal(body)["code"]  # a long string without a dot goes as method=base64
    token = solver.turnstile(sitekey="1x00000000000000000000AA", url="https://example.com/")
    assert token["code"] == "XXXX.DUMMY.TOKEN.XXXX"


def test_2captcha_python_sees_a_bad_key_as_an_error(
    server: CapgateServer, twocaptcha_sdk: None
) -> None:
    from twocaptcha import TwoCaptcha
    from twocaptcha.exceptions.api import ApiException

    with pytest.raises((ApiException, ValueError)):
        TwoCaptcha("f" * 32).balance()
