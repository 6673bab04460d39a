"""Train a generalist OCR model (issue 16, item 1): the shipped CRNN on a mixture of varied
synthetic captchas (`training/varied.py`), the `captcha` package's (`capgate.ocr.synth`)
and the real sets cloud4d, henan4d and tjsp5 (every fifth image held out for scoring).
hfut4, weibo4, ems6 and tongji4 are never trained on: they measure styles never seen.

    nice -n 10 .venv/bin/python training/train_generalist.py --base src/capgate/ocr/model.pt \
        --steps 12000 > training/out-generalist/train.log 2>&1 &

Batches are drawn on the fly, each from a seed of its own (`seed:step`), so a run is
reproducible and resumes exactly: rerun the same command with the same `--out` and it goes
on from the last checkpoint (written every `--checkpoint-minutes`; SIGTERM or Ctrl-C writes
one, exports and stops). The model (model.onnx, model.json with the recipe, model.pt) is
exported to `--out` at the end.

    .venv/bin/python training/train_generalist.py --evaluate training/out-generalist

reads the never-seen sets, the held-out fifths and the generated sets A and B with the new
model, the shipped one and ddddocr, one image at a time on one thread, and prints a table.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import signal
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

import varied

from capgate.ocr import synth
from capgate.ocr.dataset import load_labelled
from capgate.ocr.engine import DEFAULT_MODEL, ModelSpec, OcrEngine, on_white
from capgate.ocr.model_files import split_holdout

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "realworld"
TRAIN_SETS = ("cloud4d", "henan4d", "tjsp5")
NEVER_SEEN = ("hfut4", "weibo4", "ems6", "tongji4")  # never trained on
HOLDOUT = 0.2  # every fifth image of each training set, in file order, is held out
# The seeds benchmarks/ocr.py reads sets B and A with.
BENCH_SEEDS = {"B": 12_345, "A": 23_456}
VALIDATION_SEED = 700_000  # generated images watched during training (never trained on)
U8 = npt.NDArray[np.uint8]


def log(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def gray(image: Image.Image, spec: ModelSpec) -> U8:
    """The image as the engine prepares it, before standardizing: grayscale, model-sized."""
    small = (
        on_white(image).convert("L").resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    )
    return np.asarray(small, dtype=np.uint8)


def real_split(root: Path, name: str) -> tuple[list[tuple[bytes, str]], list[tuple[bytes, str]]]:
    """(train, held out) of a real set: every fifth image (file order) held out."""
    samples = [(s.image, s.label) for s in load_labelled(root / name)]
    train, test = split_holdout(samples, HOLDOUT)
    return train, test


# --- the mixture ---------------------------------------------------------------------------


class Mixture:
    """Draws batches: varied synthetic, `captcha`-package and real images, by shares."""

    def __init__(self, args: argparse.Namespace, spec: ModelSpec) -> None:
        from captcha.image import ImageCaptcha

        self.args = args
        self.spec = spec
        self.fonts = varied.find_fonts()
        self.styles = parse_styles(args.styles)
        extra = sorted(
            str(p)
            for d in ("liberation", "freefont")
            for p in (Path("/usr/share/fonts/truetype") / d).glob("*.ttf")
        )
        self.default = ImageCaptcha(width=160, height=60)
        self.others = ImageCaptcha(width=160, height=60, fonts=extra) if extra else self.default
        self.captcha_fonts = [Path(f).name for f in extra]
        images: list[U8] = []
        self.labels: list[str] = []
        self.real_counts: dict[str, int] = {}
        for name in args.train_sets:
            train, _ = real_split(args.realworld, name)
            usable = [(b, t) for b, t in train if t and set(t) <= set(spec.charset)]
            self.real_counts[name] = len(usable)
            for data, label in usable:
                images.append(gray(Image.open(io.BytesIO(data)), spec))
                self.labels.append(label)
        self.real: U8 = (
            np.stack(images) if images else np.zeros((0, spec.height, spec.width), np.uint8)
        )

    def captcha_image(self, rng: random.Random) -> tuple[Image.Image, str]:
        """One image of the `captcha` package, as training/train_ocr.py draws them."""
        kind = rng.random()
        if kind < self.args.share_math:
            label = synth.math_label(rng)
        elif kind < self.args.share_math + self.args.share_phrase:
            label = synth.phrase_label(rng)
        elif rng.random() < 0.7:
            label = synth.random_label(rng, synth.CHARSET_B, 4, 4)
        else:
            label = synth.random_label(rng, synth.CHARSET_A, 4, 6)
        generator = self.others if rng.random() < 0.5 else self.default
        with synth._seeded(rng):
            image: Image.Image = generator.generate_image(synth.drawn(label))
        if rng.random() < 0.15:
            image = Image.eval(image.convert("L"), lambda v: 255 - v)
        return image, label

    def batch(self, step: int, size: int) -> tuple[U8, list[str]]:
        """The batch of `step`: the same step always gives the same images."""
        rng = random.Random(f"{self.args.seed}:{step}")
        out = np.empty((size, self.spec.height, self.spec.width), np.uint8)
        labels: list[str] = []
        for i in range(size):
            roll = rng.random()
            if roll < self.args.share_real and len(self.labels):
                k = rng.randrange(len(self.labels))
                out[i], label = self.real[k], self.labels[k]
            elif roll < self.args.share_real + self.args.share_captcha:
                image, label = self.captcha_image(rng)
                out[i] = gray(image, self.spec)
            else:
                image, label = varied.render(
                    rng,
                    self.fonts,
                    styles=self.styles,
                    min_pattern_size=self.args.min_pattern_size,
                    baseline=self.args.baseline,
                    clipped=self.args.clipped,
                    frame=self.args.frame,
                    bands=self.args.bands,
                    jump=self.args.jump,
                    pixel=self.args.pixel,
                )
                out[i] = gray(image, self.spec)
            labels.append(label)
        return out, labels


# --- training ------------------------------------------------------------------------------


def standardize(batch: Any) -> Any:
    """engine.preprocess's per-image standardization, on a uint8 batch (N, H, W)."""
    x = batch.float() / 255.0
    mean = x.mean(dim=(1, 2), keepdim=True)
    std = x.std(dim=(1, 2), keepdim=True, unbiased=False)
    return ((x - mean) / (std + 1e-3)).unsqueeze(1)


