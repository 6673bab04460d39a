"""Fine-tuning on an operator's own images (needs torch: `pip install 'capgate[train]'`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from capgate.ocr import synth
from capgate.ocr.engine import OcrEngine

pytest.importorskip("torch")


def test_finetune_reads_file_name_labels_reports_and_exports(tmp_path: Path) -> None:
    from capgate.ocr.dataset import load_labelled
    from capgate.ocr.training import finetune

    data = tmp_path / "mine"
    data.mkdir()
    for i, (png, label) in enumerate(synth.generate(4242, 30, synth.CHARSET_B, 4, 4)):
        (data / f"{label}_{i}.png").write_bytes(png)
    (data / "notes.txt").write_text("not an image")
    samples = load_labelled(data)
    assert len(samples) == 30 and all(len(s.label) == 4 for s in samples)
    report = finetune(samples, tmp_path / "out", epochs=1, threads=1, log=lambda _: None)
    assert (report.train_images, report.test_images, report.skipped) == (24, 6, 0)
    assert 0.0 <= report.accuracy_before <= 1.0 and 0.0 <= report.accuracy_after <= 1.0
    engine = OcrEngine(tmp_path / "out" / "model.onnx")
    assert isinstance(engine.read(samples[0].image).text, str)
    assert (tmp_path / "out" / "model.pt").is_file()
