"""Training the OCR model: the CRNN itself, its CTC training step, ONNX export, and
fine-tuning on an operator's own labelled captchas.

Needs torch (training/README.md says how to install it light, for the CPU); serving never
imports this module.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from capgate.ocr.augment import AUGMENTATION, Augmentation
from capgate.ocr.dataset import Labelled
from capgate.ocr.engine import DEFAULT_MODEL, ModelSpec, open_image, preprocess
from capgate.ocr.model_files import resolve_base, split_holdout


@dataclass(frozen=True)
class Architecture:
    """The CRNN's widths: the channels of its four conv blocks and the GRU's hidden size.
    The shipped model has the defaults; a wider one records its own in model.json
    ("architecture"), so that fine-tuning can rebuild it from its `.pt`."""

    channels: tuple[int, int, int, int] = (32, 64, 96, 128)
    hidden: int = 128

    @classmethod
    def of(cls, document: dict[str, object]) -> Architecture:
        """The architecture a model.json describes (the defaults if it names none)."""
        found = document.get("architecture")
        if not isinstance(found, dict):
            return cls()
        a, b, c, d = (int(x) for x in found["channels"])
        return cls((a, b, c, d), int(found["hidden"]))

    def to_json(self) -> dict[str, object]:
        return {"channels": list(self.channels), "hidden": self.hidden}


class CRNN(nn.Module):  # type: ignore[misc]  # torch is typed as Any here
    """Conv feature extractor down to height 2, a bidirectional GRU, a linear classifier."""

    def __init__(self, classes: int, architecture: Architecture | None = None) -> None:
        super().__init__()
        arch = architecture or Architecture()
        a, b, c, d = arch.channels

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(1, a),
            nn.MaxPool2d(2),  # 16 x 56
            *block(a, b),
            nn.MaxPool2d(2),  # 8 x 28
            *block(b, c),
            nn.MaxPool2d((2, 1)),  # 4 x 28
            *block(c, d),
            nn.MaxPool2d((2, 1)),  # 2 x 28
        )
        self.rnn = nn.GRU(d * 2, arch.hidden, bidirectional=True, batch_first=True)
        self.classifier = nn.Linear(arch.hidden * 2, classes)
        self.architecture = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, T, classes) for images of shape (N, 1, H, W)."""
        f = self.features(x)  # N, C, 2, T
        n, c, h, t = f.shape
        f = f.permute(0, 3, 1, 2).reshape(n, t, c * h)
        out, _ = self.rnn(f)
        return self.classifier(out)


def greedy(logits: torch.Tensor, charset: str) -> list[str]:
    """Greedy CTC decoding of a batch of logits."""
    out = []
    for row in logits.argmax(-1).tolist():
        chars, previous = [], 0
        for cls in row:
            if cls not in (previous, 0):
                chars.append(charset[cls - 1])
            previous = cls
        out.append("".join(chars))
    return out


def ctc_loss(model: CRNN, x: torch.Tensor, labels: Sequence[str], charset: str) -> torch.Tensor:
    """The CTC loss of a batch of standardized images against their labels."""
    targets = [torch.tensor([charset.index(c) + 1 for c in label]) for label in labels]
    log_probs = model(x).log_softmax(-1).permute(1, 0, 2)  # T, N, C
    return nn.functional.ctc_loss(
        log_probs,
        torch.cat(targets),
        torch.full((len(targets),), log_probs.shape[0], dtype=torch.long),
        torch.tensor([len(t) for t in targets]),
        blank=0,
        zero_infinity=True,
    )


def export(model: CRNN, out: Path, spec: ModelSpec, meta: dict[str, object]) -> None:
    """Write model.onnx (dynamic batch), model.json and the torch weights model.pt."""
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    with warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (the newer one needs onnxscript),
        # and its GRU batch-size warning does not apply: the batch axis is exported dynamic
        # and the engine's tests read batches; tracing the GRU's size checks warns too.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        _export_onnx(model, out, spec)
    document: dict[str, object] = {
        "height": spec.height,
        "width": spec.width,
        "charset": spec.charset,
        **meta,
    }
    if model.architecture != Architecture():
        document["architecture"] = model.architecture.to_json()
    (out / "model.json").write_text(json.dumps(document, indent=2) + "\n")


