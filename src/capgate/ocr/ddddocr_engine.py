"""The ddddocr engine: the field's standard open-source captcha OCR, as an optional extra.

    pip install 'capgate[ddddocr]'

ddddocr (MIT, on PyPI) is imported only when the engine is first built, in the OCR worker
process, so a server without it never pays for it. Its recognizer is asked for its
per-frame probabilities (`classification(image, probability=True)`); capgate then decodes
them itself with the decoder of its own model (`capgate.ocr.engine.decode`), so a task's
hints hold for ddddocr as they do for capgate's model: `numeric` masks the alphabet before
decoding (ddddocr's `set_ranges` only drops characters after it), and `minLength` /
`maxLength`, `math` and `phrase` are searched along the whole path. The raw score is the
same as for capgate's model (the product of each character's best probability along the
decoded path), mapped by the isotonic calibration in `ddddocr.json`, fitted by
`training/calibrate.py --engine ddddocr` (training/README.md).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from capgate.ocr.calibration import Calibration
from capgate.ocr.engine import (
    MODEL_DIR,
    Constraints,
    OcrResult,
    Reading,
    on_white,
    open_image,
    reading_of,
)

CALIBRATION = MODEL_DIR / "ddddocr.json"
# ddddocr scales an image to 64 pixels high, keeping its aspect. An image that would come
# out narrower or wider than this (a sliver, or a 4,000 x 1 pixel bomb that would take
# gigabytes) is first squeezed to these bounds; captchas are far inside them.
HEIGHT = 64
WIDTHS = (16, 1024)


def available() -> bool:
    """True if ddddocr can be imported here."""
    import importlib.util

    return importlib.util.find_spec("ddddocr") is not None


def load_calibration(path: Path = CALIBRATION) -> Calibration | None:
    """ddddocr's calibration as shipped (None if the file holds none)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    knots = data.get("calibration")
    return Calibration.from_json(knots) if knots is not None else None


class DdddocrEngine:
    """Reads captcha images with ddddocr's default recognizer, on one thread."""

    name = "ddddocr"

    def __init__(self, threads: int = 1, calibrated: bool = True) -> None:
        self.threads = threads
        self.calibration = load_calibration() if calibrated else None

    @property
    def calibrated(self) -> bool:
        """True if its confidences are calibrated probabilities."""
        return self.calibration is not None

    @cached_property
    def _ocr(self) -> Any:
        """The recognizer, loaded on first use (ImportError without the extra)."""
        try:
            import ddddocr
        except ImportError as exc:
            raise ImportError(
                "the ddddocr engine needs the optional extra: pip install 'capgate[ddddocr]'"
            ) from exc
        ocr = ddddocr.DdddOcr(show_ad=False)
        _limit_threads(ocr, self.threads)
        return ocr

    @cached_property
    def charset(self) -> str:
        """ddddocr's classes as capgate's decoder takes them: class i + 1 is charset[i]."""
        classes = [str(c) for c in self._ocr.get_charset()]
        if not classes or classes[0] != "" or any(len(c) != 1 for c in classes[1:]):
            raise RuntimeError("ddddocr's charset is not one blank and single characters")
        return "".join(classes[1:])

    def logits(self, image: bytes) -> npt.NDArray[np.float32]:
        """ddddocr's per-frame scores for one image (logits or log-probabilities, which
        decode the same): shape (T, classes)."""
        picture = _bounded(on_white(open_image(image)).convert("RGB"))
        try:
            scores = self._direct(picture)
            if scores is None:
                scores = self.public_logits(picture)
        except Exception as exc:  # ddddocr's own errors, on an image it cannot take
            raise ValueError(f"ddddocr cannot read the image ({exc})") from exc
        scores = scores.reshape(-1, scores.shape[-1])
        if scores.shape[-1] != len(self.charset) + 1:
            raise RuntimeError("ddddocr's output does not match its charset")
        return scores

    def public_logits(self, picture: Image.Image) -> npt.NDArray[np.float32]:
        """The log of the probabilities ddddocr's public API gives (`probability=True`)."""
        answer = self._ocr.classification(picture, probability=True)
        probs = np.asarray(answer["probabilities"], dtype=np.float32)
        logits: npt.NDArray[np.float32] = np.log(np.maximum(probs, np.float32(1e-30)))
        return logits

    def _direct(self, picture: Image.Image) -> npt.NDArray[np.float32] | None:
        """The same scores straight from ddddocr's model, without its public API's detour
        through Python lists (10 ms an image); None if this ddddocr is laid out otherwise."""
        engine = getattr(self._ocr, "ocr_engine", None)
        prepare = getattr(engine, "_preprocess_image", None)
        session = getattr(engine, "session", None)
        if prepare is None or session is None:
            return None
        array = prepare(picture, False)
        outputs = session.run(None, {session.get_inputs()[0].name: array})
        return np.asarray(outputs[0], dtype=np.float32)

    def read(
        self, image: bytes, allowed: str | None = None, constraints: Constraints | None = None
    ) -> OcrResult:
        """Read one image given as file bytes (ValueError if it is not an image)."""
        return self.reading(image, constraints or Constraints(allowed)).result

    def reading(self, image: bytes, constraints: Constraints | None = None) -> Reading:
        """Read one image, keeping what the chain weighs (see `capgate.ocr.engine.Reading`)."""
        logits = self.logits(image)
        return reading_of(logits, self.charset, constraints or Constraints(), self.calibration)

    def warm(self) -> None:
        """Load ddddocr now rather than on the first image."""
        self.charset  # noqa: B018


def _bounded(picture: Image.Image) -> Image.Image:
    """The picture, squeezed if ddddocr would scale it outside WIDTHS (see there)."""
    width, height = picture.size
    scaled = int(width * HEIGHT / height)
    low, high = WIDTHS
    if low <= scaled <= high:
        return picture
    return picture.resize((max(low, min(high, scaled)), HEIGHT), Image.Resampling.LANCZOS)


def _limit_threads(ocr: Any, threads: int) -> None:
    """Run ddddocr's model on `threads` threads, as capgate's own (ddddocr's session takes
    every core, which a pool of OCR processes would oversubscribe). Best effort: if this
    ddddocr keeps its session elsewhere, its own stays."""
    import onnxruntime as ort

    engine = getattr(ocr, "ocr_engine", None)
    session = getattr(engine, "session", None)
    path = getattr(session, "_model_path", None)
    if engine is None or not isinstance(path, str) or not Path(path).is_file():
        return
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    engine.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
