"""Upstream providers: every adapter against a second real capgate serving that vendor's
dialect, the failure paths against a fault-injecting provider process, and failover,
the circuit breaker, confidence routing and report forwarding through a gateway process."""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from capgate.config import ProviderSettings
from capgate.model import ErrorCode, TaskStatus, TaskType
from capgate.ocr.engine import OcrEngine
from capgate.providers.upstream import UpstreamProvider
from capgate.solvers.base import SolveError
from capgate.solvers.testkeys import RECAPTCHA_TEST_TOKEN, RECAPTCHA_V2_TEST_KEY
from tests.support import (
    BOOTSTRAP_KEY,
    DIALECT_PATHS,
    CapgateServer,
    ProviderProcess,
    ServerFactory,
    captchas,
    image_task,
    make_task,
)

pytestmark = pytest.mark.system

FAULT_KEY = "fault-provider-key"
PREFIXES = DIALECT_PATHS  # where the upstream capgate serves each kind
REPORTS = {"anticaptcha", "2captcha", "capmonster", "capsolver"}


class FaultProvider(ProviderProcess):
    """tests/fault_provider.py in its own process."""

    def __init__(self) -> None:
        super().__init__("fault_provider.py", FAULT_KEY)

    def mode(self, mode: str) -> None:
        httpx.post(f"{self.url}/_mode", json={"mode": mode}).raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_reset").raise_for_status()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapgateServer]:
    """A second capgate with local OCR and test keys: the healthy upstream provider."""
    server = CapgateServer(tmp_path_factory.mktemp("upstream")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fault_process() -> Iterator[FaultProvider]:
    provider = FaultProvider()
    yield provider
    provider.stop()


@pytest.fixture
def fault(fault_process: FaultProvider) -> FaultProvider:
    fault_process.reset()
    return fault_process


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def adapter(
    request: pytest.FixtureRequest, upstream: CapgateServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[UpstreamProvider]:
    kind: str = request.param
    monkeypatch.setenv("CAPGATE_TEST_UPSTREAM_KEY", BOOTSTRAP_KEY)
    provider = UpstreamProvider(
        ProviderSettings(
            name=kind,
            kind=kind,
            url=upstream.base + PREFIXES[kind],
            key_env="CAPGATE_TEST_UPSTREAM_KEY",
            first_wait_seconds=0.02,
            poll_interval_seconds=0.05,
        )
    )
    await provider.start()
    yield provider
    await provider.stop()


def readable_captcha(seed: int) -> tuple[bytes, str]:
    """A fresh captcha that capgate's model reads right and surely (so whichever local
    engines the upstream runs answer it the same), and its label; the first such from
    `seed` on, so every run sends the same one."""
    engine = OcrEngine()
    for attempt in range(seed, seed + 50):
        body, label = captchas(attempt, 1)[0]
        png = base64.b64decode(body)
        read = engine.read(png)
        if read.text == label and read.confidence >= 0.95:
            return png, label
    raise AssertionError(f"no surely read captcha among seeds {seed}..{seed + 49}")


def balance(server: CapgateServer) -> float:
    answer = server.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})
    value: float = answer["balance"]
    return value


# --- each adapter against a real capgate speaking its vendor's dialect -----------------


