"""CapMonster's recognizingThreshold, in the task or as a key suffix, against real servers:
a local answer less sure than asked is ERROR_CAPTCHA_UNSOLVABLE and costs nothing."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.support import BOOTSTRAP_KEY, CapgateServer, ServerFactory, captchas, image_task
from tests.system.test_providers import FaultProvider, broken, gateway

pytestmark = pytest.mark.system

PRICE = 0.001


# A set-B captcha the shipped model reads right, calibrated about 0.98 sure.
CLEAR, CLEAR_TEXT = captchas(seed=15003, n=1)[0]


def buried() -> str:
    """CLEAR under heavy seeded noise, base64: the model reads letters into it (today
    `jUyt`), with next to no confidence (0.03)."""
    image = Image.open(io.BytesIO(base64.b64decode(CLEAR))).convert("L")
    pixels = np.asarray(image, dtype=np.float64)
    noisy = pixels + np.random.default_rng(0).normal(0, 120, pixels.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def create(server: CapgateServer, task: dict[str, Any], key: str = BOOTSTRAP_KEY) -> Any:
    return server.post("/createTask", {"clientKey": key, "task": task})


def solve(server: CapgateServer, task: dict[str, Any], key: str = BOOTSTRAP_KEY) -> Any:
    created = create(server, task, key)
    assert created["errorId"] == 0, created
    return server.wait_final(key, created["taskId"])


def balance(server: CapgateServer, key: str = BOOTSTRAP_KEY) -> float:
    answer = server.post("/getBalance", {"clientKey": key})
    assert answer["errorId"] == 0, answer
    value: float = answer["balance"]
    return value


def test_an_answer_less_sure_than_the_threshold_is_unsolvable_and_free(
    server: CapgateServer,
) -> None:
    result = solve(server, {**image_task(buried()), "recognizingThreshold": 90})
    assert result["errorCode"] == "ERROR_CAPTCHA_UNSOLVABLE", result
    assert "recognizingThreshold" in result["errorDescription"]
    assert balance(server) == pytest.approx(10)
    # The same image with no bar to clear is answered, and charged.
    for extra in ({"recognizingThreshold": 0}, {}):
        result = solve(server, {**image_task(buried()), **extra})
        assert result["status"] == "ready" and result["solution"]["text"], result
    # A clear captcha clears a high bar, and is charged.
    result = solve(server, {**image_task(CLEAR), "recognizingThreshold": 50})
    assert result["solution"]["text"] == CLEAR_TEXT, result
    assert balance(server) == pytest.approx(10 - 3 * PRICE)


@pytest.mark.parametrize("threshold", [150, -1, "abc", True, [90], {"v": 1}, "nan"])
def test_a_threshold_that_is_no_percentage_is_refused_and_nothing_stored(
    server: CapgateServer, threshold: Any
) -> None:
    before = server.db_counts()
    answer = create(server, {**image_task(CLEAR), "recognizingThreshold": threshold})
    assert answer["errorId"] != 0, answer
    assert answer["errorCode"] == "ERROR_BAD_PARAMETERS", answer
    assert "recognizingThreshold" in answer["errorDescription"]
    assert server.db_counts() == before


def test_a_numeric_string_threshold_counts(server: CapgateServer) -> None:
    result = solve(server, {**image_task(buried()), "recognizingThreshold": "90"})
    assert result["errorCode"] == "ERROR_CAPTCHA_UNSOLVABLE", result


def test_the_key_suffix_sets_the_threshold_of_the_tasks_it_creates(
    server: CapgateServer,
) -> None:
    suffixed = f"{BOOTSTRAP_KEY}__RecognizingThreshold_90"
    assert balance(server, suffixed) == pytest.approx(10)
    result = solve(server, image_task(buried()), suffixed)
    assert result["errorCode"] == "ERROR_CAPTCHA_UNSOLVABLE", result
    # The task's own field wins over the key's.
    result = solve(server, {**image_task(buried()), "recognizingThreshold": 0}, suffixed)
    assert result["status"] == "ready", result
    result = solve(server, image_task(CLEAR), f"{BOOTSTRAP_KEY}__recognizingthreshold_50")
    assert result["solution"]["text"] == CLEAR_TEXT, result
    # Module names and unknown options are ignored; a bad threshold is refused by name.
    result = solve(server, image_task(buried()), f"{BOOTSTRAP_KEY}__solvemedia__whatever_1")
    assert result["status"] == "ready", result
    before = server.db_counts()
    answer = create(server, image_task(CLEAR), f"{BOOTSTRAP_KEY}__recognizingthreshold_abc")
    assert answer["errorCode"] == "ERROR_BAD_PARAMETERS", answer
    assert server.db_counts() == before
    assert balance(server) == pytest.approx(10 - 3 * PRICE)
    # A suffix never makes a key of a wrong secret.
    answer = server.post("/getBalance", {"clientKey": "f" * 32 + "__recognizingthreshold_90"})
    assert answer["errorCode"] == "ERROR_KEY_DOES_NOT_EXIST", answer


def test_the_key_suffix_works_on_2captchas_legacy_api(server: CapgateServer) -> None:
    key = f"{BOOTSTRAP_KEY}__recognizingthreshold_90"
    sent = server.http.post("/in.php", data={"key": key, "method": "base64", "body": buried()})
    assert sent.text.startswith("OK|"), sent.text
    deadline = time.monotonic() + 30
    while True:
        got = server.http.get("/res.php", params={"key": key, "action": "get", "id": sent.text[3:]})
        if got.text != "CAPCHA_NOT_READY" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert got.text == "ERROR_CAPTCHA_UNSOLVABLE"
    assert balance(server) == pytest.approx(10)


@pytest.fixture(scope="module")
def fault_process() -> Iterator[FaultProvider]:
    provider = FaultProvider()
    yield provider
    provider.stop()


def test_an_upstream_answer_stands_and_a_failed_upstream_leaves_the_task_unsolvable(
    start_server: ServerFactory, tmp_path: Path, fault_process: FaultProvider
) -> None:
    fault_process.reset()
    server = gateway(start_server, tmp_path, [broken(fault_process)], ocr=True)
    task = {**image_task(buried()), "recognizingThreshold": 90}
    result = solve(server, task)
    # The local answer was refused; the provider's, which says no confidence, stands.
    assert (result["solution"]["text"], result["solveCount"]) == ("UPSTREAM", 2), result
    assert balance(server) == pytest.approx(10 - PRICE)
    fault_process.mode("error")
    result = solve(server, task)
    assert result["errorCode"] == "ERROR_CAPTCHA_UNSOLVABLE", result
    assert balance(server) == pytest.approx(10 - PRICE)
