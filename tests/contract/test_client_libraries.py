"""Client libraries from PyPI and npm, each against one real capgate, as their users call them.

Each is pointed at capgate the least invasive way its code allows (docs/clients.md has the
table): an image task read by the local OCR, the vendors' test site keys (exact documented
tokens), the balance, and a report where the library has one. The npm libraries run as small
scripts under tests/clients/node/ (installed there by scripts/test from its package-lock.json).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from capgate.solvers.testkeys import (
    HCAPTCHA_TEST_KEYS,
    RECAPTCHA_TEST_TOKEN,
    RECAPTCHA_V2_TEST_KEY,
    TURNSTILE_DUMMY_TOKEN,
)
from tests.support import BOOTSTRAP_KEY, CapgateServer, captchas

pytestmark = pytest.mark.system

PAGE = "https://example.com/"
TURNSTILE_KEY = "1x00000000000000000000AA"
HCAPTCHA_KEY = "10000000-ffff-ffff-ffff-000000000001"
HCAPTCHA_TOKEN = HCAPTCHA_TEST_KEYS[HCAPTCHA_KEY]
IMAGE_PRICE = 0.001
NODE_DIR = Path(__file__).resolve().parents[1] / "clients" / "node"


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapgateServer]:
    """One server for the whole module (local OCR and test keys), with the default limits:
    the libraries' ordinary use must not trip the free-task quotas. Tests compare balances
    before and after, so they do not depend on each other's spending."""
    data = tmp_path_factory.mktemp("client-libraries") / "data"
    server = CapgateServer(data).start()
    yield server
    server.stop()


def image(seed: int) -> tuple[str, bytes]:
    """A fresh captcha as base64 and as PNG bytes."""
    body, _ = captchas(seed=seed, n=1)[0]
    return body, base64.b64decode(body)


# --- capmonster_python (PyPI): CapMonster Cloud's Python client ------------------------------