@pytest.mark.anyio
@pytest.mark.parametrize("adapter", sorted(PREFIXES), indirect=True)
async def test_adapter_solves_balances_and_reports(
    adapter: UpstreamProvider, upstream: CapgateServer
) -> None:
    token_task = make_task(
        TaskStatus.QUEUED,
        TaskType.RECAPTCHA_V2,
        params={"websiteURL": "https://example.test", "websiteKey": RECAPTCHA_V2_TEST_KEY},
    )
    solution = await adapter.solve(token_task)
    assert solution.token == RECAPTCHA_TEST_TOKEN
    assert solution.upstream_id

    png, expected = readable_captcha(zlib.crc32(adapter.name.encode()) % 1000)
    before = balance(upstream)
    image = make_task(TaskStatus.QUEUED, TaskType.IMAGE_TO_TEXT, body=png)
    solution = await adapter.solve(image)
    assert solution.text == expected
    after = balance(upstream)
    assert after == pytest.approx(before - 0.001)

    if adapter.kind.rest:
        assert await adapter.balance() is None
    else:
        assert await adapter.balance() == pytest.approx(after)

    answered = make_task(
        TaskStatus.READY, TaskType.IMAGE_TO_TEXT, solution=solution, solver=adapter.name
    )
    reported = await adapter.report_incorrect(answered)
    assert reported is (adapter.name in REPORTS)
    # A forwarded report refunds the task at the upstream.
    refund = 0.001 if reported else 0.0
    assert balance(upstream) == pytest.approx(after + refund)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("mode", "code", "its_fault"),
    [
        ("error", ErrorCode.INTERNAL, True),
        ("http500", ErrorCode.INTERNAL, True),
        ("drop", ErrorCode.INTERNAL, True),
        ("unsolvable", ErrorCode.CAPTCHA_UNSOLVABLE, False),
    ],
)
async def test_adapter_failures(
    fault: FaultProvider,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    code: ErrorCode,
    its_fault: bool,
) -> None:
    monkeypatch.setenv("CAPGATE_TEST_FAULT_KEY", FAULT_KEY)
    provider = UpstreamProvider(
        ProviderSettings(
            name="fault",
            kind="anticaptcha",
            url=fault.url,
            key_env="CAPGATE_TEST_FAULT_KEY",
            first_wait_seconds=0.01,
            poll_interval_seconds=0.01,
        )
    )
    await provider.start()
    fault.mode(mode)
    try:
        with pytest.raises(SolveError) as raised:
            await provider.solve(make_task(TaskStatus.QUEUED, TaskType.IMAGE_TO_TEXT, body=b"x"))
    finally:
        await provider.stop()
    assert raised.value.code is code
    assert raised.value.retry is its_fault
    assert FAULT_KEY not in raised.value.description
    assert fault.stats()["wrong_keys"] == 0


# --- through a gateway: failover, breaker, confidence, reports, policies ---------------


def gateway(
    start_server: ServerFactory,
    tmp_path: Path,
    providers: list[dict[str, Any]],
    *,
    ocr: bool = False,
    **settings: str,
) -> CapgateServer:
    """A capgate whose solvers are the given providers (and local OCR if asked)."""
    lines: list[str] = []
    for provider in providers:
        lines.append("[[providers]]")
        for name, value in provider.items():
            if name == "prices":
                prices = ", ".join(f'{t} = "{p}"' for t, p in value.items())
                lines.append(f"prices = {{ {prices} }}")
            else:
                lines.append(f"{name} = {json.dumps(value)}")
        lines += ["first_wait_seconds = 0.02", "poll_interval_seconds = 0.05"]
    config = tmp_path / "gateway.toml"
    config.write_text("\n".join(lines) + "\n")
    return start_server(
        tmp_path / "gateway",
        "--config",
        str(config),
        ocr="true" if ocr else "false",
        test_keys="false",
        upstream_key=BOOTSTRAP_KEY,
        fault_key=FAULT_KEY,
        **settings,
    )


def healthy(upstream: CapgateServer, **extra: Any) -> dict[str, Any]:
    return {
        "name": "healthy",
        "kind": "2captcha",
        "url": upstream.base + "/2captcha",
        "key_env": "CAPGATE_UPSTREAM_KEY",
        **extra,
    }


def broken(fault: FaultProvider, **extra: Any) -> dict[str, Any]:
    return {
        "name": "fault",
        "kind": "anticaptcha",
        "url": fault.url,
        "key_env": "CAPGATE_FAULT_KEY",
        **extra,
    }


def create(server: CapgateServer, png: bytes) -> int:
    answer = server.post(
        "/createTask",
        {"clientKey": BOOTSTRAP_KEY, "task": image_task(base64.b64encode(png).decode())},
    )
    assert answer["errorId"] == 0, answer
    task_id: int = answer["taskId"]
    return task_id


def metric(server: CapgateServer, line_start: str) -> float:
    for line in server.http.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {line_start}")


