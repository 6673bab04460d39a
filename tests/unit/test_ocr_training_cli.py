"""`capgate ocr train` and `capgate solve` as a user meets them, without torch: one-line
errors for what was given wrong, model paths given as a folder or a file, defaults shown in
--help, the output never silently replaced, and the server's task options."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from capgate.batch import TaskOptions
from capgate.cli import main
from capgate.ocr import synth
from capgate.ocr.dataset import split
from capgate.ocr.engine import DEFAULT_MODEL
from capgate.ocr.grammar import evaluate
from capgate.ocr.model_files import (
    ModelFileError,
    installed_model,
    resolve_base,
    resolve_model,
    split_holdout,
)


def error_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command line; check it failed with exactly one line, and give that line."""
    assert main(list(argv)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("capgate: error: "), err
    return err.removeprefix("capgate: error: ").strip()


def labelled(folder: Path, n: int = 6, seed: int = 11) -> list[tuple[str, str]]:
    """`n` captchas in `folder`/images with a labels.csv; their (file, label)s."""
    (folder / "images").mkdir(parents=True)
    rows = []
    for i, (png, label) in enumerate(synth.generate(seed, n, synth.CHARSET_B, 4, 4)):
        (folder / "images" / f"{i}.png").write_bytes(png)
        rows.append((f"{i}.png", label))
    (folder / "labels.csv").write_text("file,label\n" + "".join(f"{f},{t}\n" for f, t in rows))
    return rows


def model_folder(folder: Path, *names: str) -> Path:
    """A copy of the shipped model's files `names` ("model.onnx", ...) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(DEFAULT_MODEL.with_name(name), folder / name)
    return folder


def test_train_tells_each_data_mistake_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ("--out", str(tmp_path / "out"))
    assert "no folder" in error_of(capsys, "ocr", "train", "--data", str(tmp_path / "x"), *out)
    data = tmp_path / "mine"
    rows = labelled(data)
    message = error_of(capsys, "ocr", "train", "--data", str(data / "labels.csv"), *out)
    assert "is a file, not a folder: give the folder it is in" in message
    (data / "labels.csv").write_text("filename,text\n" + "".join(f"{f},{t}\n" for f, t in rows))
    message = error_of(capsys, "ocr", "train", "--data", str(data), *out)
    assert "must be headed file,label" in message and "filename,text" in message
    (data / "labels.csv").write_text("file,label\n" + "".join(f"{f},{t}\n" for f, t in rows))
    (data / "images" / "2.png").unlink()
    (data / "images" / "4.png").unlink()
    message = error_of(capsys, "ocr", "train", "--data", str(data), *out)
    assert "lists 2.png and 1 more, not found in" in message
    (data / "labels.csv").write_text("\ufefffile,label\n0.png,AB12\n", encoding="utf-8")
    assert "byte-order mark" in error_of(capsys, "ocr", "train", "--data", str(data), *out)
    (data / "labels.csv").write_text("file,label\n0.png\n")
    assert "line 2: 1 columns" in error_of(capsys, "ocr", "train", "--data", str(data), *out)
    assert not (tmp_path / "out").exists()


def test_train_checks_its_options_and_base_model_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "mine"
    labelled(data)
    train = ("ocr", "train", "--data", str(data), "--out", str(tmp_path / "out"))
    assert "--holdout" in error_of(capsys, *train, "--holdout", "1")
    assert "--epochs" in error_of(capsys, *train, "--epochs", "0")
    # The base model: its .json, then its torch weights, must be beside it.
    base = model_folder(tmp_path / "base", "model.onnx")
    message = error_of(capsys, *train, "--base", str(base))
    assert message.endswith("has no model.json beside it (the model's input size and alphabet)")
    model_folder(base, "model.json")
    assert "has no model.pt beside it" in error_of(capsys, *train, "--base", str(base))
    assert "no model at" in error_of(capsys, *train, "--base", str(tmp_path / "nothing"))


def test_train_never_replaces_a_model_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = model_folder(tmp_path / "capgate-ocr-model", "model.json")
    before = (out / "model.json").read_bytes()
    missing = str(tmp_path / "no-data")
    message = error_of(capsys, "ocr", "train", "--data", missing, "--out", str(out))
    assert message == f"{out} already holds a model: give another --out, or --force to replace it"
    # With --force the run goes on (here to the next mistake: the data folder).
    forced = error_of(capsys, "ocr", "train", "--data", missing, "--out", str(out), "--force")
    assert forced.startswith("no folder")
    assert (out / "model.json").read_bytes() == before
    # An empty folder, or one without a model in it, is used as it is.
    (tmp_path / "empty").mkdir()
    message = error_of(capsys, "ocr", "train", "--data", missing, "--out", str(tmp_path / "empty"))
    assert message.startswith("no folder")


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["ocr", "train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "(default: capgate-ocr-model)",
        "(default: the shipped model)",
        "(default: 20)",
        "(default: 0.2: every fifth)",
        "(default: 32)",
        "(default: 0.001)",
        "(default: 0)",
        "--force",
    ):
        assert shown in text, shown
    with pytest.raises(SystemExit):
        main(["solve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("--numeric {0,1,2}", "--min-length", "--max-length", "--data SERVER_DATA"):
        assert shown in text, shown
    assert "(default: 8)" in text and "(default: text)" in text


def test_a_model_is_named_by_its_folder_or_any_of_its_files(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "capgate-ocr-model", "model.onnx", "model.json")
    onnx = folder / "model.onnx"
    assert resolve_model(folder) == onnx
    assert resolve_model(onnx) == onnx
    assert resolve_model(folder / "model.json") == onnx
    with pytest.raises(ModelFileError, match=r"has no model\.pt beside it"):
        resolve_base(folder)
    model_folder(folder, "model.pt")
    assert resolve_base(folder / "model.pt") == onnx
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ModelFileError, match="is not a model"):
        resolve_model(tmp_path / "notes.txt")
    with pytest.raises(ModelFileError, match=r"holds no model\.onnx"):
        resolve_model(tmp_path)
    # A server data directory: its installed model, or None.
    data = tmp_path / "data"
    data.mkdir()
    assert installed_model(data) is None
    model_folder(data / "ocr", "model.onnx")
    with pytest.raises(ModelFileError, match=r"has no model\.json beside it"):
        installed_model(data)
    model_folder(data / "ocr", "model.json")
    assert installed_model(data) == data / "ocr" / "model.onnx"
    with pytest.raises(ModelFileError, match="no data directory"):
        installed_model(tmp_path / "elsewhere")


def test_solve_reads_with_a_model_folder_or_a_data_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (png, label), *_ = synth.generate(31, 1, synth.CHARSET_B, 4, 4)
    image = tmp_path / "c.png"
    image.write_bytes(png)
    folder = model_folder(tmp_path / "capgate-ocr-model", "model.onnx", "model.json")
    assert main(["solve", "--quiet", "--model", str(folder), str(image)]) == 0
    assert capsys.readouterr().out == f"{label}\n"
    data = tmp_path / "data"
    model_folder(data / "ocr", "model.onnx", "model.json")
    assert main(["solve", "--data", str(data), str(image)]) == 0
    done = capsys.readouterr()
    assert done.out == f"{label}\n" and "shipped" not in done.err
    (tmp_path / "empty-data").mkdir()
    assert main(["solve", "--data", str(tmp_path / "empty-data"), str(image)]) == 0
    done = capsys.readouterr()
    assert done.out == f"{label}\n" and "reading with the shipped one" in done.err
    (folder / "model.json").unlink()
    message = error_of(capsys, "solve", "--model", str(folder), str(image))
    assert message.endswith("has no model.json beside it (the model's input size and alphabet)")
    assert "not both" in error_of(capsys, "solve", "--model", str(folder), "--data", str(data), "x")
    message = error_of(
        capsys, "solve", "--data", str(data), "--server", "http://x", "--key", "k", "x"
    )
    assert "not with --server" in message


def test_solve_takes_the_servers_task_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = synth.generate(5, 4, synth.CHARSET_B, 4, 4)
    paths = []
    for i, (png, _) in enumerate(samples):
        paths.append(str(tmp_path / f"{i}.png"))
        (tmp_path / f"{i}.png").write_bytes(png)
    assert main(["solve", "--quiet", "--numeric", "1", *paths]) == 0
    assert all(a.isdigit() for a in capsys.readouterr().out.split())
    assert main(["solve", "--quiet", "--numeric", "2", "--max-length", "3", *paths]) == 0
    answers = capsys.readouterr().out.splitlines()
    assert all(a.isalpha() and 0 < len(a) <= 3 for a in answers), answers
    assert main(["solve", "--quiet", "--min-length", "6", "--max-length", "6", *paths]) == 0
    assert all(len(a) == 6 for a in capsys.readouterr().out.splitlines())
    message = error_of(capsys, "solve", "--min-length", "5", "--max-length", "3", *paths)
    assert message == "the minimum length (5) is above the maximum (3)"
    assert "phrase or a sum" in error_of(capsys, "solve", "--math", "--phrase", *paths)
    # A sum is answered with its value, as the server answers it.
    sums = synth.generate(8, 4, "", 0, 0, kind="math")
    for i, (png, _) in enumerate(sums):
        (tmp_path / f"sum{i}.png").write_bytes(png)
    sum_paths = [str(tmp_path / f"sum{i}.png") for i in range(len(sums))]
    assert main(["solve", "--quiet", "--math", *sum_paths]) == 0
    values = capsys.readouterr().out.splitlines()
    right = sum(v == evaluate(label) for v, (_, label) in zip(values, sums, strict=True))
    assert right >= 3, (values, [label for _, label in sums])
    assert TaskOptions(numeric=1, max_length=5, math=True).params() == {
        "numeric": 1,
        "maxLength": 5,
        "math": True,
    }
    assert TaskOptions().params() == {}


def test_the_held_out_fraction_spreads_evenly() -> None:
    names = list(range(30))
    assert split_holdout(names, 0.2) == split(names)  # type: ignore[arg-type]
    train, test = split_holdout(names, 0.1)
    assert test == [9, 19, 29] and len(train) == 27
    train, test = split_holdout(names, 0.5)
    assert test == list(range(1, 30, 2))
    train, test = split_holdout(names, 1 / 3)
    assert len(test) == 10 and test[:2] == [2, 5]
    with pytest.raises(ModelFileError):
        split_holdout(names, 0.0)
