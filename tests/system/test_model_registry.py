"""A model installed while servers run reaches every node without a restart (issue 16:
`capgate ocr install`, the store's model registry, docs/learning.md).

The installed model is the shipped network with a calibration that makes every answer
10% sure: a task whose recognizingThreshold is 50 is answered with the shipped model and
refused with the installed one, so a client sees which model its node reads with.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from capgate.ocr.engine import DEFAULT_MODEL
from tests.support import BOOTSTRAP_KEY, CapgateServer, ServerFactory, captchas, run_cli


def unsure_model(folder: Path) -> Path:
    """The shipped model, calibrated so that it is 10% sure of everything."""
    folder.mkdir()
    shutil.copyfile(DEFAULT_MODEL, folder / "model.onnx")
    spec = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    spec["calibration"]["calibrated"] = [0.1 for _ in spec["calibration"]["calibrated"]]
    (folder / "model.json").write_text(json.dumps(spec))
    return folder


def outcome(server: CapgateServer, seed: int) -> str:
    """'ready' or the error code of a task that asks for answers at least 50% sure."""
    body, _ = captchas(seed, 1)[0]
    task = {"type": "ImageToTextTask", "body": body, "recognizingThreshold": 50}
    created = server.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": task})
    answer = server.wait_final(BOOTSTRAP_KEY, created["taskId"])
    return str(answer.get("status") if answer["errorId"] == 0 else answer["errorCode"])


def serves_installed(server: CapgateServer) -> bool:
    metrics = server.http.get("/metrics").text
    return 'capgate_site_model_version{site="*"}' in metrics


def wait_until(check: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "it did not happen in time"
        time.sleep(0.1)


def test_ocr_install_reaches_a_running_server_and_shipped_goes_back(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server(ocr_engines="capgate", model_poll_seconds="0.2", log_level="info")
    assert outcome(server, 1) == "ready"
    model = unsure_model(tmp_path / "unsure")

    done = run_cli("ocr", "install", str(model), "--data", str(server.data))
    assert done.returncode == 0, done.stderr
    assert "version 1 of the generalist model" in done.stdout
    wait_until(lambda: serves_installed(server))
    assert outcome(server, 2) == "ERROR_CAPTCHA_UNSOLVABLE"
    doctor = run_cli("doctor", "--data", str(server.data))
    assert "generalist model version 1 of the registry" in doctor.stdout, doctor.stdout
    assert "the generalist model: serving version 1 of the registry" in server.log.read_text()

    back = run_cli("ocr", "install", "--shipped", "--data", str(server.data))
    assert back.returncode == 0, back.stderr
    wait_until(lambda: not serves_installed(server))
    assert outcome(server, 3) == "ready"
    assert "version 1 of the registry no longer serves" in server.log.read_text()


def test_a_bad_model_is_told_in_one_line_and_changes_nothing(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server(ocr_engines="capgate")
    (tmp_path / "empty").mkdir()
    done = run_cli("ocr", "install", str(tmp_path / "empty"), "--data", str(server.data))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "holds no model.onnx" in done.stderr
    assert not serves_installed(server)
    assert outcome(server, 4) == "ready"


def test_every_node_of_a_redis_deployment_serves_the_installed_model(
    start_server: ServerFactory, redis_url: str, tmp_path: Path
) -> None:
    nodes = [
        start_server(
            tmp_path / name, store=redis_url, ocr_engines="capgate", model_poll_seconds="0.2"
        )
        for name in ("a", "b")
    ]
    model = unsure_model(tmp_path / "unsure")
    done = run_cli("ocr", "install", str(model), "--store", redis_url, "--data", str(tmp_path))
    assert done.returncode == 0, done.stderr
    wait_until(lambda: all(serves_installed(node) for node in nodes))
    assert {outcome(node, 10 + i) for i, node in enumerate(nodes)} == {"ERROR_CAPTCHA_UNSOLVABLE"}


def test_a_site_model_that_cannot_load_leaves_its_site_to_the_generalists(
    start_server: ServerFactory,
) -> None:
    import asyncio

    from capgate.store import SqliteStore

    server = start_server(ocr_engines="capgate", model_poll_seconds="0.2", log_level="info")

    async def publish() -> None:
        store = SqliteStore(server.data / "capgate.db")
        await store.open()
        try:
            spec = DEFAULT_MODEL.with_suffix(".json").read_bytes()
            await store.publish_model(
                "shop.example", b"not a model", spec, 0.0, 0.99, {}, 0.0, "by hand", labels=0
            )
        finally:
            await store.close()

    asyncio.run(publish())
    wait_until(lambda: "site shop.example: serving model version 1" in server.log.read_text())
    samples = captchas(20, 4)
    right = 0
    for body, label in samples:
        task = {"type": "ImageToTextTask", "body": body, "websiteURL": "https://shop.example/"}
        created = server.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": task})
        answer = server.wait_final(BOOTSTRAP_KEY, created["taskId"])
        assert answer["status"] == "ready", answer
        right += answer["solution"]["text"] == label
    assert right >= 3
