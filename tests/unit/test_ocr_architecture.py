"""A CRNN wider than the shipped one (a generalist candidate, training/train_generalist.py
--channels/--hidden) records its widths in model.json, and fine-tuning rebuilds it from its
weights (needs torch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capgate.ocr import synth
from capgate.ocr.dataset import Labelled
from capgate.ocr.engine import DEFAULT_MODEL, ModelSpec, OcrEngine

torch = pytest.importorskip("torch")


def quiet(_: str) -> None:
    pass


def test_a_wider_model_is_exported_with_its_architecture_and_fine_tunes(tmp_path: Path) -> None:
    from capgate.ocr.training import CRNN, Architecture, export, finetune

    spec = ModelSpec.load(DEFAULT_MODEL.with_suffix(".json"))
    wide = Architecture((8, 16, 24, 40), 24)
    model = CRNN(len(spec.charset) + 1, wide)
    export(model, tmp_path / "wide", ModelSpec(spec.height, spec.width, spec.charset), {})
    document = json.loads((tmp_path / "wide" / "model.json").read_text())
    assert document["architecture"] == {"channels": [8, 16, 24, 40], "hidden": 24}
    assert Architecture.of(document) == wide

    samples = [
        Labelled(f"{i}.png", png, label)
        for i, (png, label) in enumerate(synth.generate(7, 20, synth.CHARSET_B, 4, 4))
    ]
    # The engine serves it as it serves the shipped model (its input size is the same).
    assert isinstance(OcrEngine(tmp_path / "wide" / "model.onnx").read(samples[0].image).text, str)
    finetune(samples, tmp_path / "tuned", base=tmp_path / "wide", epochs=1, threads=1, log=quiet)
    tuned = json.loads((tmp_path / "tuned" / "model.json").read_text())
    assert Architecture.of(tuned) == wide
    weights = torch.load(tmp_path / "tuned" / "model.pt", weights_only=True)
    assert weights["features.0.weight"].shape[0] == 8


def test_the_shipped_model_names_no_architecture() -> None:
    from capgate.ocr.training import CRNN, Architecture

    document = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    assert "architecture" not in document and Architecture.of(document) == Architecture()
    shipped = torch.load(DEFAULT_MODEL.with_suffix(".pt"), weights_only=True)
    CRNN(len(document["charset"]) + 1).load_state_dict(shipped)
