"""What the OCR commands are given on the command line: a model (its folder, or its `.onnx`
file with the `.json` beside it) and a folder of labelled captchas, each checked so that a
mistake is told in one line rather than a traceback. Needs no torch.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

from capgate.ocr.dataset import Labelled, load_labelled

MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.csv"
MODEL_SUFFIXES = (".onnx", ".json", ".pt")


class ModelFileError(ValueError):
    """A model or data path that cannot be used, told in one line."""


def resolve_model(path: Path) -> Path:
    """The `.onnx` file of the model at `path`: a folder holding model.onnx (what `capgate
    ocr train` writes and prints), or the model's `.onnx` file (its `.json` or `.pt` names
    it too). Raises ModelFileError if the model or the `.json` beside it is missing."""
    if path.is_dir():
        onnx = path / MODEL_FILE
        if not onnx.is_file():
            raise ModelFileError(
                f"{path} holds no {MODEL_FILE}: a model folder holds model.onnx and model.json"
            )
    elif path.suffix in MODEL_SUFFIXES:
        onnx = path.with_suffix(".onnx")
        if not onnx.is_file():
            raise ModelFileError(f"no model at {onnx}")
    elif path.exists():
        raise ModelFileError(f"{path} is not a model: give its folder or its .onnx file")
    else:
        raise ModelFileError(f"no model at {path}")
    spec = onnx.with_suffix(".json")
    if not spec.is_file():
        raise ModelFileError(
            f"{onnx} has no {spec.name} beside it (the model's input size and alphabet)"
        )
    return onnx


def resolve_base(path: Path) -> Path:
    """`resolve_model`, for a model to fine-tune: its torch weights (`.pt`) must be beside it."""
    onnx = resolve_model(path)
    weights = onnx.with_suffix(".pt")
    if not weights.is_file():
        raise ModelFileError(
            f"{onnx} has no {weights.name} beside it: fine-tuning starts from a model's torch"
            " weights, which `capgate ocr train` writes beside the model.onnx it makes"
        )
    return onnx


def installed_model(data: Path) -> Path | None:
    """The model `capgate ocr train --install` put in the server data directory `data`
    (None if it holds none). Raises ModelFileError if `data` is no folder, or if a model
    there lacks its `.json`."""
    if not data.is_dir():
        raise ModelFileError(f"no data directory {data}")
    if not (data / "ocr" / MODEL_FILE).is_file():
        return None
    return resolve_model(data / "ocr")


def load_training_data(folder: Path) -> list[Labelled]:
    """The labelled images of a folder as `capgate ocr train --data` takes it (see
    `capgate.ocr.dataset.load_labelled`), after checks that tell each mistake in one line:
    no such folder, a file given instead, a `labels.csv` headed otherwise than file,label,
    an image it lists that is not there."""
    if not folder.exists():
        raise ModelFileError(f"no folder {folder}")
    if not folder.is_dir():
        hint = (
            f"give the folder it is in (the CSV must be named {LABELS_FILE})"
            if folder.suffix.lower() == ".csv"
            else "give a folder of labelled images"
        )
        raise ModelFileError(f"{folder} is a file, not a folder: {hint}")
    table = folder / LABELS_FILE
    if table.is_file():
        _check_table(table)
    try:
        return load_labelled(folder)
    except OSError as exc:
        raise ModelFileError(f"cannot read {exc.filename or folder}: {exc.strerror}") from None


def _check_table(table: Path) -> None:
    folder = table.parent
    try:
        with table.open(newline="") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError:
        raise ModelFileError(f"{table} is not UTF-8 text") from None
    header = rows[0] if rows else []
    if header and header[0].startswith("\ufeff"):
        raise ModelFileError(
            f"{table} starts with a byte-order mark: save it as UTF-8 without one (BOM)"
        )
    if not {"file", "label"} <= set(header):
        found = ",".join(header) if header else "nothing"
        raise ModelFileError(
            f"{table} must be headed file,label (the image's file name, its text);"
            f" its first line is {found}"
        )
    column = header.index("file")
    missing = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header) or not row[column]:
            raise ModelFileError(
                f"{table} line {number}: {len(row)} columns where the header has {len(header)}"
                if len(row) != len(header)
                else f"{table} line {number}: no file name"
            )
        name = row[column]
        if not (folder / "images" / name).is_file() and not (folder / name).is_file():
            missing.append(name)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ModelFileError(
            f"{table} lists {missing[0]}{more}, not found in {folder} nor in {folder / 'images'}"
        )


T = TypeVar("T")


def split_holdout(samples: Sequence[T], fraction: float) -> tuple[list[T], list[T]]:
    """(train, held out): `fraction` of the samples held out, spread evenly through them in
    their order (0.2: every fifth, the 5th, 10th, ...). `fraction` is between 0 and 1."""
    if not 0 < fraction < 1:
        raise ModelFileError(f"the held-out fraction must be between 0 and 1, not {fraction}")
    share = Fraction(fraction).limit_denominator(1000)
    held = [(i + 1) * share // 1 > i * share // 1 for i in range(len(samples))]
    train = [s for s, h in zip(samples, held, strict=True) if not h]
    test = [s for s, h in zip(samples, held, strict=True) if h]
    return train, test


def trained_real_sets(model: Path) -> dict[str, float]:
    """The labelled real sets a model was trained on, each with the fraction of it held
    out (every fifth image, `split_holdout`), as its `.json` records them under
    `trained` (`training/train_generalist.py` writes `train_sets` and `holdout`). Only the
    held-out images of those sets may measure or calibrate the model."""
    path = model.with_suffix(".json")
    trained = json.loads(path.read_text(encoding="utf-8")).get("trained", {})
    if not isinstance(trained, dict):
        return {}
    holdout = float(trained.get("holdout", 0.2))
    return {str(name): holdout for name in trained.get("train_sets", [])}
