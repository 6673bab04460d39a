"""training/ship.py: a trained model's record folded into the shipped model.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import TRAINING, training_script

SHIP = TRAINING / "ship.py"
ship = training_script("ship")


def _run(history: list[dict[str, object]]) -> dict[str, object]:
    """A train_generalist.py model.json: its recipe, and what it grew from, newest first."""
    return {
        "height": 32,
        "width": 128,
        "charset": "0123456789abc",
        "trained": {
            "what": "a run",
            "base": "out-generalist-6/model.pt",
            "realworld": "/home/someone/shared/data/realworld",
            "varied_font_files": ["/usr/share/fonts/a.ttf"],
            "sessions": [{"from_step": 0, "options": {"realworld": "/home/x", "lr": 0.1}}],
        },
        "history": history,
    }


SHIPPED_STEPS: list[dict[str, object]] = [
    {"step": 0, "what": "the first"},
    {"step": 1, "what": "the second"},
]


def test_every_model_the_run_grew_from_becomes_a_numbered_step() -> None:
    """A run continued from another run, itself from the shipped model: both become steps,
    oldest first, after the shipped model's own."""
    history: list[dict[str, object]] = [
        {"step": "base", "what": "run 6", "varied_font_files": ["/x.ttf"], "realworld": "/a"},
        {"step": "base", "what": "the shipped model", "base": "step 1"},
        *SHIPPED_STEPS,
    ]
    merged = ship.merge(_run(history), "the new one", "../shared/data/realworld")
    steps = [(h["step"], h["what"]) for h in merged["history"]]
    assert steps == [(0, "the first"), (1, "the second"), (2, "the shipped model"), (3, "run 6")]
    assert merged["history"][3] == {
        "step": 3,
        "what": "run 6",
        "realworld": "../shared/data/realworld",
    }
    trained = merged["trained"]
    assert trained["what"] == "the new one" and trained["base"] == "step 3"
    assert trained["realworld"] == "../shared/data/realworld"
    assert trained["sessions"][0]["options"] == {"realworld": "../shared/data/realworld", "lr": 0.1}
    assert "varied_font_files" not in trained  # this machine's paths stay out of the package


def test_the_input_size_and_alphabet_are_the_runs_and_there_is_no_calibration() -> None:
    merged = ship.merge(_run([{"step": "base", "what": "shipped"}]), "x", "r")
    assert (merged["width"], merged["charset"]) == (128, "0123456789abc")
    assert "calibration" not in merged  # the old model's: refitted for the new one
    assert [h["step"] for h in merged["history"]] == [0]
    json.dumps(merged)  # still a JSON document


def test_a_run_from_scratch_has_no_history() -> None:
    merged = ship.merge(_run([]), "x", "r")
    assert merged["history"] == []
    assert merged["trained"]["base"] == "out-generalist-6/model.pt"  # the run's own record


def test_the_shipped_model_json_has_a_history_to_extend() -> None:
    shipped = json.loads((ship.SHIPPED / "model.json").read_text(encoding="utf-8"))
    steps = [int(h["step"]) for h in shipped["history"]]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert shipped["trained"]["base"] == f"step {steps[-1]}"


def _ship_elsewhere(tmp_path: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """ship.py run from a copy outside the project, so that a defect here could never
    overwrite the package's own model: it ships into `tmp_path/repo/src/capgate/ocr`."""
    script = tmp_path / "repo" / "training" / "ship.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_bytes(SHIP.read_bytes())
    return subprocess.run(
        [sys.executable, str(script), str(out), "--what", "x", "--no-refit"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_folder_without_a_model_is_a_one_line_error(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    done = _ship_elsewhere(tmp_path, out)
    assert done.returncode != 0
    assert "no model.onnx, model.pt, model.json" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_model_json_without_a_training_record_is_a_one_line_error(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    for name in ("model.onnx", "model.pt"):
        (out / name).write_bytes(b"")
    for text in ("{not json", '{"height": 32}'):
        (out / "model.json").write_text(text, encoding="utf-8")
        done = _ship_elsewhere(tmp_path, out)
        assert done.returncode != 0
        assert "model.json:" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "repo" / "src").exists()  # nothing shipped
