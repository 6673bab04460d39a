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
import math
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from capgate.ocr.engine import OcrEngine
from capgate.solvers.ocr import constraints_for
from capgate.store.sites import DEFAULT_SITE

log = logging.getLogger("capgate.worker")


@dataclass(frozen=True)
class _SiteModel:
    """A site's model from the registry: its answers at or above `threshold` stand."""

    version: int
    engine: OcrEngine
    threshold: float
    precision: float


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
        models_seconds: float = 5.0,
    ) -> None:
        self.key = key
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.idle_seconds = idle_seconds
        self.configured = self.engine = OcrEngine(model, threads=1)
        self.http = httpx.Client(base_url=server.rstrip("/"), timeout=30.0)
        # The server's model registry (docs/learning.md), looked at every `models_seconds`:
        # site models by site, and the generalist model that replaces `model` while served.
        self.models_seconds = models_seconds
        self._models_checked = -math.inf
        self._sites: dict[str, _SiteModel] = {}
        self._generalist: tuple[int, OcrEngine] | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="capgate-worker-models-"))

    def __enter__(self) -> RemoteWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def follow_registry(self) -> None:
        """Load what the server's registry serves now, if it is time to look again. A
        server that has no registry (an older capgate) leaves the worker as it was."""
        if time.monotonic() - self._models_checked < self.models_seconds:
            return
        self._models_checked = time.monotonic()
        try:
            listed = self._post("/worker/models", {}).get("models")
        except ConnectionError:
            return
        if not isinstance(listed, list):
            return
        sites: dict[str, _SiteModel] = {}
        generalist: tuple[int, OcrEngine] | None = None
        for entry in listed:
            site, version = str(entry["site"]), int(entry["version"])
            if site == DEFAULT_SITE:
                held = self._generalist
                engine = held[1] if held and held[0] == version else self._load(site, version)
                generalist = (version, engine) if engine is not None else held
                continue
            known = self._sites.get(site)
            if known is not None and known.version == version:
                sites[site] = known
                continue
            loaded = self._load(site, version, calibrated=False)
            if loaded is not None:
                threshold, precision = float(entry["threshold"]), float(entry["precision"])
                sites[site] = _SiteModel(version, loaded, threshold, precision)
                log.info("site %s: reading with model version %d", site, version)
        self._sites = sites
        if generalist != self._generalist:
            log.info(
                "the generalist model: %s",
                f"version {generalist[0]} of the registry" if generalist else "the configured one",
            )
        self._generalist = generalist
        self.engine = generalist[1] if generalist else self.configured

    def _load(self, site: str, version: int, calibrated: bool = True) -> OcrEngine | None:
        answer = self._post("/worker/model", {"site": site, "version": version})
        if not answer.get("onnx"):
            log.warning("site %s: model version %d could not be fetched", site, version)
            return None
        folder = self._folder / f"{len(list(self._folder.iterdir()))}"
        folder.mkdir()
        (folder / "model.onnx").write_bytes(base64.b64decode(answer["onnx"]))
        (folder / "model.json").write_bytes(base64.b64decode(answer["spec"]))
        return OcrEngine(folder / "model.onnx", threads=1, calibrated=calibrated)

    def _read(self, lease: dict[str, Any]) -> dict[str, Any] | None:
        """The answer to a leased task (its site's model first), or None if none."""
        image = base64.b64decode(lease["body"] or "")
        constraints = constraints_for(lease.get("params") or {})
        site = self._sites.get(lease.get("site") or "")
        if site is not None:
            result = site.engine.read(image, constraints=constraints)
            if result.text and result.confidence >= site.threshold:
                return {
                    "text": result.text,
                    "confidence": site.precision,
                    "siteModel": site.version,
                }
        result = self.engine.read(image, constraints=constraints)
        if not result.text:
            return None
        return {"text": result.text, "confidence": result.confidence, "unsure": site is not None}

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
        self.follow_registry()
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
                solution = self._read(lease)
            except ValueError as exc:
                self._post("/worker/fail", {**held, "description": f"unreadable image: {exc}"})
                continue
            if solution is None:
                self._post("/worker/fail", {**held, "description": "no text found"})
                continue
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
