"""An image split into a coarse view (a Gaussian low-pass: shape, colour, layout) and a fine view
(the rest: texture), which add up to the image.

One definition for the two places that need the split: the C2ST's band views
(`img2dist.py quality --c2st-bands`), which measure which scale gives fakes away, and D's fine-detail
input (`--d-input image+fine`), which shows D the scale that gave them away; so "fine" means the
same in the measure and in the model.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SIGMA = 1.5  # pixels: the split the C2ST's band views and D's fine-detail input use by default


def coarse(x: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    """(N, C, H, W) under a Gaussian low-pass (torchvision's, reflected edges, radius 3 sigma).
    Differentiable, and it keeps x's dtype (bf16 under autocast)."""
    from torchvision.transforms.functional import gaussian_blur

    radius = max(1, math.ceil(3 * sigma))
    return gaussian_blur(x, [2 * radius + 1] * 2, [sigma, sigma])


def fine(x: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    """What the low-pass removes (x minus `coarse`), so the two views add up to x."""
    return x - coarse(x, sigma)
