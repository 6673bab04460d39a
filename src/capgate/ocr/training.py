"""Training the OCR model: the CRNN itself, its CTC training step, ONNX export, and
fine-tuning on an operator's own labelled captchas.

Needs torch (`pip install 'capgate[train]'`); serving never imports this module.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from capgate.ocr.dataset import Labelled, split
from capgate.ocr.engine import DEFAULT_MODEL, ModelSpec, open_image, preprocess


class CRNN(nn.Module):  # type: ignore[misc]  # torch is typed as Any here
    """Conv feature extractor down to height 2, a bidirectional GRU, a linear classifier."""

    def __init__(self, classes: int) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(1, 32),
            nn.MaxPool2d(2),  # 16 x 56
            *block(32, 64),
            nn.MaxPool2d(2),  # 8 x 28
            *block(64, 96),
            nn.MaxPool2d((2, 1)),  # 4 x 28
            *block(96, 128),
            nn.MaxPool2d((2, 1)),  # 2 x 28
        )
        self.rnn = nn.GRU(128 * 2, 128, bidirectional=True, batch_first=True)
        self.classifier = nn.Linear(256, classes)

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
    document = {"height": spec.height, "width": spec.width, "charset": spec.charset, **meta}
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
    skipped: int
    accuracy_before: float
    accuracy_after: float
    minutes: float


def finetune(
    samples: Sequence[Labelled],
    out: Path,
    *,
    base: Path = DEFAULT_MODEL,
    epochs: int = 10,
    batch: int = 32,
    lr: float = 1e-3,
    threads: int = 2,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> FinetuneReport:
    """Fine-tune the model at `base` (its .pt beside it) on `samples`; write it to `out`."""
    started = time.time()
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    spec = ModelSpec.load(base.with_suffix(".json"))
    usable = [s for s in samples if s.label and set(s.label) <= set(spec.charset)]
    train, test = split(usable)
    if not train or not test:
        raise ValueError("need at least 5 usable labelled images")

    def tensors(part: Sequence[Labelled]) -> torch.Tensor:
        arrays: list[npt.NDArray[np.float32]] = [
            preprocess(open_image(s.image), spec.height, spec.width) for s in part
        ]
        return torch.from_numpy(np.stack(arrays))

    x_train, x_test = tensors(train), tensors(test)
    model = CRNN(len(spec.charset) + 1)
    model.load_state_dict(torch.load(base.with_suffix(".pt"), weights_only=True))

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            guesses = greedy(model(x_test), spec.charset)
        model.train()
        return sum(g == s.label for g, s in zip(guesses, test, strict=True)) / len(test)

    before = accuracy()
    log(f"held-out accuracy before: {before:.1%} ({len(test)} images)")
    steps = max(1, (len(train) + batch - 1) // batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max(steps * epochs, 10), pct_start=0.2
    )
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(train), generator=generator).tolist()
        total = 0.0
        for step in range(steps):
            idx = order[step * batch : (step + 1) * batch]
            loss = ctc_loss(model, x_train[idx], [train[i].label for i in idx], spec.charset)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            schedule.step()
            total += float(loss.item())
        log(f"epoch {epoch + 1}/{epochs}: loss {total / steps:.4f}, held-out {accuracy():.1%}")
    after = accuracy()
    minutes = (time.time() - started) / 60
    meta: dict[str, object] = {
        "finetuned": {
            "base": str(base),
            "train_images": len(train),
            "test_images": len(test),
            "epochs": epochs,
            "accuracy_before": round(before, 4),
            "accuracy_after": round(after, 4),
        }
    }
    export(model, out, spec, meta)
    return FinetuneReport(
        len(train), len(test), len(samples) - len(usable), before, after, round(minutes, 1)
    )
