"""The Python SDK (capgate.client) against a real capgate process."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from capgate.client import (
    AsyncClient,
    AuthError,
    BadRequestError,
    BalanceError,
    CaptchaError,
    Client,
    ImageToText,
    SolveTimeoutError,
    TemporaryError,
    TokenTask,
    Turnstile,
)
from tests.support import (
    BOOTSTRAP_KEY,
    DIALECT_PATHS,
    CapgateServer,
    ServerFactory,
    captchas,
    free_port,
    run_cli,
)

pytestmark = pytest.mark.system


def test_solve_an_image_and_a_test_key_token(server: CapgateServer) -> None:
    body, _ = captchas(9101, 1)[0]
    with Client(server.base, BOOTSTRAP_KEY) as client:
        solution = client.solve(ImageToText(base64.b64decode(body)))
        assert solution.value == solution.text and solution.text
        assert solution.cost == pytest.approx(0.001) and solution.solve_count == 1
        token = client.solve(Turnstile("https://example.com/", "1x00000000000000000000AA"))
        assert token.value == "XXXX.DUMMY.TOKEN.XXXX"
        assert client.balance() == pytest.approx(9.999)
        client.report(solution.task_id, correct=False)
        assert client.balance() == 10.0


def test_numeric_option_and_polling_without_long_poll(server: CapgateServer) -> None:
    body, _ = captchas(9102, 1)[0]
    with Client(server.base, BOOTSTRAP_KEY, long_poll=False, poll_interval=0.05) as client:
        solution = client.solve(ImageToText(base64.b64decode(body), numeric=1))
        assert solution.value.isdigit()


def test_errors_say_whether_a_retry_helps(
    server: CapgateServer, start_server: ServerFactory, tmp_path: Path
) -> None:
    body, _ = captchas(9103, 1)[0]
    image = ImageToText(base64.b64decode(body))
    with Client(server.base, "f" * 32) as stranger, pytest.raises(AuthError) as caught:
        stranger.solve(image)
    assert not caught.value.retryable
    broke = run_cli("keys", "create", "--data", str(server.data)).stdout.strip()
    with Client(server.base, broke) as client, pytest.raises(BalanceError):
        client.solve(image)
    with Client(server.base, BOOTSTRAP_KEY) as client, pytest.raises(BadRequestError):
        client.solve(TokenTask("MindReadingTask", "https://example.com/", "k"))
    # Its own data directory: a server on the same store would solve the task.
    idle = start_server(tmp_path / "idle", local_solving="false")
    with Client(idle.base, BOOTSTRAP_KEY) as client:
        with pytest.raises(SolveTimeoutError) as timed_out:
            client.solve(image, timeout=0.5)
        assert timed_out.value.retryable
    with Client(f"http://127.0.0.1:{free_port()}", BOOTSTRAP_KEY) as nowhere:
        with pytest.raises(TemporaryError) as unreachable:
            nowhere.balance()
        assert unreachable.value.retryable


def test_async_client_solves_concurrently(server: CapgateServer) -> None:
    samples = captchas(9104, 4)

    async def solve_all() -> list[str]:
        async with AsyncClient(server.base, BOOTSTRAP_KEY) as client:
            tasks = [client.solve(ImageToText(base64.b64decode(b))) for b, _ in samples]
            return [s.value for s in await asyncio.gather(*tasks)]

    answers = asyncio.run(solve_all())
    assert len(answers) == 4 and all(answers)
    assert sum(a == label for a, (_, label) in zip(answers, samples, strict=True)) >= 3


@pytest.mark.parametrize("dialect", sorted(DIALECT_PATHS))
def test_every_dialect_solves_balances_and_reports(server: CapgateServer, dialect: str) -> None:
    from capgate.client import RecaptchaV2
    from capgate.solvers.testkeys import RECAPTCHA_TEST_TOKEN, RECAPTCHA_V2_TEST_KEY

    body, _ = captchas(9200 + len(dialect), 1)[0]
    base = server.base + DIALECT_PATHS[dialect]
    with Client(base, BOOTSTRAP_KEY, dialect=dialect) as client:
        image = client.solve(ImageToText(base64.b64decode(body)))
        assert image.text and image.value == image.text
        token = client.solve(RecaptchaV2("https://example.com/", RECAPTCHA_V2_TEST_KEY))
        assert token.value == RECAPTCHA_TEST_TOKEN
        # The ids come back in the dialect's own form.
        assert isinstance(image.task_id, int) is (
            dialect in ("anticaptcha", "2captcha", "capmonster")
        )
        if dialect == "ucaptcha":
            with pytest.raises(BadRequestError):
                client.balance()
            return
        assert client.balance() == pytest.approx(9.999)
        if dialect == "anysolver":
            with pytest.raises(BadRequestError):
                client.report(image.task_id, correct=False)
            return
        client.report_incorrect(image.task_id)
        assert client.balance() == pytest.approx(10.0)  # refunded once


@pytest.mark.parametrize("dialect", ["capsolver", "ucaptcha", "vast"])
def test_every_dialect_raises_the_right_errors(server: CapgateServer, dialect: str) -> None:
    base = server.base + DIALECT_PATHS[dialect]
    with Client(base, "f" * 32, dialect=dialect) as stranger, pytest.raises(AuthError):
        stranger.solve(Turnstile("https://example.com/", "1x00000000000000000000AA"))
    with Client(base, BOOTSTRAP_KEY, dialect=dialect) as client:
        unknown = "01234567-89ab-4def-8123-456789abcdef"
        with pytest.raises(CaptchaError) as caught:
            client.result(unknown)
        assert not caught.value.retryable


def test_an_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown dialect 'deathbycaptcha'"):
        Client("http://127.0.0.1:9", "k", dialect="deathbycaptcha")