def parse_styles(text: str) -> tuple[tuple[str, float], ...]:
    """`filled=0.72,hollow=0.12,...` as varied.render takes it; empty: varied.STYLES."""
    if not text:
        return varied.STYLES
    known = set(varied.STYLE_NAMES)
    styles = []
    for item in text.split(","):
        name, _, weight = item.partition("=")
        if name not in known:
            raise SystemExit(f"--styles: {name!r} is none of {sorted(known)}")
        styles.append((name, float(weight)))
    return tuple(styles)


def recipe(args: argparse.Namespace, mixture: Mixture | None = None) -> dict[str, object]:
    """Every option of the run, for model.json."""
    document: dict[str, object] = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("evaluate", "eval_n", "eval_limit", "stop_at")
    }
    if mixture is not None:
        document["varied_fonts"] = len(mixture.fonts)
        document["varied_font_files"] = [p.name for p in mixture.fonts]
        document["captcha_fonts"] = ["the package's own", *mixture.captcha_fonts]
        document["real_train_images"] = mixture.real_counts
    return document


def lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up, then a cosine down to 5% of --lr at --steps."""
    lr, warmup, steps = float(args.lr), int(args.warmup), int(args.steps)
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(args: argparse.Namespace) -> None:
    import torch

    from capgate.ocr.training import CRNN, Architecture, ctc_loss, duration, export, greedy

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    spec = ModelSpec.load(DEFAULT_MODEL.with_suffix(".json"))
    spec = ModelSpec(spec.height, spec.width, spec.charset)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.pt"

    started_loading = time.monotonic()
    mixture = Mixture(args, spec)
    log(
        f"data: {len(mixture.fonts)} fonts for varied images, real {mixture.real_counts}"
        f" ({time.monotonic() - started_loading:.0f} s to load)"
    )
    a, b, c, d = args.channels
    model = CRNN(len(spec.charset) + 1, Architecture((a, b, c, d), args.hidden))
    if args.base:
        model.load_state_dict(torch.load(args.base, weights_only=True))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step, trained_seconds = 0, 0.0
    # Each start of the run: the step it started from and its options (a resumed run may
    # have been given other ones).
    sessions: list[dict[str, object]] = []
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        step, trained_seconds = int(state["step"]), float(state["seconds"])
        sessions = list(state.get("sessions", [{"from_step": 0, "steps": None}]))
        if state["recipe"] != recipe(args):
            log(f"note: the checkpoint's options were {state['recipe']}")
        log(f"resumed from {checkpoint} at step {step} ({duration(trained_seconds)} trained)")
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sessions.append({"from_step": step, "started": started_at, "options": recipe(args)})

    # Watched during training: generated images of each kind, from seeds never trained on,
    # and the first 300 held-out images of each real training set.
    watch: dict[str, tuple[Any, list[str]]] = {}
    vrng = random.Random(VALIDATION_SEED)
    pairs = [varied.render(vrng, mixture.fonts) for _ in range(300)]
    watch["varied"] = (np.stack([gray(i, spec) for i, _ in pairs]), [t for _, t in pairs])
    pairs_b = synth.named_set("A", VALIDATION_SEED + 1, 300) or []
    watch["A"] = (
        np.stack([gray(Image.open(io.BytesIO(b)), spec) for b, _ in pairs_b]),
        [t for _, t in pairs_b],
    )
    for name in args.train_sets:
        _, test = real_split(args.realworld, name)
        test = test[:300]
        watch[name] = (
            np.stack([gray(Image.open(io.BytesIO(b)), spec) for b, _ in test]),
            [t for _, t in test],
        )

    def watched() -> str:
        model.eval()
        parts = []
        with torch.no_grad():
            for name, (images, labels) in watch.items():
                guesses = greedy(model(standardize(torch.from_numpy(images))), spec.charset)
                right = sum(g.lower() == t.lower() for g, t in zip(guesses, labels, strict=True))
                parts.append(f"{name} {right / len(labels):.1%}")
        model.train()
        return ", ".join(parts)

    stop: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop.append(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def save() -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "seconds": trained_seconds,
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "recipe": recipe(args),
            "sessions": sessions,
        }
        torch.save(state, out / "checkpoint.tmp")
        os.replace(out / "checkpoint.tmp", checkpoint)

    log(f"start at step {step} of {args.steps}: {recipe(args)}")
    log(f"watched: {watched()}")
    model.train()
    clock = time.monotonic
    last_line = last_save = session_start = clock()
    paces: deque[tuple[float, int]] = deque([(session_start, step)])
    losses: deque[float] = deque(maxlen=200)
    while step < args.steps and not stop:
        if args.stop_at and step >= args.stop_at:
            log(f"stopping at step {step} (--stop-at)")
            break
        if args.minutes and trained_seconds + clock() - session_start >= args.minutes * 60:
            log(f"time budget of {args.minutes} minutes spent")
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args)
        images, labels = mixture.batch(step, args.batch)
        loss = ctc_loss(model, standardize(torch.from_numpy(images)), labels, spec.charset)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        losses.append(float(loss.item()))
        step += 1
        now = clock()
        if now - last_line >= args.progress_seconds or step == args.steps:
            paces.append((now, step))
            while len(paces) > 2 and paces[1][0] <= now - 300:
                paces.popleft()
            since, then = paces[0]
            per_step = (now - since) / max(1, step - then)
            elapsed = trained_seconds + now - session_start
            log(
                f"step {step}/{args.steps}: loss {statistics.fmean(losses):.4f},"
                f" lr {lr_at(step, args):.2e}, {per_step:.2f} s/step,"
                f" {duration(elapsed)} trained, ETA {duration(per_step * (args.steps - step))}"
            )
            last_line = now
        if now - last_save >= args.checkpoint_minutes * 60:
            trained_seconds += now - session_start
            save()
            log(f"checkpoint at step {step}; watched: {watched()}")
            session_start = last_save = clock()  # watching is not training time
    trained_seconds += clock() - session_start
    session_start = clock()
    save()
    log(
        f"stopped at step {step} ({stop[0] if stop else 'done'}), {duration(trained_seconds)}"
        f" trained; watched: {watched()}"
    )
    # The history is the base model's: its own recipe, then what it grew from.
    base_json = args.base.with_suffix(".json") if args.base else None
    base = json.loads(base_json.read_text()) if base_json and base_json.exists() else {}
    meta: dict[str, object] = {
        "trained": {
            "what": "generalist (issue 16, item 1): varied synthetic + captcha package + real",
            "script": "training/train_generalist.py",
            **recipe(args, mixture),
            "holdout": HOLDOUT,
            "steps_done": step,
            "sessions": sessions,
            "images_seen": step * args.batch,
            "minutes": round(trained_seconds / 60, 1),
        },
        "history": [{"step": "base", **base["trained"]}, *base.get("history", [])]
        if "trained" in base
        else [],
    }
    export(model, out, spec, meta)
    log(f"exported {out / 'model.onnx'}")


# --- evaluation ----------------------------------------------------------------------------


def evaluate(args: argparse.Namespace) -> None:
    """Read each set with the new model, the shipped one and ddddocr; print a table."""
    from capgate.ocr.ddddocr_engine import DdddocrEngine

    model = Path(args.evaluate)
    if model.is_dir():
        model = model / "model.onnx"
    new, shipped = OcrEngine(model, threads=1), OcrEngine(DEFAULT_MODEL, threads=1)
    dddd = DdddocrEngine(threads=1, calibrated=False)
    dddd.warm()
    own = dddd._ocr  # ddddocr's own object, its session limited to one thread
    readers: dict[str, Callable[[bytes], str]] = {
        "new": lambda png: new.read(png).text,
        "shipped": lambda png: shipped.read(png).text,
        "ddddocr": lambda png: str(own.classification(png)),
    }
    sets: list[tuple[str, Sequence[tuple[bytes, str]]]] = []
    for name in NEVER_SEEN:
        sets.append(
            (
                f"{name} (never seen, all)",
                [(s.image, s.label) for s in load_labelled(args.realworld / name)],
            )
        )
    for name in TRAIN_SETS:
        sets.append((f"{name} (trained on, held-out fifth)", real_split(args.realworld, name)[1]))
    for name, seed in BENCH_SEEDS.items():
        sets.append(
            (f"{name} (generated, seed {seed})", synth.named_set(name, seed, args.eval_n) or [])
        )
    if args.eval_limit:
        sets = [(title, samples[: args.eval_limit]) for title, samples in sets]
    times: dict[str, list[float]] = {k: [] for k in readers}
    cpu = dict.fromkeys(readers, 0.0)  # CPU seconds: steadier than wall time on a busy machine
    print(f"model: {model}, {model.stat().st_size / 1e6:.2f} MB", flush=True)
    print("| set | images | new | shipped | ddddocr |\n|---|---|---|---|---|", flush=True)
    for title, samples in sets:
        cells = []
        for engine, read in readers.items():
            read(samples[0][0])  # warm-up
            right = 0
            for png, label in samples:
                t0, c0 = time.perf_counter(), time.process_time()
                text = read(png)
                times[engine].append(time.perf_counter() - t0)
                cpu[engine] += time.process_time() - c0
                right += text.lower() == label.lower()
            cells.append(f"{right / len(samples):.1%} ({right})")
        print(f"| {title} | {len(samples)} | " + " | ".join(cells) + " |", flush=True)
    speed = {k: statistics.median(v) * 1000 for k, v in times.items()}
    cpu_ms = {k: cpu[k] * 1000 / len(times[k]) for k in readers}
    count = sum(len(v) for v in times.values()) // len(times)
    for title, figures in (("wall ms per image, median", speed), ("CPU ms per image", cpu_ms)):
        row = " | ".join(f"{figures[k]:.2f}" for k in readers)
        print(f"| {title} (one thread) | {count} | {row} |")
    print(
        f"new model: {speed['ddddocr'] / speed['new']:.1f}x ddddocr's speed (wall),"
        f" {cpu_ms['ddddocr'] / cpu_ms['new']:.1f}x (CPU)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("training/out-generalist"))
    parser.add_argument("--base", type=Path, help="start from these torch weights (model.pt)")
    parser.add_argument("--steps", type=int, default=12_000, help="batches to train")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--channels",
        type=int,
        nargs=4,
        default=[32, 64, 96, 128],
        help="the four conv blocks' channels (the shipped model's by default)",
    )
    parser.add_argument("--hidden", type=int, default=128, help="the GRU's hidden size")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--share-real", type=float, default=0.3)
    parser.add_argument(
        "--share-captcha",
        type=float,
        default=0.2,
        help="share of the captcha package's images (the rest: varied)",
    )
    parser.add_argument(
        "--share-math", type=float, default=0.05, help="of the captcha package's images: sums"
    )
    parser.add_argument(
        "--share-phrase", type=float, default=0.05, help="of the captcha package's images: phrases"
    )
    parser.add_argument(
        "--styles",
        default="",
        help="varied glyph styles and weights, e.g. filled=0.5,hollow=0.2,hatched=0.3"
        " (default: varied.STYLES)",
    )
    parser.add_argument(
        "--min-pattern-size",
        type=int,
        default=varied.MIN_PATTERN_SIZE,
        help="glyphs drawn smaller are always filled",
    )
    parser.add_argument(
        "--baseline",
        type=float,
        default=0.0,
        help="share of varied captchas drawn on the font's baseline, not glyph by glyph",
    )
    parser.add_argument(
        "--clipped",
        type=float,
        default=0.0,
        help="share of those whose descenders the bottom edge cuts",
    )
    parser.add_argument(
        "--frame", type=float, default=0.0, help="share of varied captchas with a border"
    )
    parser.add_argument(
        "--bands",
        type=float,
        default=0.0,
        help="share of varied captchas with pale see-through bars behind the text",
    )
    parser.add_argument(
        "--jump",
        type=float,
        default=0.0,
        help="share of varied captchas whose glyphs jump so far that the edges cut them",
    )
    parser.add_argument(
        "--pixel",
        type=float,
        default=0.0,
        help="share of varied captchas drawn small in a bitmap style (no antialiasing)",
    )
    parser.add_argument("--realworld", type=Path, default=REALWORLD)
    parser.add_argument("--train-sets", nargs="+", default=list(TRAIN_SETS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=0.0, help="stop after (0: no limit)")
    parser.add_argument("--checkpoint-minutes", type=float, default=3.0)
    parser.add_argument(
        "--stop-at", type=int, default=0, help="checkpoint, export and stop at this step (0: no)"
    )
    parser.add_argument("--progress-seconds", type=float, default=30.0)
    parser.add_argument("--evaluate", metavar="MODEL", help="evaluate this model and exit")
    parser.add_argument("--eval-n", type=int, default=1000, help="images per generated set")
    parser.add_argument(
        "--eval-limit", type=int, default=0, help="read at most this many of each set (0: all)"
    )
    args = parser.parse_args()
    if any(name in NEVER_SEEN for name in args.train_sets):
        parser.error(f"{', '.join(NEVER_SEEN)} are never trained on")
    if args.evaluate:
        evaluate(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
