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
from typing import Protocol

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


class Engine(Protocol):
    """What the chain (`capgate.ocr.chain`) asks of an engine: a name, and a reading of
    one image within a task's constraints whose confidence is calibrated (the probability
    that the text is exactly right), or the raw score where the engine has no calibration."""

    name: str

    @property
    def calibrated(self) -> bool:
        """True if the engine's confidences are calibrated probabilities."""
        ...

    def read(
        self, image: bytes, allowed: str | None = None, constraints: Constraints | None = None
    ) -> OcrResult:
        """Read one image given as file bytes (ValueError if it is not an image)."""
        ...

    def reading(self, image: bytes, constraints: Constraints | None = None) -> Reading:
        """Read one image, keeping what the chain weighs (see `Reading`)."""
        ...


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


def on_white(image: Image.Image) -> Image.Image:
    """A transparent image put on white (captchas are drawn for a light page); any other
    image as it is."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba)
    return image


def preprocess(image: Image.Image, height: int, width: int) -> npt.NDArray[np.float32]:
    """Grayscale, resized to the model's input, standardized per image: shape (1, H, W)."""
    gray = on_white(image).convert("L").resize((width, height), Image.Resampling.BILINEAR)
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
    return _decode(logits, charset, constraints or Constraints(allowed))[0]


def _decode(
    logits: npt.NDArray[np.float32], charset: str, constraints: Constraints
) -> tuple[OcrResult, npt.NDArray[np.float32]]:
    """`decode`, and the probabilities over the allowed classes it decoded from."""
    probs = _softmax(logits + _mask(charset, constraints.allowed, constraints.grammar is not None))
    if constraints.grammar is not None:
        path = best_path(probs, constraints.grammar, charset)
    elif constraints.limits_length:
        path = _bounded_path(probs, constraints.min_length, constraints.max_length)
    else:
        path = probs.argmax(axis=-1).tolist()
    return _collapse(path, probs, charset), probs


def _softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probs: npt.NDArray[np.float32] = np.exp(shifted)
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs


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


# A model with more classes than this (ddddocr's 8,000) is searched for a bounded length
# among the few classes that rank in some frame's top TOP_CLASSES only: a class that is
# never near the top of any frame does not make the best path of a given length.
PRUNE_ABOVE = 256
TOP_CLASSES = 16


def _bounded_path(probs: npt.NDArray[np.float32], low: int, high: int) -> list[int]:
    """`_best_path_of_length`, on a large alphabet pruned to its likely classes."""
    if probs.shape[1] <= PRUNE_ABOVE:
        return _best_path_of_length(probs, low, high)
    top = np.argpartition(-probs, TOP_CLASSES, axis=1)[:, :TOP_CLASSES]
    columns = np.union1d(top.ravel(), [0])  # sorted: the blank stays class 0
    columns = columns[(columns == 0) | (probs[:, columns] > 0).any(axis=0)]
    path = _best_path_of_length(probs[:, columns], low, high)
    return [int(columns[c]) for c in path]


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


def ctc_log_likelihood(log_probs: npt.NDArray[np.float32], labels: Sequence[int]) -> float:
    """log P(labels) under a CTC model's per-frame log-probabilities (T, classes; class 0
    the blank): the probability of every frame path that collapses to those classes,
    summed (the forward algorithm). -inf if no path of T frames spells them."""
    frames = log_probs.shape[0]
    if not labels:
        return float(log_probs[:, 0].sum())
    extended = np.zeros(2 * len(labels) + 1, dtype=np.int64)
    extended[1::2] = labels
    # A path may skip the blank between two different characters, never between repeats.
    skip = np.zeros(len(extended), dtype=bool)
    skip[3::2] = extended[3::2] != extended[1:-2:2]
    none = np.array([-np.inf])
    alpha = np.full(len(extended), -np.inf)
    alpha[:2] = log_probs[0, extended[:2]]
    for t in range(1, frames):
        one_back = np.concatenate((none, alpha[:-1]))
        two_back = np.where(skip, np.concatenate((none, none, alpha[:-2])), -np.inf)
        alpha = np.logaddexp(np.logaddexp(alpha, one_back), two_back) + log_probs[t, extended]
    return float(np.logaddexp(alpha[-1], alpha[-2]))


