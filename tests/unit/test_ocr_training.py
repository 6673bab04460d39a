"""Fine-tuning on an operator's own images (needs torch: training/README.md, "Install the
training stack"). Each run trains for a few seconds on a few dozen small images."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from capgate.cli import main
from capgate.ocr import synth
from capgate.ocr.dataset import Labelled, load_labelled
from capgate.ocr.engine import DEFAULT_MODEL, OcrEngine

torch = pytest.importorskip("torch")


def write_named(folder: Path, seed: int = 4242, n: int = 30) -> list[Labelled]:
    """`n` captchas named by their labels (`AB12_3.png`), read back as training reads them."""
    folder.mkdir(parents=True)
    for i, (png, label) in enumerate(synth.generate(seed, n, synth.CHARSET_B, 4, 4)):
        (folder / f"{label}_{i}.png").write_bytes(png)
    return load_labelled(folder)


def quiet(_: str) -> None:
    pass


def test_finetune_reads_file_name_labels_reports_and_exports(tmp_path: Path) -> None:
    from capgate.ocr.training import finetune

    samples = write_named(tmp_path / "mine")
    (tmp_path / "mine" / "notes.txt").write_text("not an image")
    assert len(load_labelled(tmp_path / "mine")) == 30
    assert all(len(s.label) == 4 for s in samples)
    report = finetune(samples, tmp_path / "out", epochs=1, threads=1, log=quiet)
    assert (report.train_images, report.test_images, report.skipped) == (24, 6, 0)
    assert 0.0 <= report.accuracy_before <= 1.0 and 0.0 <= report.accuracy_after <= 1.0
    engine = OcrEngine(tmp_path / "out" / "model.onnx")
    assert isinstance(engine.read(samples[0].image).text, str)
    assert (tmp_path / "out" / "model.pt").is_file()


def test_the_best_epoch_is_kept_not_the_last(tmp_path: Path) -> None:
    """At a learning rate that wrecks the weights, no epoch beats the starting model: the
    weights written are the starting model's, not the last epoch's."""
    from capgate.ocr.training import finetune

    samples = write_named(tmp_path / "mine")
    lines: list[str] = []
    report = finetune(samples, tmp_path / "out", epochs=2, lr=1.0, threads=1, log=lines.append)
    assert report.best_epoch == 0 and report.accuracy_after == report.accuracy_before
    assert any("no epoch beat the starting model" in line for line in lines)
    start = torch.load(DEFAULT_MODEL.with_suffix(".pt"), weights_only=True)
    kept = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    assert all(torch.equal(start[name], kept[name]) for name in start)
    # At a sane rate, the epoch kept is the one that read the held-out images best.
    lines.clear()
    report = finetune(samples, tmp_path / "out2", epochs=3, threads=1, log=lines.append)
    scores = [
        float(m[1]) for line in lines if (m := re.match(r"epoch \d/3: .*held-out ([\d.]+)%", line))
    ]
    assert len(scores) == 3
    assert report.accuracy_after * 100 == pytest.approx(max(report.accuracy_before * 100, *scores))
    meta = json.loads((tmp_path / "out2" / "model.json").read_text())["finetuned"]
    assert meta["best_epoch"] == report.best_epoch and meta["holdout"] == 0.2


def test_base_starts_from_any_model_and_holdout_sets_the_split(tmp_path: Path) -> None:
    from capgate.ocr.training import finetune

    samples = write_named(tmp_path / "mine")
    first = finetune(samples, tmp_path / "first", epochs=1, holdout=0.5, threads=1, log=quiet)
    assert (first.train_images, first.test_images) == (15, 15)
    # From the folder the first run wrote: it starts where that one ended, on the same split.
    second = finetune(
        samples,
        tmp_path / "second",
        base=tmp_path / "first",
        epochs=1,
        holdout=0.5,
        threads=1,
        log=quiet,
    )
    assert second.accuracy_before == first.accuracy_after
    meta = json.loads((tmp_path / "second" / "model.json").read_text())["finetuned"]
    assert meta["base"] == str(tmp_path / "first" / "model.onnx")
    tenth = finetune(samples, tmp_path / "third", epochs=1, holdout=0.1, threads=1, log=quiet)
    assert (tenth.train_images, tenth.test_images) == (27, 3)


def test_progress_lines_carry_an_eta(tmp_path: Path) -> None:
    """Plain lines (no terminal needed): the settings, steps within an epoch at least every
    `progress_every` seconds, and each epoch, each with an ETA."""
    from capgate.ocr.training import duration, finetune

    samples = write_named(tmp_path / "mine")
    ticks = itertools.count()
    lines: list[str] = []
    finetune(
        samples,
        tmp_path / "out",
        epochs=2,
        batch=8,
        threads=1,
        log=lines.append,
        progress_every=0,
        clock=lambda: float(next(ticks)),
    )
    assert lines[0].startswith("fine-tuning ") and "epochs 2, batch 8" in lines[0]
    steps = [
        line for line in lines if re.fullmatch(r"epoch \d/2 step \d/3: loss [\d.]+, ETA .+", line)
    ]
    epochs = [line for line in lines if re.fullmatch(r"epoch \d/2: loss .*, ETA .+", line)]
    assert len(steps) == 4 and len(epochs) == 2, lines
    assert epochs[-1].endswith("ETA 0 s")
    assert (duration(42), duration(185), duration(3720)) == ("42 s", "3 min 05 s", "1 h 02 min")


def test_the_command_trains_installs_and_its_model_path_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_named(tmp_path / "mine")
    out, data = tmp_path / "capgate-ocr-model", tmp_path / "server-data"
    train = ["ocr", "train", "--data", str(tmp_path / "mine"), "--out", str(out)]
    assert main([*train, "--epochs", "1", "--threads", "1", "--install", str(data)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^epoch 1/1: .*ETA 0 s$", printed, re.MULTILINE), printed
    assert f"model written to {out} (try it: capgate solve --model {out} " in printed
    assert sorted(p.name for p in (data / "ocr").iterdir()) == [
        "model.json",
        "model.onnx",
        "model.pt",
    ]
    image = next((tmp_path / "mine").glob("*.png"))
    for chosen in (
        ["--model", str(out)],
        ["--model", str(out / "model.onnx")],
        ["--data", str(data)],
    ):
        assert main(["solve", "--quiet", *chosen, str(image)]) == 0
        assert capsys.readouterr().out.strip() != ""
    # A second run would replace the model: refused, unless --force; --base takes the first.
    assert main([*train, "--epochs", "1", "--threads", "1"]) == 1
    assert "already holds a model" in capsys.readouterr().err
    assert main([*train, "--epochs", "1", "--threads", "1", "--force", "--base", str(out)]) == 0
    assert "kept" in capsys.readouterr().out