def _export_onnx(model: CRNN, out: Path, spec: ModelSpec) -> None:
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, spec.height, spec.width),),
        str(out / "model.onnx"),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


# --- fine-tuning on an operator's own captchas -------------------------------------------


@dataclass(frozen=True)
class FinetuneReport:
    """What a fine-tune did and how well the model reads the held-out images."""

    train_images: int
    test_images: int
    skipped: int  # labels with characters outside the model's alphabet
    accuracy_before: float  # the starting model's, on the held-out images
    accuracy_after: float  # the kept epoch's
    best_epoch: int  # the epoch kept: the best on the held-out images (0: the starting model)
    epochs: int
    seconds: float


def duration(seconds: float) -> str:
    """A duration as a person reads it: `42 s`, `3 min 05 s`, `1 h 02 min`."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _print(line: str) -> None:
    print(line, flush=True)  # Flushed: a log file or a pipe shows each line as it comes.


EVAL_BATCH = 256  # held-out images per forward pass
ETA_WINDOW = 60.0  # seconds of recent pace behind an ETA


def finetune(
    samples: Sequence[Labelled],
    out: Path,
    *,
    base: Path = DEFAULT_MODEL,
    epochs: int = 20,
    batch: int = 32,
    lr: float = 1e-3,
    holdout: float = 0.2,
    threads: int = 2,
    seed: int = 0,
    augmentation: Augmentation | None = AUGMENTATION,
    log: Callable[[str], None] = _print,
    progress_every: float = 15.0,
    clock: Callable[[], float] = time.monotonic,
) -> FinetuneReport:
    """Fine-tune the model at `base` (a model folder or its .onnx, with its .json and its
    torch weights .pt beside it) on `samples`, holding out `holdout` of them; write the
    epoch that read the held-out images best (the starting model if none beat it) to `out`.
    Each training batch goes through `augmentation` (None: as they are; see augment.py).

    `log` gets plain lines: the settings, one line per epoch and, at least every
    `progress_every` seconds within an epoch, one with the step, each with an ETA.
    """
    started = clock()
    base = resolve_base(base)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    spec = ModelSpec.load(base.with_suffix(".json"))
    usable = [s for s in samples if s.label and set(s.label) <= set(spec.charset)]
    skipped = len(samples) - len(usable)
    if skipped:
        strange = sorted({c for s in samples for c in s.label} - set(spec.charset))
        shown = " ".join(repr(c) for c in strange[:10]) or "an empty label"
        log(f"skipping {skipped} of {len(samples)} images: labels outside the alphabet ({shown})")
    train, test = split_holdout(usable, holdout)
    if not train or not test:
        raise ValueError(
            f"{len(usable)} usable labelled images: too few to train on and hold"
            f" {holdout:.0%} of them out"
        )
    log(
        f"fine-tuning {base} on {len(train)} images, {len(test)} held out ({holdout:.0%});"
        f" epochs {epochs}, batch {batch}, lr {lr:g}, seed {seed}, threads {threads},"
        f" augmentation {'on' if augmentation else 'off'}"
    )

    def tensors(part: Sequence[Labelled]) -> torch.Tensor:
        arrays: list[npt.NDArray[np.float32]] = []
        for s in part:
            try:
                arrays.append(preprocess(open_image(s.image), spec.height, spec.width))
            except ValueError as exc:
                raise ValueError(f"{s.name}: {exc}") from None
        return torch.from_numpy(np.stack(arrays))

    x_train, x_test = tensors(train), tensors(test)
    architecture = Architecture.of(json.loads(base.with_suffix(".json").read_text()))
    model = CRNN(len(spec.charset) + 1, architecture)
    model.load_state_dict(torch.load(base.with_suffix(".pt"), weights_only=True))

    def evaluate() -> tuple[float, float]:
        """Exact-match accuracy and mean CTC loss on the held-out images."""
        model.eval()
        right, loss = 0, 0.0
        with torch.no_grad():
            for i in range(0, len(test), EVAL_BATCH):
                part, labels = (
                    x_test[i : i + EVAL_BATCH],
                    [s.label for s in test[i : i + EVAL_BATCH]],
                )
                right += sum(
                    g == t for g, t in zip(greedy(model(part), spec.charset), labels, strict=True)
                )
                loss += float(ctc_loss(model, part, labels, spec.charset)) * len(labels)
        model.train()
        return right / len(test), loss / len(test)

    def snapshot() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    before, before_loss = evaluate()
    log(f"held-out accuracy before: {before:.1%} ({len(test)} images)")
    best, best_key, best_state = 0, (before, -before_loss), snapshot()
    steps = max(1, (len(train) + batch - 1) // batch)
    total_steps = steps * epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max(total_steps, 10), pct_start=0.2
    )
    generator = torch.Generator().manual_seed(seed)
    changes = torch.Generator().manual_seed(seed + 1)  # the augmentation's own draws
    model.train()
    training_started = last_line = clock()

    # The ETA goes by the pace of about the last minute, so that it follows a machine that
    # slows down or speeds up (other work on its cores) rather than the whole run's average.
    paces: deque[tuple[float, int]] = deque([(training_started, 0)])

    def eta(done: int) -> str:
        now = clock()
        paces.append((now, done))
        while len(paces) > 2 and paces[1][0] <= now - ETA_WINDOW:
            paces.popleft()
        since, done_then = paces[0]
        per_step = (now - since) / max(done - done_then, 1)
        return duration(per_step * (total_steps - done))

    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train), generator=generator).tolist()
        total = 0.0
        for step in range(steps):
            idx = order[step * batch : (step + 1) * batch]
            images = x_train[idx]
            if augmentation is not None:
                images = augmentation(images, changes)
            loss = ctc_loss(model, images, [train[i].label for i in idx], spec.charset)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            schedule.step()
            total += float(loss.item())
            if step + 1 < steps and clock() - last_line >= progress_every:
                done = (epoch - 1) * steps + step + 1
                log(
                    f"epoch {epoch}/{epochs} step {step + 1}/{steps}: loss"
                    f" {total / (step + 1):.4f}, ETA {eta(done)}"
                )
                last_line = clock()
        accuracy, held_loss = evaluate()
        kept = (accuracy, -held_loss) > best_key
        if kept:
            best, best_key, best_state = epoch, (accuracy, -held_loss), snapshot()
        log(
            f"epoch {epoch}/{epochs}: loss {total / steps:.4f}, held-out {accuracy:.1%}"
            f" (loss {held_loss:.4f}){' best so far' if kept else ''}, ETA {eta(epoch * steps)}"
        )
        last_line = clock()
    model.load_state_dict(best_state)
    after = best_key[0]
    log(
        f"kept epoch {best} of {epochs}: held-out {after:.1%}"
        if best
        else f"no epoch beat the starting model on the held-out images: kept it ({after:.1%})"
    )
    meta: dict[str, object] = {
        "finetuned": {
            "base": str(base),
            "train_images": len(train),
            "test_images": len(test),
            "holdout": holdout,
            "epochs": epochs,
            "best_epoch": best,
            "batch": batch,
            "lr": lr,
            "seed": seed,
            "augmentation": augmentation is not None,
            "accuracy_before": round(before, 4),
            "accuracy_after": round(after, 4),
        }
    }
    export(model, out, spec, meta)
    return FinetuneReport(
        len(train), len(test), skipped, before, after, best, epochs, clock() - started
    )
