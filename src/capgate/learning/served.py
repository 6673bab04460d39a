"""The models this node serves from the store's registry, kept in step with it.

Every node (and every OCR worker process through it) reads with the versions the
registry says are serving: each site's own model, and the operator's generalist model
(`DEFAULT_SITE`, put there by `capgate ocr install`) in place of the shipped one. A node
polls `serving_models` every `model_poll_seconds`; a version it does not have yet is
fetched once and written under `DATA/ocr/registry/` (the ONNX runtime loads a model from
a file), so a promotion or a demotion reaches every node within a poll, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capgate.learning.sites import site_name
from capgate.store.base import Store
from capgate.store.sites import DEFAULT_SITE, SiteModel

log = logging.getLogger("capgate.learning")

_DEFAULT_FOLDER = "_default"  # the folder of DEFAULT_SITE ("*" is no file name)


@dataclass(frozen=True)
class LocalModel:
    """A registry version written to this node's disk, ready for the OCR workers."""

    site: str
    version: int
    path: Path  # its model.onnx (model.json beside it)
    threshold: float
    precision: float
    # How often its answers under the threshold were right where the generalists read the
    # same (they then stand, solvers/ocr.py); None: they go upstream.
    agreement: float | None = None


class ServedModels:
    """The registry's serving versions, as files on this node. `changed` is called (on the
    event loop) after every change."""

    def __init__(
        self,
        store: Store,
        folder: Path,
        poll_seconds: float = 2.0,
        changed: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.folder = folder
        self.poll_seconds = poll_seconds
        self._changed = changed
        self._models: dict[str, LocalModel] = {}
        self._task: asyncio.Task[None] | None = None

    def get(self, site: str | None) -> LocalModel | None:
        """The model `site` is served by here (None: it has none, or no site)."""
        return self._models.get(site) if site else None

    @property
    def has_sites(self) -> bool:
        """True if some site has a model of its own (else no task needs its site read)."""
        return len(self._models) > (DEFAULT_SITE in self._models)

    @property
    def default(self) -> LocalModel | None:
        """The operator's generalist model from the registry, if one is serving."""
        return self._models.get(DEFAULT_SITE)

    def serving(self) -> dict[str, LocalModel]:
        """Every model served here, by site."""
        return dict(self._models)

    async def start(self) -> None:
        """Load what the registry serves now, then follow it in the background."""
        try:
            await self.refresh()
        except Exception:
            log.exception("could not read the model registry; trying again shortly")
        self._task = asyncio.create_task(self._follow(), name="capgate-served-models")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.refresh()
            except Exception as exc:  # The store is away: keep serving what we have.
                log.warning("could not read the model registry: %s", exc)

    async def refresh(self) -> bool:
        """Bring this node in step with the registry once; True if anything changed."""
        serving = await self.store.serving_models()
        models = dict(self._models)
        changed = False
        for site in [s for s in models if s not in serving]:
            gone = models.pop(site)
            changed = True
            if site == DEFAULT_SITE:
                log.info(
                    "the generalist model: version %d of the registry no longer serves; back"
                    " to the configured one",
                    gone.version,
                )
            else:
                log.info("site %s: model version %d no longer serves", site, gone.version)
        for site, entry in serving.items():
            held = models.get(site)
            if held is not None and held.version == entry.version:
                continue
            local = await self._fetch(entry)
            if local is None:
                continue
            models[site] = local
            changed = True
            if site == DEFAULT_SITE:
                log.info(
                    "the generalist model: serving version %d of the registry (%s)",
                    entry.version,
                    entry.scores.get("source", "?"),
                )
            else:
                log.info(
                    "site %s: serving model version %d (answers at or above %.3f stand, %.1f%%"
                    " right on held-out labels)",
                    site,
                    entry.version,
                    entry.threshold,
                    entry.precision * 100,
                )
        if changed:
            self._models = models
            await asyncio.to_thread(self._prune)
            if self._changed is not None:
                self._changed()
        return changed

    async def _fetch(self, entry: SiteModel) -> LocalModel | None:
        folder = self._folder_of(entry.site)
        if folder is None:
            log.warning("the registry names a site %r that is no site name; ignored", entry.site)
            return None
        target = folder / str(entry.version)
        if not (target / "model.onnx").is_file():
            files = await self.store.model_files(entry.site, entry.version)
            if files is None:
                log.warning("site %s: model version %d has no files", entry.site, entry.version)
                return None
            await asyncio.to_thread(_write_model, target, *files)
        return LocalModel(
            entry.site,
            entry.version,
            target / "model.onnx",
            entry.threshold,
            entry.precision,
            _agreement(entry.scores),
        )

    def _folder_of(self, site: str) -> Path | None:
        if site == DEFAULT_SITE:
            return self.folder / _DEFAULT_FOLDER
        return self.folder / site if site_name(site) == site else None

    def _prune(self) -> None:
        """Delete versions no longer served (the one just replaced stays: a worker may be
        loading it this moment)."""
        keep = {m.path.parent for m in self._models.values()}
        if not self.folder.is_dir():
            return
        for site_folder in self.folder.iterdir():
            versions = sorted(
                (p for p in site_folder.iterdir() if p.is_dir() and p.name.isdigit()),
                key=lambda p: int(p.name),
            )
            for old in versions[:-2]:
                if old not in keep:
                    shutil.rmtree(old, ignore_errors=True)


def _write_model(target: Path, onnx: bytes, spec: bytes) -> None:
    """Write a version's files to `target` whole or not at all (a rename of a full
    folder), so that a worker never loads half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    (partial / "model.onnx").write_bytes(onnx)
    (partial / "model.json").write_bytes(spec)
    try:
        os.replace(partial, target)
    except OSError:  # Another process of this node wrote it first.
        shutil.rmtree(partial, ignore_errors=True)


def _agreement(scores: Mapping[str, Any]) -> float | None:
    """The precision of agreeing answers a training job measured (learning.job), if any:
    a number in (0, 1], else None (versions from before it, or nothing agreed)."""
    value = scores.get("agreement_precision")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 < value <= 1 else None
