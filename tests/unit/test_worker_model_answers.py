"""/worker/model answers a model's files encoded once, not on every ask
(capgate.api.worker_routes.EncodedModels): each ask of a 2 MB model used to cost the event
loop a store read, a base64 encoding and a JSON encoding."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from capgate.api.app import App
from capgate.api.http import Request
from capgate.api.worker_routes import EncodedModels
from capgate.clock import SystemClock
from capgate.config import Settings
from capgate.keys import hash_secret

WORKER = "worker-key-for-the-model-route-0123456789"


def test_a_models_answer_is_encoded_once_while_it_is_fresh(tmp_path: Path) -> None:
    app = App(Settings(data=tmp_path, store="memory"), SystemClock())
    store = app.store
    reads: list[tuple[str, int]] = []
    read = store.model_files

    async def counted(site: str, version: int) -> Any:
        reads.append((site, version))
        return await read(site, version)

    store.model_files = counted  # type: ignore[method-assign]

    async def run() -> list[Any]:
        await store.open()
        await store.create_key("w", hash_secret(WORKER), 0, time.time(), worker=True)
        await store.publish_model(
            "shop.example", b"ONNX" * 1000, b'{"charset": "0123"}', 0.5, 0.99, {}, 0.0, "x", 0
        )
        handler = app.routes.exact["/worker/model"].handler
        answers = []
        for site, version in (("shop.example", 1), ("shop.example", 1), ("other.example", 1)):
            body = json.dumps({"workerKey": WORKER, "site": site, "version": version}).encode()
            answer = await handler(Request("POST", "/worker/model", b"", [], body, "127.0.0.1"))
            answers.append((answer.status, json.loads(answer.body)))
        return answers

    first, second, missing = asyncio.run(run())
    assert first == second and first[0] == 200
    assert base64.b64decode(first[1]["onnx"]) == b"ONNX" * 1000
    assert missing[0] == 400  # a version not in the registry is never kept
    assert reads == [("shop.example", 1), ("other.example", 1)]


def test_kept_answers_are_few_and_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    kept = EncodedModels(size=2, seconds=60)
    kept.put("a", 1, b"A")
    now[0] += 1
    kept.put("b", 1, b"B")
    assert (kept.get("a", 1), kept.get("b", 1), kept.get("a", 2)) == (b"A", b"B", None)
    now[0] += 1
    kept.put("c", 1, b"C")  # the oldest goes
    assert (kept.get("a", 1), kept.get("b", 1), kept.get("c", 1)) == (None, b"B", b"C")
    now[0] += 60
    assert kept.get("b", 1) is None  # past its minute: read from the store again
    assert kept.get("c", 1) == b"C"