@lru_cache(maxsize=16)
def _case_pairs(charset: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The classes of the upper-case letters that have a lower-case class too, and those."""
    index = {char: i + 1 for i, char in enumerate(charset)}
    pairs = [
        (i, index[c.lower()]) for c, i in index.items() if c != c.lower() and c.lower() in index
    ]
    upper = np.array([u for u, _ in pairs], dtype=np.int64)
    lower = np.array([low for _, low in pairs], dtype=np.int64)
    return upper, lower


@lru_cache(maxsize=16)
def _class_of(charset: str) -> dict[str, int]:
    return {char: i + 1 for i, char in enumerate(charset)}


def caseless_likelihood(probs: npt.NDArray[np.float32], charset: str, text: str) -> float:
    """log P(text, in any case) under per-frame probabilities (T, classes): each letter's
    two cases count as one class. -inf if the text holds a character outside the charset."""
    upper, lower = _case_pairs(charset)
    folded = probs.astype(np.float64)
    by_class = folded.T  # a view: np.add.at adds twice where two capitals share a small
    np.add.at(by_class, lower, by_class[upper])
    folded[:, upper] = 0.0
    classes = _class_of(charset)
    labels = []
    for char in text:
        cls = classes.get(char.lower(), classes.get(char))
        if cls is None:
            return -np.inf
        labels.append(cls)
    return ctc_log_likelihood(np.log(np.maximum(folded, 1e-30)).astype(np.float32), labels)


@dataclass(frozen=True)
class Reading:
    """One engine's reading of one image, as the chain weighs it: the answer (its
    confidence calibrated where the engine is), the raw score, and the probabilities over
    the allowed classes it was decoded from, which say how likely another answer is."""

    result: OcrResult
    raw: float
    probs: npt.NDArray[np.float32]  # (T, classes); class i + 1 is charset[i]
    charset: str

    def likelihood(self, text: str) -> float:
        """log P(text) under this engine's reading, letters in either case."""
        return caseless_likelihood(self.probs, self.charset, text)


def reading_of(
    logits: npt.NDArray[np.float32],
    charset: str,
    constraints: Constraints,
    calibration: Calibration | None,
) -> Reading:
    """Decode one (T, classes) logit matrix into a Reading, calibrated if a map is given."""
    result, probs = _decode(logits, charset, constraints)
    raw = result.confidence
    if calibration is not None:
        result = OcrResult(result.text, calibration(raw) if result.text else 0.0)
    return Reading(result, raw, probs, charset)


class OcrEngine:
    """capgate's own engine: reads captcha images with the shipped model (or another one
    given by path).

    Its confidences are calibrated when the model's JSON holds a calibration, unless
    `calibrated` is False (training/calibrate.py reads the raw scores it fits on)."""

    name = "capgate"

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

    @property
    def calibrated(self) -> bool:
        """True if its confidences are calibrated probabilities."""
        return self.calibration is not None

    def read(
        self, image: bytes, allowed: str | None = None, constraints: Constraints | None = None
    ) -> OcrResult:
        """Read one image given as file bytes."""
        return self.read_batch([image], allowed, constraints)[0]

    def logits(self, image: bytes) -> npt.NDArray[np.float32]:
        """The model's per-frame logits for one image: shape (T, classes)."""
        spec = self.spec
        batch = preprocess(open_image(image), spec.height, spec.width)[None]
        (logits,) = self._session.run(None, {self._input: batch})
        first: npt.NDArray[np.float32] = logits[0]
        return first

    def reading(self, image: bytes, constraints: Constraints | None = None) -> Reading:
        """Read one image for the chain (see `Reading`)."""
        logits = self.logits(image)
        return reading_of(logits, self.spec.charset, constraints or Constraints(), self.calibration)

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
