"""The OCR engine: a small CRNN exported to ONNX, run by onnxruntime on the CPU.

Everything the engine needs ships inside the package (`model.onnx` and `model.json`); nothing
is downloaded. The same `preprocess` function feeds training and serving, so the model
always sees images prepared the way it learned them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageSequence, UnidentifiedImageError

from capgate.ocr.calibration import Calibration
from capgate.ocr.grammar import OPERATORS, Grammar, best_path

MODEL_DIR = Path(__file__).parent
DEFAULT_MODEL = MODEL_DIR / "model.onnx"
# Characters a model may know that only a grammar reads (a phrase's spaces, a sum's signs):
# a plain captcha's answer never contains them.
SHAPE_CHARS = " " + OPERATORS + "=?"


def installed_model(data: Path) -> Path | None:
    """A model `capgate ocr train --install` put in a server's data directory, if any."""
    path = data / "ocr" / "model.onnx"
    return path if path.is_file() and path.with_suffix(".json").is_file() else None


@dataclass(frozen=True)
class OcrResult:
    """The text read from an image and how sure the model is of it."""

    text: str
    # From the engine: the probability that the text is exactly right, when the model has
    # a calibration (the shipped one does); else, as from `decode`, the raw score: the
    # product of each emitted character's best probability along the decoded path (1.0
    # when the model is certain of every character, lower with every doubt).
    confidence: float


@dataclass(frozen=True)
class ModelSpec:
    """What the engine needs to know about a model: its input size, its alphabet and the
    calibration of its confidence, if it has one."""

    height: int
    width: int
    charset: str  # Output class i + 1 is charset[i]; class 0 is the CTC blank.
    # Fitted by training/calibrate.py; a model fine-tuned by `capgate ocr train` has none
    # (its scores are not those of the shipped model) and answers with raw scores.
    calibration: Calibration | None = None

    @classmethod
    def load(cls, path: Path) -> ModelSpec:
        """Read the JSON that sits beside a model file."""
        data = json.loads(path.read_text())
        knots = data.get("calibration")
        calibration = Calibration.from_json(knots) if knots is not None else None
        return cls(int(data["height"]), int(data["width"]), str(data["charset"]), calibration)


def open_image(data: bytes) -> Image.Image:
    """Decode image bytes (PNG, JPEG, GIF, WEBP), or raise ValueError with a readable reason."""
    try:
        image: Image.Image = Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "GIF", "WEBP"))
        if getattr(image, "n_frames", 1) > 1:
            image = next(iter(ImageSequence.Iterator(image)))
        image.load()
    except UnidentifiedImageError:
        # Pillow's own message names the BytesIO object, which tells a client nothing.
        raise ValueError("not a readable PNG, JPEG, GIF or WEBP image (unknown format)") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable PNG, JPEG, GIF or WEBP image ({exc})") from None
    return image


def preprocess(image: Image.Image, height: int, width: int) -> npt.NDArray[np.float32]:
    """Grayscale, resized to the model's input, standardized per image: shape (1, H, W)."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # Transparent captchas are drawn for a light page: put them on white.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    gray = image.convert("L").resize((width, height), Image.Resampling.BILINEAR)
    pixels: npt.NDArray[np.float32] = np.asarray(gray, dtype=np.float32) / np.float32(255.0)
    standardized: npt.NDArray[np.float32] = (pixels - pixels.mean()) / (pixels.std() + 1e-3)
    return standardized[None, :, :]


@dataclass(frozen=True)
class Constraints:
    """What a task's options allow: which characters, how many of them, and in what shape
    (a grammar, for sums and phrases; lengths then do not apply)."""

    allowed: str | None = None
    min_length: int = 0
    max_length: int = 0  # 0: no limit
    grammar: Grammar | None = None

    @property
    def limits_length(self) -> bool:
        """True if the answer's length is bounded."""
        return self.min_length > 0 or self.max_length > 0


def decode(
    logits: npt.NDArray[np.float32],
    charset: str,
    allowed: str | None = None,
    constraints: Constraints | None = None,
) -> OcrResult:
    """CTC decoding of one (T, classes) logit matrix: the most likely reading that the
    constraints allow.

    Characters outside `allowed` are masked before decoding (without a grammar, so are
    SHAPE_CHARS), and a bounded length or a grammar is searched for along the whole path
    (a small dynamic program), so the decoder picks the best allowed reading rather than
    filtering its output. Unconstrained, it is greedy.
    """
    constraints = constraints or Constraints(allowed)
    logits = logits + _mask(charset, constraints.allowed, constraints.grammar is not None)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=-1, keepdims=True)
    if constraints.grammar is not None:
        path = best_path(probs, constraints.grammar, charset)
    elif constraints.limits_length:
        path = _best_path_of_length(probs, constraints.min_length, constraints.max_length)
    else:
        path = probs.argmax(axis=-1).tolist()
    return _collapse(path, probs, charset)


