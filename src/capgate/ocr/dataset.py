"""An operator's labelled captchas, as `capgate ocr train` reads them (no torch needed)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}


@dataclass(frozen=True)
class Labelled:
    """One labelled image of the operator's."""

    name: str
    image: bytes
    label: str


def load_labelled(folder: Path) -> list[Labelled]:
    """Images and labels from `labels.csv` (columns file,label; images beside it or in
    images/), or else per image: from a `.txt` file of the same name beside it (what
    `keep_upstream_labels` writes), or from the file name: the name before its first '.' or
    '_'."""
    table = folder / "labels.csv"
    samples = []
    if table.is_file():
        with table.open(newline="") as f:
            for row in csv.DictReader(f):
                path = folder / "images" / row["file"]
                if not path.is_file():
                    path = folder / row["file"]
                samples.append(Labelled(row["file"], path.read_bytes(), row["label"]))
    else:
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                beside = path.with_suffix(".txt")
                if beside.is_file():
                    label = beside.read_text().strip()
                else:
                    label = path.name.split(".")[0].split("_")[0]
                samples.append(Labelled(path.name, path.read_bytes(), label))
    if not samples:
        raise ValueError(f"no labelled images in {folder} (labels.csv or label_*.png names)")
    return sorted(samples, key=lambda s: s.name)


def split(samples: Sequence[Labelled]) -> tuple[list[Labelled], list[Labelled]]:
    """Held out: every fifth image in name order; the rest trains."""
    test = [s for i, s in enumerate(samples) if i % 5 == 4]
    train = [s for i, s in enumerate(samples) if i % 5 != 4]
    return train, test