def test_a_task_fails_over_from_a_broken_provider_and_is_charged_once(
    start_server: ServerFactory, tmp_path: Path, upstream: CapgateServer, fault: FaultProvider
) -> None:
    fault.mode("error")
    server = gateway(start_server, tmp_path, [broken(fault), healthy(upstream)])
    png, expected = readable_captcha(11)
    upstream_before = balance(upstream)
    result = server.wait_final(BOOTSTRAP_KEY, create(server, png))
    assert result["status"] == "ready", result
    assert result["solution"]["text"] == expected
    assert result["solveCount"] == 2
    assert fault.stats()["creates"] == 1
    # The client pays once for the answer it got; the healthy upstream charged once.
    assert balance(server) == pytest.approx(10 - 0.001)
    assert balance(upstream) == pytest.approx(upstream_before - 0.001)
    assert metric(server, 'capgate_solver_attempts_total{solver="fault",outcome="failed"}') == 1


def test_a_hanging_provider_times_out_and_the_task_moves_on(
    start_server: ServerFactory, tmp_path: Path, upstream: CapgateServer, fault: FaultProvider
) -> None:
    fault.mode("hang")
    server = gateway(
        start_server, tmp_path, [broken(fault, timeout_seconds=1.0), healthy(upstream)]
    )
    png, expected = readable_captcha(12)
    result = server.wait_final(BOOTSTRAP_KEY, create(server, png))
    assert result["status"] == "ready", result
    assert result["solution"]["text"] == expected
    assert result["solveCount"] == 2


def test_every_provider_failing_fails_the_task_and_refunds_it(
    start_server: ServerFactory, tmp_path: Path, fault: FaultProvider
) -> None:
    fault.mode("unsolvable")
    server = gateway(start_server, tmp_path, [broken(fault)])
    png, _ = readable_captcha(13)
    result = server.wait_final(BOOTSTRAP_KEY, create(server, png))
    assert result["errorCode"] == "ERROR_CAPTCHA_UNSOLVABLE", result
    assert "fault" in result["errorDescription"]
    assert balance(server) == pytest.approx(10)


def test_the_circuit_breaker_takes_a_failing_provider_out_and_probes_it_back(
    start_server: ServerFactory, tmp_path: Path, upstream: CapgateServer, fault: FaultProvider
) -> None:
    fault.mode("error")
    server = gateway(
        start_server,
        tmp_path,
        [broken(fault), healthy(upstream)],
        breaker_failures="2",
        breaker_cooldown_seconds="1.5",
    )
    for seed in (21, 22, 23):
        png, expected = readable_captcha(seed)
        result = server.wait_final(BOOTSTRAP_KEY, create(server, png))
        assert result["solution"]["text"] == expected
    # Two failures opened the breaker: the third task went straight to the healthy one.
    assert fault.stats()["creates"] == 2
    assert metric(server, 'capgate_solver_up{solver="fault"}') == 0
    fault.mode("ok")
    time.sleep(1.6)
    png, _ = readable_captcha(24)
    result = server.wait_final(BOOTSTRAP_KEY, create(server, png))
    assert result["solution"]["text"] == "UPSTREAM"  # the probe went to the healed provider
    assert result["solveCount"] == 1
    assert metric(server, 'capgate_solver_up{solver="fault"}') == 1


def test_an_unsure_local_answer_goes_upstream_and_stands_if_upstream_fails(
    start_server: ServerFactory, tmp_path: Path, fault: FaultProvider
) -> None:
    # No answer is this sure, so every local answer is checked upstream.
    server = gateway(start_server, tmp_path, [broken(fault)], ocr=True, ocr_min_confidence="1.01")
    png, expected = readable_captcha(31)
    result = server.wait_final(BOOTSTRAP_KEY, create(server, png))
    assert (result["solution"]["text"], result["solveCount"]) == ("UPSTREAM", 2)
    fault.mode("error")
    result = server.wait_final(BOOTSTRAP_KEY, create(server, png))
    assert (result["solution"]["text"], result["solveCount"]) == (expected, 2)


