"""Upstream answers kept as training labels (opt-in: `keep_upstream_labels`).

When an upstream provider reads an image captcha, its image and answer are written to
`DATA/labels/` as `<task id>.<png|jpg|gif|webp>` with the answer in `<task id>.txt`
beside it; a client's report that the answer was wrong deletes both. `capgate ocr train
--data DATA/labels` then fine-tunes the local model on them. One file pair per task needs
no lock, so several server processes can share the folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from capgate.images import IMAGE_FORMATS, image_format

log = logging.getLogger("capgate.labels")


class LabelKeeper:
    """Writes and deletes label files in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def keep(self, task_id: int, image: bytes, answer: str) -> None:
        """Keep one answered image (off the event loop: it touches the disk)."""
        await asyncio.to_thread(self._write, task_id, image, answer)

    async def forget(self, task_id: int) -> None:
        """Delete a kept answer that was reported wrong, if there is one."""
        await asyncio.to_thread(self._delete, task_id)

    def _write(self, task_id: int, image: bytes, answer: str) -> None:
        suffix = image_format(image)
        if suffix is None or not answer or "\n" in answer:
            return  # Nothing a training run could read.
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # The label first, the image last and by rename: a training run that lists
            # the folder meanwhile never finds an image without its label.
            _write_atomically(self.folder / f"{task_id}.txt", answer.encode())
            _write_atomically(self.folder / f"{task_id}.{suffix}", image)
        except OSError as exc:  # A full disk must not fail the task that was answered.
            log.warning("could not keep the label of task %d: %s", task_id, exc)

    def _delete(self, task_id: int) -> None:
        for suffix in (*IMAGE_FORMATS, "txt"):
            (self.folder / f"{task_id}.{suffix}").unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
