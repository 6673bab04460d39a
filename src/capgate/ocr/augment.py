"""Augmentation for fine-tuning: each batch seen a little differently every epoch.

A site's model is fine-tuned on a few hundred labelled captchas (the learning loop starts
at 500). Seen unchanged for 10-20 epochs, so few images are learnt by heart: on 560
cloud4d images the held-out fifth read 85.7% without augmentation and 95.2% with it, the
same 20 epochs, the same seed (training/README.md, "Fine-tuning with augmentation").

The changes are the small ones a site's own captchas show from one to the next: a tilt of
a few degrees, a shear, a slightly larger or smaller text placed a little off centre,
lighter or darker strokes, and sensor-like noise. Nothing that could turn one character
into another (no flips, no large rotations). The input and the output are the model's
input: grayscale images standardized per image (`capgate.ocr.engine.preprocess`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Augmentation:
    """How far each change may go (uniform in +-the value, per image)."""

    rotate_degrees: float = 5.0
    scale: float = 0.1  # log-scale: exp(+-0.1), about +-10%
    shear: float = 0.15
    shift_x: float = 0.08  # fractions of the half-width / half-height
    shift_y: float = 0.1
    gamma: float = 0.3  # log-normal sigma of the stroke-darkness curve
    noise: float = 0.05  # the largest standard deviation of added noise, on a 0-1 scale

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A changed copy of the batch `x` (N, 1, H, W), standardized again."""
        n, _, height, width = x.shape

        def uniform(spread: float) -> torch.Tensor:
            return (torch.rand(n, generator=generator) * 2 - 1) * spread

        low = x.amin((1, 2, 3), keepdim=True)
        high = x.amax((1, 2, 3), keepdim=True)
        v = (x - low) / (high - low + 1e-6)  # 0-1, so that gamma and noise mean the same
        angle = uniform(self.rotate_degrees) * math.pi / 180
        size = torch.exp(uniform(self.scale))
        shear = uniform(self.shear)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # The affine map from output to input pixels, in the grid's normalized coordinates
        # (each axis -1..1, so the off-diagonal terms carry the aspect ratio).
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = cos / size
        theta[:, 0, 1] = (shear - sin) / size * height / width
        theta[:, 1, 0] = sin / size * width / height
        theta[:, 1, 1] = cos / size
        theta[:, 0, 2] = uniform(self.shift_x)
        theta[:, 1, 2] = uniform(self.shift_y)
        grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        # What the image shows beyond its edges: its median, its background for captchas.
        fill = v.flatten(1).median(1).values.view(n, 1, 1, 1)
        v = nn.functional.grid_sample(v - fill, grid, align_corners=False) + fill
        curve = torch.exp(torch.randn(n, generator=generator) * self.gamma).view(n, 1, 1, 1)
        v = v.clamp(1e-4, 1.0) ** curve
        strength = self.noise * torch.rand(n, 1, 1, 1, generator=generator)
        v = v + torch.randn(x.shape, generator=generator) * strength
        mean = v.mean((1, 2, 3), keepdim=True)
        std = v.std((1, 2, 3), keepdim=True, unbiased=False)
        return (v - mean) / (std + 1e-3)


# The changes fine-tuning makes by default (`capgate ocr train`, the learning loop's jobs).
AUGMENTATION = Augmentation()
