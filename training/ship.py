"""Ship a trained OCR model as capgate's own: copy it into src/capgate/ocr, fold its
recipe into the shipped model.json's history, then refit what depends on it.

    .venv/bin/python training/ship.py training/out-generalist-6 --what "..." \\
        --realworld ../shared/data/realworld

The shipped model.json keeps every step its model grew from (`history`), numbered: the
shipped model the run started from and every run between it and this one become the next
steps, and the new `trained` names the last as its `base`. The copied model's calibration
is the old model's no longer, so it is dropped, and then refitted, with the engine chain's
rule (src/capgate/ocr/ddddocr.json), by `training/calibrate.py`: the same commands as
training/README.md's "Calibrated confidence" and "The engine chain" (`--no-refit` leaves
that to you; the shipped model has no calibration until then).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "capgate" / "ocr"
FILES = ("model.onnx", "model.pt")
# What a run's model.json carries that does not belong in the shipped one: the machine's
# own font paths (the recipe keeps their count).
DROPPED = ("varied_font_files",)


def _cleaned(record: dict[str, Any], realworld: str) -> dict[str, Any]:
    """A run's record without this machine's paths: no font files, `realworld` as given."""
    record = {k: v for k, v in record.items() if k not in DROPPED}
    if "realworld" in record:
        record["realworld"] = realworld
    sessions = []
    for session in record.get("sessions", []):
        options = session.get("options")
        if isinstance(options, dict) and "realworld" in options:
            session = {**session, "options": {**options, "realworld": realworld}}
        sessions.append(session)
    if sessions:
        record["sessions"] = sessions
    return record


def merge(new: dict[str, Any], what: str, realworld: str) -> dict[str, Any]:
    """A run's model.json as the shipped one. A run's `history` lists what it grew from,
    newest first: the runs it continued (step "base"), then the numbered steps of the
    shipped model it started from, oldest first. The shipped history numbers them all,
    oldest first, and the new `trained` names the last as its `base`. Input size and
    alphabet are the run's; no calibration (it is refitted for the new model)."""
    numbered = [h for h in new.get("history", []) if isinstance(h.get("step"), int)]
    grown = [h for h in new.get("history", []) if not isinstance(h.get("step"), int)]
    history = [_cleaned(h, realworld) for h in numbered]
    step = max((int(h["step"]) for h in history), default=-1)
    for record in reversed(grown):  # oldest first
        step += 1
        history.append({**_cleaned(record, realworld), "step": step})
    trained = _cleaned(new["trained"], realworld)
    trained["what"] = what
    if step >= 0:
        trained["base"] = f"step {step}"
    document = {k: v for k, v in new.items() if k not in ("trained", "history", "calibration")}
    document["trained"] = trained
    document["history"] = history
    return document


def refit_commands(realworld: Path) -> list[list[str]]:
    """calibrate.py for capgate's model, then for the chain with ddddocr (which needs the
    new model's calibration, so it comes second)."""
    script = str(ROOT / "training" / "calibrate.py")
    python = sys.executable
    where = ["--realworld", str(realworld)]
    chain = ["--engine", "ddddocr", *where, "--generated", "1000", "--varied", "1000"]
    return [[python, script, *where, "--write"], [python, script, *chain, "--write"]]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("out", type=Path, help="a train_generalist.py output folder")
    parser.add_argument("--what", required=True, help="one line: what this model is")
    parser.add_argument(
        "--realworld",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "realworld",
        help="the labelled real sets, for the refit",
    )
    parser.add_argument("--no-refit", action="store_true", help="only copy and record")
    args = parser.parse_args()

    missing = [name for name in (*FILES, "model.json") if not (args.out / name).is_file()]
    if missing:
        raise SystemExit(f"{args.out}: no {', '.join(missing)} (is it a finished run?)")
    if not args.no_refit and not args.realworld.is_dir():
        raise SystemExit(f"--realworld {args.realworld}: no such folder (or pass --no-refit)")
    try:
        new = json.loads((args.out / "model.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SystemExit(f"{args.out / 'model.json'}: unreadable ({error})") from None
    if not isinstance(new, dict) or not isinstance(new.get("trained"), dict):
        raise SystemExit(f"{args.out / 'model.json'}: no 'trained' record (not a training run's)")
    # Recorded as the README's commands name it: relative to the project's root.
    relative = Path("..", "shared", "data", "realworld")
    document = merge(new, args.what, str(relative))
    for name in FILES:
        shutil.copyfile(args.out / name, SHIPPED / name)
    (SHIPPED / "model.json").write_text(
        json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    grew = document["trained"].get("base")
    print(f"shipped {args.out}" + (f", grown from {grew}" if grew else ""))
    if args.no_refit:
        print("now refit:")
        for command in refit_commands(args.realworld):
            print("  " + " ".join(command))
        return
    for command in refit_commands(args.realworld):
        print("$ " + " ".join(command), flush=True)
        subprocess.run(command, check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
