"""`capgate worker`: a remote solver process that leases image tasks from a capgate server
over HTTP, reads them with the local OCR engine and reports the answers.

OCR capacity scales by starting more of these, on any machine that reaches the server.
A lease request carries a request id and is retried with the same id after a network
error, so a lost answer strands no task; a task this worker holds when it dies goes back
to the queue when its lease expires, and another worker solves it.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from capgate.ocr.engine import OcrEngine
from capgate.solvers.ocr import constraints_for

log = logging.getLogger("capgate.worker")


class RemoteWorker:
    """Leases ImageToText tasks from one server and answers them."""

    def __init__(
        self,
        server: str,
        key: str,
        *,
        batch: int = 8,
        lease_seconds: float = 30.0,
        model: Path | None = None,
        idle_seconds: float = 0.5,
    ) -> None:
        self.key = key
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.idle_seconds = idle_seconds
        self.engine = OcrEngine(model, threads=1)
        self.http = httpx.Client(base_url=server.rstrip("/"), timeout=30.0)

    def __enter__(self) -> RemoteWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def _post(self, path: str, body: dict[str, Any], attempts: int = 5) -> dict[str, Any]:
        """POST with retries on network errors; the body (and its request id) stays the same."""
        for attempt in range(attempts):
            try:
                response = self.http.post(path, json={"workerKey": self.key, **body})
            except httpx.TransportError as exc:
                log.warning("%s failed (%s); retrying", path, exc)
                time.sleep(min(2.0**attempt * 0.2, 5.0))
                continue
            answer: dict[str, Any] = response.json()
            if response.status_code == 401:
                raise SystemExit(f"capgate worker: {answer.get('description')}")
            return answer
        raise ConnectionError(f"{path}: the server did not answer after {attempts} tries")

    def run_once(self) -> int:
        """Lease one batch, answer it, and return how many tasks it held."""
        answer = self._post(
            "/worker/lease",
            {
                "types": ["ImageToText"],
                "limit": self.batch,
                "leaseSeconds": self.lease_seconds,
                "requestId": uuid.uuid4().hex,
            },
        )
        leases = answer.get("leases", [])
        for lease in leases:
            held = {"taskId": lease["taskId"], "token": lease["token"]}
            try:
                result = self.engine.read(
                    base64.b64decode(lease["body"] or ""),
                    constraints=constraints_for(lease.get("params") or {}),
                )
            except ValueError as exc:
                self._post("/worker/fail", {**held, "description": f"unreadable image: {exc}"})
                continue
            if not result.text:
                self._post("/worker/fail", {**held, "description": "no text found"})
                continue
            solution = {"text": result.text, "confidence": result.confidence}
            done = self._post("/worker/complete", {**held, "solution": solution})
            if not done.get("ok"):
                log.info("task %s: answer not taken (%s)", lease["taskId"], done.get("error"))
        return len(leases)

    def run_forever(self) -> None:
        """Work until interrupted."""
        log.info("leasing ImageToText tasks from %s", self.http.base_url)
        try:
            while True:
                if self.run_once() == 0:
                    time.sleep(self.idle_seconds)
        except KeyboardInterrupt:
            log.info("stopped")
