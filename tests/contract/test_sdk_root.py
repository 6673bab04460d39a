"""The vendors' own Python SDKs, from PyPI, against a real capgate at the root paths."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.support import BOOTSTRAP_KEY, CapgateServer, captchas

pytestmark = pytest.mark.system


def test_anticaptchaofficial_solves_an_image(
    server: CapgateServer, anticaptcha_sdk: None, tmp_path: Path
) -> None:
    from anticaptchaofficial.imagecaptcha import imagecaptcha

    samples = captchas(seed=7001, n=3)
    solver = imagecaptcha()
    solver.set_key(BOOTSTRAP_KEY)
    assert solver.get_balance() == 10.0
    read = 0
    for i, (body, label) in enumerate(samples):
        path = tmp_path / f"c{i}.png"
        path.write_bytes(base64.b64decode(body))
        text = solver.solve_and_return_solution(str(path))
        assert isinstance(text, str) and text, solver.err_string
        read += text == label
    assert read >= 2
    answer = solver.report_incorrect_image_captcha()
    assert answer == {"errorId": 0, "status": "success"}
    assert solver.get_balance() == pytest.approx(10.0 - 2 * 0.001)


def test_anticaptchaofficial_gets_a_test_key_token(
    server: CapgateServer, anticaptcha_sdk: None
) -> None:
    from anticaptchaofficial.turnstileproxyless import turnstileProxyless

    solver = turnstileProxyless()
    solver.set_key(BOOTSTRAP_KEY)
    solver.set_website_url("https://example.com/")
    solver.set_website_key("1x00000000000000000000AA")
    assert solver.solve_and_return_solution() == "XXXX.DUMMY.TOKEN.XXXX"


def test_anticaptchaofficial_sees_errors_in_its_own_terms(
    server: CapgateServer, anticaptcha_sdk: None
) -> None:
    from anticaptchaofficial.imagecaptcha import imagecaptcha

    solver = imagecaptcha()
    solver.set_key("0" * 32)
    assert solver.solve_and_return_solution(None, body=b"\x89PNG not really") == 0
    assert solver.error_code == "ERROR_KEY_DOES_NOT_EXIST"


def test_unicaps_solves_an_image(server: CapgateServer) -> None:
    from unicaps import CaptchaSolver, CaptchaSolvingService
    from unicaps._service.anti_captcha import Service

    body, _ = captchas(seed=7002, n=1)[0]
    original = Service.BASE_URL
    Service.BASE_URL = server.base  # CLIENTS.md: set the service object's BASE_URL.
    try:
        with CaptchaSolver(CaptchaSolvingService.ANTI_CAPTCHA, BOOTSTRAP_KEY) as solver:
            assert solver.get_balance() == 10.0
            solved = solver.solve_image_captcha(base64.b64decode(body))
            assert isinstance(solved.solution.text, str) and solved.solution.text
            assert float(solved.cost) == pytest.approx(0.001)
            solved.report_bad()
            assert solver.get_balance() == 10.0
    finally:
        Service.BASE_URL = original
