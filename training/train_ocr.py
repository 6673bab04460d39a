"""Train the shipped OCR model: a small CRNN with CTC, on captchas made by `captcha`.

Reproducible: every image comes from `capgate.ocr.synth` with fixed seeds (training seeds
start at 1_000_000, far from the seeds tests and benchmarks use), and torch is seeded.

    .venv/bin/pip install -e '.[train]'
    .venv/bin/python training/train_ocr.py --train-images 200000 --epochs 12

writes training/out/model.onnx and model.json; --install copies them into the package.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from capgate.ocr import synth
from capgate.ocr.engine import MODEL_DIR, ModelSpec, OcrEngine
from capgate.ocr.training import CRNN, export, greedy
from capgate.solvers.ocr import constraints_for

HEIGHT, WIDTH = 32, 112
# Set A's 62 characters, a space (phrases) and synth.OPERATORS with "=?" (sums), + the blank.
CHARSET = synth.CHARSET_EXTENDED
TRAIN_SEED = 1_000_000
EVAL_SEED = 900_000
SHARE_B = 0.7  # Share of 4-character digit+uppercase captchas among plain-text ones.


def _render_chunk(
    args: tuple[int, int, list[str], float, float, float, float],
) -> tuple[np.ndarray, list[str]]:
    """Render `count` training captchas from one seed as uint8 model-sized grayscale.

    A share of them is drawn in `fonts` (other than the package's own), and a share is
    inverted (light text on dark), so the model learns shapes rather than one font's look.
    Shares are sums (`synth.math_label`) and two-word phrases (`synth.phrase_label`).
    """
    seed, count, fonts, share_fonts, share_inverted, share_math, share_phrase = args
    from captcha.image import ImageCaptcha

    rng = random.Random(seed)
    default = ImageCaptcha(width=160, height=60)
    others = ImageCaptcha(width=160, height=60, fonts=fonts) if fonts else default
    images = np.empty((count, HEIGHT, WIDTH), dtype=np.uint8)
    labels = []
    with synth._seeded(rng):
        for i in range(count):
            kind = rng.random()
            if kind < share_math:
                label = synth.math_label(rng)
            elif kind < share_math + share_phrase:
                label = synth.phrase_label(rng)
            elif rng.random() < SHARE_B:
                label = synth.random_label(rng, synth.CHARSET_B, 4, 4)
            else:
                label = synth.random_label(rng, synth.CHARSET_A, 4, 6)
            generator = others if rng.random() < share_fonts else default
            image: Image.Image = generator.generate_image(synth.drawn(label))
            gray = image.convert("L").resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
            pixels = np.asarray(gray)
            images[i] = 255 - pixels if rng.random() < share_inverted else pixels
            labels.append(label)
    return images, labels


def render(
    seed: int,
    count: int,
    processes: int,
    fonts: list[str] | None = None,
    share_fonts: float = 0.0,
    share_inverted: float = 0.0,
    share_math: float = 0.0,
    share_phrase: float = 0.0,
) -> tuple[np.ndarray, list[str]]:
    chunk = 2000
    jobs = [
        (
            seed + i,
            min(chunk, count - i * chunk),
            fonts or [],
            share_fonts,
            share_inverted,
            share_math,
            share_phrase,
        )
        for i in range((count + chunk - 1) // chunk)
    ]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.map(_render_chunk, jobs)
    return np.concatenate([p[0] for p in parts]), [label for p in parts for label in p[1]]


def load_base(model: CRNN, path: Path) -> None:
    """Start from trained weights whose alphabet is a prefix of CHARSET: every layer is
    copied, and the classifier rows of the characters the base lacks keep their fresh
    initialization, so a longer alphabet is learnt without forgetting the old one."""
    state = torch.load(path, weights_only=True)
    own = model.state_dict()
    for name in ("classifier.weight", "classifier.bias"):
        fresh = own[name].clone()
        fresh[: state[name].shape[0]] = state[name]
        state[name] = fresh
    model.load_state_dict(state)


def standardize(batch: torch.Tensor) -> torch.Tensor:
    """The same per-image standardization as capgate.ocr.engine.preprocess (which serving
    uses): training must see images prepared exactly as the engine prepares them."""
    x = batch.float() / 255.0
    mean = x.mean(dim=(1, 2), keepdim=True)
    std = x.std(dim=(1, 2), keepdim=True, unbiased=False)
    return ((x - mean) / (std + 1e-3)).unsqueeze(1)


def evaluate(model: CRNN, images: np.ndarray, labels: list[str]) -> float:
    model.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(labels), 500):
            guesses = greedy(model(standardize(torch.from_numpy(images[i : i + 500]))), CHARSET)
            right += sum(g == t for g, t in zip(guesses, labels[i : i + 500], strict=True))
    model.train()
    return right / len(labels)


def check_exported(out: Path) -> None:
    """Read fresh PNG captchas through the real engine, as the server will."""
    engine = OcrEngine(out / "model.onnx")
    for name, charset, lo, hi, kind in (
        ("B", synth.CHARSET_B, 4, 4, "text"),
        ("A", synth.CHARSET_A, 4, 6, "text"),
        ("math", "", 0, 0, "math"),
        ("phrase", "", 0, 0, "phrase"),
    ):
        samples = synth.generate(EVAL_SEED + 7, 500, charset, lo, hi, kind=kind)
        # Sums and phrases are read as the server reads them when a task asks for them.
        options = None if kind == "text" else constraints_for({kind: True})
        results = engine.read_batch([png for png, _ in samples], constraints=options)
        exact = sum(r.text == t for r, (_, t) in zip(results, samples, strict=True)) / 500
        nocase = (
            sum(r.text.lower() == t.lower() for r, (_, t) in zip(results, samples, strict=True))
            / 500
        )
        print(f"engine check set {name}: exact {exact:.3f}, case-insensitive {nocase:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-images", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--render-processes", type=int, default=2)
    parser.add_argument("--max-minutes", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("training/out"))
    parser.add_argument(
        "--font-dir",
        type=Path,
        action="append",
        default=[],
        help="draw a share of the captchas in the .ttf fonts of this folder (repeatable)",
    )
    parser.add_argument("--share-fonts", type=float, default=0.5)
    parser.add_argument("--share-inverted", type=float, default=0.0)
    parser.add_argument("--share-math", type=float, default=0.1, help="share of sums")
    parser.add_argument("--share-phrase", type=float, default=0.1, help="share of phrases")
    parser.add_argument("--seed", type=int, default=TRAIN_SEED, help="first training seed")
    parser.add_argument(
        "--base",
        type=Path,
        help="start from these weights (a model.pt); output classes it lacks start fresh",
    )
    parser.add_argument("--install", action="store_true", help="copy the model into the package")
    args = parser.parse_args()

    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(args.threads)
    started = time.time()
    fonts = sorted(str(f) for d in args.font_dir for f in d.glob("*.ttf"))
    images, labels = render(
        args.seed,
        args.train_images,
        args.render_processes,
        fonts,
        args.share_fonts if fonts else 0.0,
        args.share_inverted,
        args.share_math,
        args.share_phrase,
    )
    eval_b = render(EVAL_SEED, 1000, args.render_processes)
    print(f"rendered {len(labels)} training images in {time.time() - started:.0f} s", flush=True)

    targets = [torch.tensor([CHARSET.index(c) + 1 for c in t]) for t in labels]
    model = CRNN(len(CHARSET) + 1)
    if args.base:
        load_base(model, args.base)
    steps_per_epoch = len(labels) // args.batch
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=steps_per_epoch * args.epochs, pct_start=0.15
    )
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    generator = torch.Generator().manual_seed(0)
    deadline = started + args.max_minutes * 60
    epoch = 0
    for epoch in range(args.epochs):
        order = torch.randperm(len(labels), generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * args.batch : (step + 1) * args.batch]
            x = standardize(torch.from_numpy(images[idx.numpy()]))
            ys = [targets[i] for i in idx.tolist()]
            logits = model(x).log_softmax(-1).permute(1, 0, 2)  # T, N, C
            loss = ctc(
                logits,
                torch.cat(ys),
                torch.full((len(ys),), logits.shape[0], dtype=torch.long),
                torch.tensor([len(y) for y in ys]),
            )
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            schedule.step()
            total += loss.item()
            if step % 500 == 0:
                print(
                    f"epoch {epoch} step {step}/{steps_per_epoch} loss {loss.item():.3f}",
                    flush=True,
                )
        accuracy = evaluate(model, *eval_b)
        print(
            f"epoch {epoch}: mean loss {total / steps_per_epoch:.4f}, mixed eval exact"
            f" {accuracy:.3f}, {time.time() - started:.0f} s",
            flush=True,
        )
        if time.time() > deadline:
            print("time budget reached", flush=True)
            break

    meta: dict[str, object] = {
        "trained": {
            "train_images": len(labels),
            "epochs": epoch + 1,
            "seed": args.seed,
            "base": args.base.name if args.base else None,
            "share_set_b": SHARE_B,
            "share_math": args.share_math,
            "share_phrase": args.share_phrase,
            "fonts": [Path(f).name for f in fonts],
            "share_other_fonts": args.share_fonts if fonts else 0.0,
            "share_inverted": args.share_inverted,
            "minutes": round((time.time() - started) / 60, 1),
        }
    }
    export(model, args.out, ModelSpec(HEIGHT, WIDTH, CHARSET), meta)
    check_exported(args.out)
    if args.install:
        # model.pt is the base that `capgate ocr train` fine-tunes.
        for name in ("model.onnx", "model.json", "model.pt"):
            shutil.copy(args.out / name, MODEL_DIR / name)
        print(f"installed into {MODEL_DIR}")


if __name__ == "__main__":
    main()