def test_capmonster_python(gate: CapgateServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its host is a private class constant the constructor hands to httpx as base_url."""
    from capmonster_python import CapmonsterClient, ImageToTextTask, RecaptchaV2Task, TurnstileTask

    monkeypatch.setattr(CapmonsterClient, "_CapmonsterClient__BASE_URL", f"{gate.base}/capmonster")
    body, _ = image(7201)
    with CapmonsterClient(BOOTSTRAP_KEY, retry_delay=0.1) as client:
        before = client.get_balance()
        task_id = client.create_task(ImageToTextTask(body=body))
        assert isinstance(task_id, int) and task_id > 0
        text = client.join_task_result(task_id)["text"]
        assert isinstance(text, str) and text
        assert client.get_balance() == pytest.approx(before - IMAGE_PRICE)
        client.report_incorrect_image(task_id)
        assert client.get_balance() == pytest.approx(before)

        turnstile = client.solve(TurnstileTask(websiteURL=PAGE, websiteKey=TURNSTILE_KEY))
        assert turnstile["token"] == TURNSTILE_DUMMY_TOKEN
        recaptcha = RecaptchaV2Task(websiteURL=PAGE, websiteKey=RECAPTCHA_V2_TEST_KEY)
        recaptcha_id = client.create_task(recaptcha)
        assert client.join_task_result(recaptcha_id)["gRecaptchaResponse"] == RECAPTCHA_TEST_TOKEN
        client.report_incorrect_token(recaptcha_id)

        async def solve_async() -> dict[str, Any]:
            async with client:  # closes its httpx.AsyncClient
                solution: dict[str, Any] = await client.solve_async(recaptcha)
                return solution

        assert asyncio.run(solve_async())["gRecaptchaResponse"] == RECAPTCHA_TEST_TOKEN


# --- python3-capsolver (PyPI): a community CapSolver client ----------------------------------


@pytest.fixture
def capsolver_url(gate: CapgateServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Its solvers take `request_url` (urljoin'ed with the method: it needs the trailing
    slash); its Control class (balance, createTask, getTaskResult) ignores it and posts to
    the constant REQUEST_URL its two request modules import, which is patched there."""
    from python3_capsolver.core import aio_captcha_instrument, sio_captcha_instrument

    url = f"{gate.base}/capsolver/"
    monkeypatch.setattr(sio_captcha_instrument, "REQUEST_URL", url)
    monkeypatch.setattr(aio_captcha_instrument, "REQUEST_URL", url)
    return url


def capsolver_call(instance: Any, method: str, *args: Any) -> dict[str, Any]:
    """Call a python3-capsolver method, then close the requests session it made for the call
    (it never does: an unclosed socket is a ResourceWarning, an error here)."""
    try:
        result: dict[str, Any] = getattr(instance, method)(*args)
    finally:
        instance._captcha_handling_instrument.session.close()
    return result


def test_python3_capsolver(capsolver_url: str) -> None:
    from python3_capsolver.cloudflare import Cloudflare
    from python3_capsolver.control import Control
    from python3_capsolver.core.enum import CaptchaTypeEnm
    from python3_capsolver.image_to_text import ImageToText
    from python3_capsolver.recaptcha import ReCaptcha

    control = Control(api_key=BOOTSTRAP_KEY)
    before = capsolver_call(control, "get_balance")["balance"]
    body, _ = image(7202)
    solver = ImageToText(api_key=BOOTSTRAP_KEY, request_url=capsolver_url)
    read = capsolver_call(solver, "captcha_handler", {"body": body})
    # Answered inside createTask, as CapSolver does: no getTaskResult.
    assert read["errorId"] == 0 and read["status"] == "ready"
    assert isinstance(read["solution"]["text"], str) and read["solution"]["text"]
    assert capsolver_call(control, "get_balance")["balance"] == pytest.approx(before - IMAGE_PRICE)
    stored = capsolver_call(control, "get_task_result", read["taskId"])
    assert stored["status"] == "ready" and stored["solution"] == read["solution"]

    # Token tasks answer "idle" and are polled: sleep_time (default 5 s) is the wait before
    # each poll, and it gives up after 15 polls.
    turnstile = Cloudflare(api_key=BOOTSTRAP_KEY, request_url=capsolver_url, sleep_time=1)
    answer = capsolver_call(
        turnstile, "captcha_handler", {"websiteURL": PAGE, "websiteKey": TURNSTILE_KEY}
    )
    assert answer["status"] == "ready", answer
    assert answer["solution"]["token"] == TURNSTILE_DUMMY_TOKEN
    recaptcha = ReCaptcha(
        api_key=BOOTSTRAP_KEY,
        captcha_type=CaptchaTypeEnm.ReCaptchaV2TaskProxyLess,  # a str crashes it
        request_url=capsolver_url,
        sleep_time=1,
    )
    answer = capsolver_call(
        recaptcha, "captcha_handler", {"websiteURL": PAGE, "websiteKey": RECAPTCHA_V2_TEST_KEY}
    )
    assert answer["status"] == "ready", answer
    assert answer["solution"]["gRecaptchaResponse"] == RECAPTCHA_TEST_TOKEN
    # Control.create_task: the raw createTask answer.
    created = capsolver_call(
        control,
        "create_task",
        {"type": "HCaptchaTaskProxyLess", "websiteURL": PAGE, "websiteKey": HCAPTCHA_KEY},
    )
    assert created["errorId"] == 0 and created["taskId"]


def test_python3_capsolver_async(capsolver_url: str) -> None:
    """The aiohttp side: aio_captcha_handler and Control.aio_get_balance."""
    from python3_capsolver.control import Control
    from python3_capsolver.image_to_text import ImageToText

    body, _ = image(7205)

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        solver = ImageToText(api_key=BOOTSTRAP_KEY, request_url=capsolver_url)
        read: dict[str, Any] = await solver.aio_captcha_handler({"body": body})
        balance: dict[str, Any] = await Control(api_key=BOOTSTRAP_KEY).aio_get_balance()
        return read, balance

    read, balance = asyncio.run(run())
    assert read["status"] == "ready" and read["solution"]["text"]
    assert balance["errorId"] == 0 and balance["balance"] > 0


# --- python-anticaptcha (PyPI): a community Anti-Captcha client ------------------------------


def test_python_anticaptcha(gate: CapgateServer) -> None:
    """`host` and `use_ssl` are constructor options; its paths start with '/' (urljoin), so it
    reaches only the root."""
    from python_anticaptcha import (
        AnticaptchaClient,
        HCaptchaTaskProxyless,
        ImageToTextTask,
        RecaptchaV2TaskProxyless,
    )

    host = f"127.0.0.1:{gate.port}"
    _, png = image(7203)
    with AnticaptchaClient(BOOTSTRAP_KEY, host=host, use_ssl=False) as client:
        before = client.getBalance()
        job = client.create_task(ImageToTextTask(png))
        job.join(maximum_time=30, backoff=True)
        assert isinstance(job.get_captcha_text(), str) and job.get_captcha_text()
        assert client.getBalance() == pytest.approx(before - IMAGE_PRICE)
        assert job.report_incorrect_image() is True
        assert client.getBalance() == pytest.approx(before)

        job = client.create_task(RecaptchaV2TaskProxyless(PAGE, RECAPTCHA_V2_TEST_KEY))
        job.join(maximum_time=30, backoff=True)
        assert job.get_solution_response() == RECAPTCHA_TEST_TOKEN
        assert job.report_incorrect_recaptcha() is True
        job = client.create_task(HCaptchaTaskProxyless(PAGE, HCAPTCHA_KEY))
        job.join(maximum_time=30, backoff=True)
        assert job.get_solution_response() == HCAPTCHA_TOKEN


def test_python_anticaptcha_async(gate: CapgateServer) -> None:
    from python_anticaptcha import AsyncAnticaptchaClient, RecaptchaV2TaskProxyless

    async def solve() -> tuple[float, str]:
        host = f"127.0.0.1:{gate.port}"
        async with AsyncAnticaptchaClient(BOOTSTRAP_KEY, host=host, use_ssl=False) as client:
            balance = await client.getBalance()
            job = await client.create_task(RecaptchaV2TaskProxyless(PAGE, RECAPTCHA_V2_TEST_KEY))
            await job.join(maximum_time=30, backoff=True)
            return balance, job.get_solution_response()

    balance, token = asyncio.run(solve())
    assert balance > 0
    assert token == RECAPTCHA_TEST_TOKEN


# --- anycaptcha (PyPI): one async client for many services ----------------------------------


def anycaptcha_solver(service: Any, base_url: str) -> Any:
    """A Solver whose service posts to `base_url`: each service class has a BASE_URL it
    prefixes every path with, read from the instance, so one attribute points it anywhere.
    Its polling waits (5 to 20 s before the first poll) are settings, shortened here."""
    from anycaptcha import Solver

    solver = Solver(service, BOOTSTRAP_KEY)
    solver._service.BASE_URL = base_url
    for settings in solver._service.settings.values():
        settings.polling_delay = 0
        settings.polling_interval = 0.1
        settings.solution_timeout = 30
    return solver


@pytest.mark.parametrize(
    ("service", "prefix"),
    [("ANTI_CAPTCHA", ""), ("ANTI_CAPTCHA", "/anticaptcha"), ("TWOCAPTCHA", "")],
)
def test_anycaptcha_image_tokens_balance_and_report(
    gate: CapgateServer, service: str, prefix: str
) -> None:
    """Anti-Captcha's JSON API and 2Captcha's legacy one (json=1, action=get2)."""
    from anycaptcha import Service

    _, png = image(7204)

    async def run() -> None:
        async with anycaptcha_solver(Service[service], gate.base + prefix) as solver:
            before = await solver.get_balance()
            read = await solver.solve_image_captcha(png)
            assert isinstance(read.solution.text, str) and read.solution.text
            assert await solver.get_balance() == pytest.approx(before - IMAGE_PRICE)
            assert await read.report_bad(raise_exc=True) is True
            assert await solver.get_balance() == pytest.approx(before)
            recaptcha = await solver.solve_recaptcha_v2(RECAPTCHA_V2_TEST_KEY, PAGE)
            assert recaptcha.solution.token == RECAPTCHA_TEST_TOKEN
            hcaptcha = await solver.solve_hcaptcha(HCAPTCHA_KEY, PAGE)
            assert hcaptcha.solution.token == HCAPTCHA_TOKEN

    asyncio.run(run())


@pytest.mark.parametrize(
    ("service", "prefix"), [("CAPMONSTER", "/capmonster"), ("CAPSOLVER", "/capsolver")]
)
def test_anycaptcha_token_and_balance(gate: CapgateServer, service: str, prefix: str) -> None:
    """Its CapMonster and CapSolver services have reCAPTCHA (and hCaptcha) only: no image."""
    from anycaptcha import Service

    async def run() -> None:
        async with anycaptcha_solver(Service[service], gate.base + prefix) as solver:
            assert await solver.get_balance() > 0
            recaptcha = await solver.solve_recaptcha_v2(RECAPTCHA_V2_TEST_KEY, PAGE)
            assert recaptcha.solution.token == RECAPTCHA_TEST_TOKEN

    asyncio.run(run())


# --- npm libraries, run by Node.js ------------------------------------------------------------

NODE_LIBRARIES = {
    "2captcha-captcha-solver.cjs": "@2captcha/captcha-solver",
    "2captcha.cjs": "2captcha",
    "anticaptchaofficial.cjs": "@antiadmin/anticaptchaofficial",
    "capmonstercloud-client.cjs": "@zennolab_com/capmonstercloud-client",
}


def node_or_skip(package: str) -> str:
    """The node binary, once `package` is installed under tests/clients/node; otherwise skip,
    except in CI (CI=true), where these tests must run."""
    binary = shutil.which("node")
    if binary is None:
        reason = "node is not installed (scripts/test installs Debian's nodejs and npm)"
    elif not (NODE_DIR / "node_modules" / package / "package.json").is_file():
        reason = f"{package} is not installed: npm install --prefix {NODE_DIR}"
    else:
        return binary
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, and CI must test the npm client libraries")
    pytest.skip(reason)


@pytest.mark.parametrize("script", sorted(NODE_LIBRARIES))
def test_npm_library(gate: CapgateServer, script: str) -> None:
    node = node_or_skip(NODE_LIBRARIES[script])
    body, _ = image(7300 + sorted(NODE_LIBRARIES).index(script))
    env = {**os.environ, "CAPGATE_BASE": gate.base, "CAPGATE_KEY": BOOTSTRAP_KEY}
    env["CAPGATE_IMAGE"] = body
    done = subprocess.run(
        [node, str(NODE_DIR / script)],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stderr}\n{done.stdout}"
    found = json.loads(done.stdout.strip().splitlines()[-1])

    assert isinstance(found["imageText"], str) and found["imageText"]
    before = found["balanceBefore"]
    assert found["balanceAfterImage"] == pytest.approx(before - IMAGE_PRICE)
    if "balanceAfterReport" in found:  # every library here but capmonstercloud-client reports
        assert found["balanceAfterReport"] == pytest.approx(before)
    assert found["turnstile"] == TURNSTILE_DUMMY_TOKEN
    assert found["recaptcha"] == RECAPTCHA_TEST_TOKEN
    assert found["hcaptcha"] == HCAPTCHA_TOKEN
    if script == "2captcha-captcha-solver.cjs":
        assert found["badReport"] == "OK_REPORT_RECORDED"
        assert found["goodReport"] == "OK_REPORT_RECORDED"
    if script == "anticaptchaofficial.cjs":
        assert found["imageReport"] is found["recaptchaReport"] is found["hcaptchaReport"] is True
        assert isinstance(found["imageId"], int)
        assert found["turnstileUserAgent"]  # the session keeps solution.userAgent
    if script == "capmonstercloud-client.cjs":
        # With the library's own timeouts (first poll at 350 ms, give up at 10 s).
        assert found["imageTextDefaultTimeouts"]["text"]
