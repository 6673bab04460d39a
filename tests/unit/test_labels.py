"""Upstream answers kept as labels, and the folders `capgate ocr train` reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from capgate.labels import LabelKeeper
from capgate.ocr import synth
from capgate.ocr.dataset import load_labelled, split


def test_kept_labels_are_read_back_and_forgotten(tmp_path: Path) -> None:
    keeper = LabelKeeper(tmp_path / "labels")
    (first, first_label), (second, _) = synth.generate(3, 2, synth.CHARSET_B, 4, 4)

    async def run() -> None:
        await keeper.keep(1, first, first_label)
        await keeper.keep(2, second, "two words")
        await keeper.keep(3, b"not an image", "X")  # nothing a training run could read
        await keeper.keep(4, second, "")
        await keeper.forget(2)
        await keeper.forget(99)  # never kept: nothing to do

    asyncio.run(run())
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["1.png", "1.txt"]
    (sample,) = load_labelled(tmp_path / "labels")
    assert (sample.name, sample.image, sample.label) == ("1.png", first, first_label)


def test_label_sources_csv_sidecar_and_file_name(tmp_path: Path) -> None:
    png = synth.generate(4, 1, synth.CHARSET_B, 4, 4)[0][0]
    named = tmp_path / "named"
    named.mkdir()
    (named / "AB12_1.png").write_bytes(png)
    (named / "7.png").write_bytes(png)
    (named / "7.txt").write_text("ab cd\n")
    (named / ".8.png.partial").write_bytes(png)
    (named / "notes.txt").write_text("not a label")
    assert [(s.name, s.label) for s in load_labelled(named)] == [
        ("7.png", "ab cd"),
        ("AB12_1.png", "AB12"),
    ]
    table = tmp_path / "table"
    (table / "images").mkdir(parents=True)
    (table / "images" / "a.png").write_bytes(png)
    (table / "labels.csv").write_text("file,label\na.png,XY9\n")
    assert [(s.name, s.label) for s in load_labelled(table)] == [("a.png", "XY9")]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no labelled images"):
        load_labelled(tmp_path / "empty")
    samples = load_labelled(named) * 5
    train, test = split(samples)
    assert (len(train), len(test)) == (8, 2)
