"""`ocr_engines` against real servers: a server that runs ddddocr beside capgate's model
answers image tasks, says at start which engines it runs, and refuses an unknown one.

The tests that run ddddocr are skipped where it is not installed, except in CI (CI=true),
where its absence fails.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from capgate.ocr import synth
from tests.support import BOOTSTRAP_KEY, CapgateServer, ServerFactory, captchas, image_task

pytestmark = pytest.mark.system


@pytest.fixture
def ddddocr_installed() -> None:
    from capgate.ocr.ddddocr_engine import available

    if not available():
        if os.environ.get("CI") == "true":
            pytest.fail("ddddocr is not installed, and CI must test the ddddocr engine")
        pytest.skip("ddddocr is not installed (pip install 'capgate[ddddocr]')")


def solve(server: CapgateServer, task: dict[str, Any]) -> Any:
    created = server.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": task})
    assert created["errorId"] == 0, created
    return server.wait_final(BOOTSTRAP_KEY, created["taskId"])


@pytest.mark.usefixtures("ddddocr_installed")
def test_a_server_with_ddddocr_in_its_chain_answers_image_tasks(
    start_server: ServerFactory,
) -> None:
    """The server answers what the chain answers in this process: capgate's sure answers
    alone, the rest weighed with ddddocr's (seed 16,006's fourth captcha: capgate reads
    "A078", under the chain's threshold, and ddddocr agrees)."""
    from capgate.ocr.chain import build

    server = start_server(ocr_engines="capgate,ddddocr", log_level="info")
    log = server.log.read_text()
    assert "local OCR engines: capgate (the shipped model) -> ddddocr" in log, log
    chain = build(("capgate", "ddddocr"))
    engines = set()
    for body, _ in captchas(seed=16_006, n=5):
        expected = chain.read(base64.b64decode(body))
        engines.add(expected.engine)
        result = solve(server, image_task(body))
        assert result["status"] == "ready", result
        assert result["solution"]["text"] == expected.text, (result, expected.engine)
    assert "capgate" in engines and engines - {"capgate"}, engines
    # A digits-only task of four: the chain answers within the task's hints.
    png, _ = synth.generate(16_002, 1, "0123456789", 4, 4)[0]
    task = {**image_task(base64.b64encode(png).decode()), "numeric": 1, "minLength": 4}
    result = solve(server, {**task, "maxLength": 4})
    assert result["status"] == "ready", result
    assert len(result["solution"]["text"]) == 4 and result["solution"]["text"].isdigit()


@pytest.mark.usefixtures("ddddocr_installed")
def test_a_server_with_ddddocr_alone_answers_what_ddddocr_reads(
    start_server: ServerFactory,
) -> None:
    from capgate.ocr.ddddocr_engine import DdddocrEngine

    server = start_server(ocr_engines="ddddocr", log_level="info")
    assert "local OCR engines: ddddocr" in server.log.read_text()
    engine = DdddocrEngine()
    for png, _ in synth.generate(16_003, 3, synth.CHARSET_A, 4, 6):
        expected = engine.read(png)
        result = solve(server, image_task(base64.b64encode(png).decode()))
        if not expected.text:
            assert result["errorCode"] == "ERROR_CAPTCHA_UNSOLVABLE", result
            continue
        assert result["status"] == "ready", result
        assert result["solution"]["text"] == expected.text, (result, expected)


def test_an_unknown_engine_stops_the_server_at_start(tmp_path: Path) -> None:
    server = CapgateServer(tmp_path / "data", ocr_engines="capgate,tesseract")
    try:
        with pytest.raises(RuntimeError, match="unknown engine 'tesseract'"):
            server.start()
    finally:
        server.stop()