@lru_cache(maxsize=256)
def _mask(charset: str, allowed: str | None, shaped: bool) -> npt.NDArray[np.float32]:
    """What to add to a frame's logits: -inf for each class the decoder may not read."""
    banned = [
        (allowed is not None and char not in allowed) or (not shaped and char in SHAPE_CHARS)
        for char in charset
    ]
    return np.array([0.0] + [-np.inf if b else 0.0 for b in banned], dtype=np.float32)


def _collapse(path: list[int], probs: npt.NDArray[np.float32], charset: str) -> OcrResult:
    """The text a frame-by-frame path spells, and the product of its characters' best
    probabilities (each character's highest probability over the frames it spans)."""
    chars: list[str] = []
    confidence = 1.0
    previous = 0
    run_p = 0.0
    for t, cls in enumerate(path):
        p = float(probs[t, cls])
        if cls != previous:
            if previous != 0:
                confidence *= run_p
            if cls != 0:
                chars.append(charset[cls - 1])
            run_p = p
        else:
            run_p = max(run_p, p)
        previous = cls
    if previous != 0:
        confidence *= run_p
    return OcrResult("".join(chars), confidence if chars else 0.0)


def _best_path_of_length(probs: npt.NDArray[np.float32], low: int, high: int) -> list[int]:
    """The most likely frame path whose collapsed text has between `low` and `high`
    characters (`high` 0: as many as there are frames). Empty if none can."""
    frames, classes = probs.shape
    top = frames if high <= 0 else min(high, frames)
    logp = np.log(np.maximum(probs, 1e-30))
    # score[l, c]: the best log-probability of a path up to this frame that spells l
    # characters and ends on class c (0 is the blank).
    score = np.full((top + 1, classes), -np.inf)
    score[0, 0] = logp[0, 0]
    if top >= 1:
        score[1, 1:] = logp[0, 1:]
    back_length = np.zeros((frames, top + 1, classes), dtype=np.int16)
    back_class = np.zeros((frames, top + 1, classes), dtype=np.int16)
    lengths = np.arange(top + 1)[:, None]
    for t in range(1, frames):
        best = score.argmax(axis=1)
        best_score = score.max(axis=1)
        runner = score.copy()
        runner[np.arange(top + 1), best] = -np.inf
        second = runner.argmax(axis=1)
        second_score = runner.max(axis=1)
        # The best way to add a character c: from any class but c, one character shorter.
        is_best = best[:, None] == np.arange(classes)[None, :]
        from_score = np.where(is_best, second_score[:, None], best_score[:, None])
        from_class = np.where(is_best, second[:, None], best[:, None])
        grow = np.full_like(score, -np.inf)
        grow[1:] = from_score[:-1]
        grow_class = np.zeros_like(back_class[0])
        grow_class[1:] = from_class[:-1]
        # Staying on the same class keeps the length (CTC merges repeats).
        take_grow = grow > score
        new = np.where(take_grow, grow, score)
        back_length[t] = np.where(take_grow, lengths - 1, lengths)
        back_class[t] = np.where(take_grow, grow_class, np.arange(classes)[None, :])
        # A blank keeps the length and may follow anything.
        new[:, 0] = best_score
        back_length[t][:, 0] = lengths[:, 0]
        back_class[t][:, 0] = best
        score = new + logp[t][None, :]
    candidates = score[low:]
    if not np.isfinite(candidates).any():
        return []
    flat = int(candidates.argmax())
    length, cls = low + flat // classes, flat % classes
    path = [cls]
    for t in range(frames - 1, 0, -1):
        length, cls = int(back_length[t][length, cls]), int(back_class[t][length, cls])
        path.append(cls)
    return path[::-1]


class OcrEngine:
    """Reads captcha images with the shipped model (or another one given by path).

    Its confidences are calibrated when the model's JSON holds a calibration, unless
    `calibrated` is False (training/calibrate.py reads the raw scores it fits on)."""

    def __init__(
        self, model_path: Path | None = None, threads: int = 1, calibrated: bool = True
    ) -> None:
        import onnxruntime as ort

        path = model_path or DEFAULT_MODEL
        self.spec = ModelSpec.load(path.with_suffix(".json"))
        self.calibration = self.spec.calibration if calibrated else None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def read(
        self, image: bytes, allowed: str | None = None, constraints: Constraints | None = None
    ) -> OcrResult:
        """Read one image given as file bytes."""
        return self.read_batch([image], allowed, constraints)[0]

    def read_batch(
        self,
        images: Sequence[bytes],
        allowed: str | None = None,
        constraints: Constraints | None = None,
    ) -> list[OcrResult]:
        """Read several images in one run of the model."""
        if not images:
            return []
        spec = self.spec
        batch = np.stack([preprocess(open_image(b), spec.height, spec.width) for b in images])
        (logits,) = self._session.run(None, {self._input: batch})
        results = [decode(row, spec.charset, allowed, constraints) for row in logits]
        calibration = self.calibration
        if calibration is None:
            return results
        return [OcrResult(r.text, calibration(r.confidence) if r.text else 0.0) for r in results]
