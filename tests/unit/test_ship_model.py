"""training/ship.py: a trained model's record folded into the shipped model.json."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

SHIP = Path(__file__).resolve().parents[2] / "training" / "ship.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ship", SHIP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ship"] = module
    spec.loader.exec_module(module)
    return module


ship = _load()


def _shipped() -> dict[str, object]:
    return {
        "height": 32,
        "width": 112,
        "charset": "0123456789",
        "trained": {"what": "the model shipped now", "base": "step 1", "steps": 10},
        "history": [{"step": 0, "what": "the first"}, {"step": 1, "what": "the second"}],
        "calibration": {"raw": [0.1], "calibrated": [0.2]},
    }


def _new() -> dict[str, object]:
    return {
        "height": 32,
        "width": 128,
        "charset": "0123456789abc",
        "trained": {
            "what": "a run",
            "base": "../src/capgate/ocr/model.pt",
            "realworld": "/home/someone/shared/data/realworld",
            "varied_font_files": ["/usr/share/fonts/a.ttf"],
            "sessions": [{"from_step": 0, "options": {"realworld": "/home/x", "lr": 0.1}}],
        },
    }


def test_the_shipped_model_becomes_the_next_step_of_the_history() -> None:
    merged = ship.merge(_shipped(), _new(), "the new one", "../shared/data/realworld")
    assert [h["step"] for h in merged["history"]] == [0, 1, 2]
    assert merged["history"][2] == {"step": 2, **_shipped()["trained"]}  # type: ignore[dict-item]
    trained = merged["trained"]
    assert trained["what"] == "the new one" and trained["base"] == "step 2"
    assert trained["realworld"] == "../shared/data/realworld"
    assert trained["sessions"][0]["options"] == {"realworld": "../shared/data/realworld", "lr": 0.1}
    assert "varied_font_files" not in trained  # this machine's paths stay out of the package


def test_the_input_size_and_alphabet_are_the_new_models_and_the_old_calibration_goes() -> None:
    merged = ship.merge(_shipped(), _new(), "x", "r")
    assert (merged["width"], merged["charset"]) == (128, "0123456789abc")
    assert "calibration" not in merged  # the old model's: refitted for the new one
    json.dumps(merged)  # still a JSON document


def test_the_shipped_model_json_has_a_history_to_extend() -> None:
    shipped = json.loads((ship.SHIPPED / "model.json").read_text(encoding="utf-8"))
    steps = [int(h["step"]) for h in shipped["history"]]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert shipped["trained"]["base"] == f"step {steps[-1]}"


def test_a_folder_without_a_model_is_a_one_line_error(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, str(SHIP), str(tmp_path), "--what", "x", "--no-refit"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "no model.onnx, model.pt, model.json" in done.stderr
    assert "Traceback" not in done.stderr