def test_a_wrong_answer_reported_is_refunded_once_and_forwarded(
    start_server: ServerFactory, tmp_path: Path, fault: FaultProvider
) -> None:
    fault.mode("wrong")
    server = gateway(start_server, tmp_path, [broken(fault)])
    png, _ = readable_captcha(41)
    task_id = create(server, png)
    assert server.wait_final(BOOTSTRAP_KEY, task_id)["solution"]["text"] == "WRONG"
    assert balance(server) == pytest.approx(10 - 0.001)
    for _ in range(2):
        answer = server.post(
            "/reportIncorrectImageCaptcha", {"clientKey": BOOTSTRAP_KEY, "taskId": task_id}
        )
        assert answer["errorId"] == 0
    assert balance(server) == pytest.approx(10)
    deadline = time.monotonic() + 10
    while not fault.stats()["reports"] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert len(fault.stats()["reports"]) == 1


def test_a_task_may_name_its_provider_and_an_unknown_one_is_refused(
    start_server: ServerFactory, tmp_path: Path, upstream: CapgateServer, fault: FaultProvider
) -> None:
    server = gateway(start_server, tmp_path, [broken(fault), healthy(upstream)])
    png, expected = readable_captcha(51)
    body = base64.b64encode(png).decode()
    task = {"type": "ImageToTextTask", "body": body}
    created = server.post(
        "/anysolver/createTask", {"clientKey": BOOTSTRAP_KEY, "task": task, "provider": "healthy"}
    )
    assert created["errorId"] == 0, created
    result = server.wait_final(BOOTSTRAP_KEY, created["taskId"])
    assert result["solution"]["text"] == expected
    assert fault.stats()["creates"] == 0
    stored = server.db_counts()
    refused = server.post(
        "/anysolver/createTask", {"clientKey": BOOTSTRAP_KEY, "task": task, "provider": "nope"}
    )
    assert refused["errorId"] == 1
    assert "nope" in refused["errorDescription"]
    assert server.db_counts() == stored


def test_the_cheapest_policy_prefers_the_lower_price(
    start_server: ServerFactory, tmp_path: Path, upstream: CapgateServer, fault: FaultProvider
) -> None:
    server = gateway(
        start_server,
        tmp_path,
        [
            broken(fault, prices={"ImageToText": "0.002"}),
            healthy(upstream, prices={"ImageToText": "0.0005"}),
        ],
        routing_policy="cheapest",
    )
    png, expected = readable_captcha(61)
    result = server.wait_final(BOOTSTRAP_KEY, create(server, png))
    assert result["solution"]["text"] == expected
    assert fault.stats()["creates"] == 0
    assert metric(server, 'capgate_solver_spend_total{solver="healthy"}') == pytest.approx(0.0005)


def test_upstream_answers_are_kept_as_labels_unless_reported_wrong(
    start_server: ServerFactory, tmp_path: Path, upstream: CapgateServer
) -> None:
    from capgate.ocr.dataset import load_labelled

    server = gateway(start_server, tmp_path, [healthy(upstream)], keep_upstream_labels="true")
    labels = tmp_path / "gateway" / "labels"
    kept_png, kept_text = readable_captcha(51)
    wrong_png, _ = readable_captcha(52)
    kept, wrong = create(server, kept_png), create(server, wrong_png)
    for task_id in (kept, wrong):
        assert server.wait_final(BOOTSTRAP_KEY, task_id)["status"] == "ready"
    deadline = time.monotonic() + 10
    while len(list(labels.glob("*.png"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (labels / f"{kept}.png").read_bytes() == kept_png
    answer = server.post(
        "/reportIncorrectImageCaptcha", {"clientKey": BOOTSTRAP_KEY, "taskId": wrong}
    )
    assert answer["errorId"] == 0
    # What `capgate ocr train --data DATA/labels` reads: only the answer nobody disputed.
    (sample,) = load_labelled(labels)
    assert (sample.name, sample.image, sample.label) == (f"{kept}.png", kept_png, kept_text)
    assert sorted(p.name for p in labels.iterdir()) == [f"{kept}.png", f"{kept}.txt"]
