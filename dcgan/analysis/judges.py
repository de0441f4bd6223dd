"""The judges of the classifier two-sample test: small classifiers of different families.

One classifier sees what its design lets it see: three stride-2 convolutions found grain over a
lesion but let through fakes that a classifier whose first layer reads every pixel told apart 94%
of the time (issue 32). So the test asks a panel, each judge trained from scratch on the same
folds and looking at the images its own way, and the strongest one is the verdict: fakes must
fool all of them. A new judge is one function and one `JUDGES` entry.

Each judge is (what it sees, how it decides): a `view` of the images as (N, C, H, W) tensors in
[-1, 1] and a small CNN built by `network(channels, width)`, or, for the one judge that is not a
CNN, a `features` function from uint8 (N, H, W, C) images to vectors that a scikit-learn model
separates.

Hand-written: no library ships a panel of two-sample-test classifiers for images; the pieces are
torch's, torchvision's (the blur) and scikit-learn's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np

from .. import bands

if TYPE_CHECKING:
    import torch
    from torch import nn


def _block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    from torch import nn

    return [nn.Conv2d(c_in, c_out, 3, stride, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]


def _head(c_in: int) -> list[nn.Module]:
    """Global average pool and one logit: the judge weighs what is everywhere in an image (texture,
    colour) as much as a layout."""
    from torch import nn

    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 1)]


def strided_net(channels: int = 3, width: int = 16) -> nn.Module:
    """Three stride-2 3x3 convs (width, 2x, 4x) with BatchNorm and LeakyReLU, pool, one logit."""
    from torch import nn

    layers: list[nn.Module] = []
    c_in = channels
    for i in range(3):
        layers += _block(c_in, width * 2 ** i, 2)
        c_in = width * 2 ** i
    return nn.Sequential(*layers, *_head(c_in))


def full_res_net(channels: int = 3, width: int = 32) -> nn.Module:
    """A stride-1 3x3 conv at full resolution (width channels), then three stride-2 convs (width,
    2x, 4x): the first layer reads every pixel's neighbourhood before anything is subsampled."""
    from torch import nn

    layers = _block(channels, width, 1)
    c_in = width
    for i in range(3):
        layers += _block(c_in, width * 2 ** i, 2)
        c_in = width * 2 ** i
    return nn.Sequential(*layers, *_head(c_in))


DOWNSCALE = 4  # the downscaled judge sees 1/4 of each side: 16x16 at 64 px, 40x40 at 160 px


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def residual(x: torch.Tensor) -> torch.Tensor:
    """The high-frequency residual: the image minus its Gaussian low-pass (`dcgan.bands.fine`)."""
    return bands.fine(x)


def downscaled(x: torch.Tensor) -> torch.Tensor:
    """Area-average to 1/DOWNSCALE of each side: colour and shape survive, pixel texture does not."""
    import torch.nn.functional as F

    return F.avg_pool2d(x, DOWNSCALE) if min(x.shape[-2:]) >= 2 * DOWNSCALE else x


def image_statistics(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 47) float: per image, what hand-made texture and colour measures
    see. Colour: each channel's mean, spread and 5/50/95th percentiles (15). Pixel-scale texture:
    the luminance gradient's mean, spread and a 6-bin histogram of its magnitude (8); the
    3x3-residual's spread, mean magnitude and kurtosis per channel (9) and the residuals'
    correlation between channels (3: JPEG chroma subsampling and a generator's shared grain show
    there). Scale: the luminance power in 8 log-spaced radial bands, log (8). Saturation and value's
    mean and spread (4), one more colour view. Vectorised over the set."""
    x = images.astype(np.float32) / 255.0
    n = len(x)
    flat = x.reshape(n, -1, 3)
    colour = [flat.mean(1), flat.std(1), *np.percentile(flat, [5, 50, 95], axis=1)]
    lum = x @ np.array([0.299, 0.587, 0.114], np.float32)
    gx, gy = np.diff(lum, axis=2)[:, :-1, :], np.diff(lum, axis=1)[:, :, :-1]
    grad = np.sqrt(gx ** 2 + gy ** 2).reshape(n, -1)
    edges = np.array([0, 1, 2, 4, 8, 16, np.inf]) / 255.0
    hist = np.stack([((grad >= lo) & (grad < hi)).mean(1) for lo, hi in pairwise(edges)], 1)
    # 3x3 box residual per channel, without the border (valid region only).
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    box = sum(pad[:, i: i + x.shape[1], j: j + x.shape[2]] for i in range(3) for j in range(3)) / 9
    res = (x - box)[:, 1:-1, 1:-1].reshape(n, -1, 3)
    res_std = res.std(1) + 1e-8
    kurt = ((res - res.mean(1, keepdims=True)) ** 4).mean(1) / res_std ** 4
    z = (res - res.mean(1, keepdims=True)) / res_std[:, None, :]
    corr = np.stack([(z[..., a] * z[..., b]).mean(1) for a, b in ((0, 1), (0, 2), (1, 2))], 1)
    power = np.abs(np.fft.fft2(lum - lum.mean((1, 2), keepdims=True))) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(lum.shape[1]), np.fft.fftfreq(lum.shape[2]), indexing="ij")
    radius = np.hypot(fy, fx)
    # 8 log-spaced radial bands from the lowest frequency the image holds to the corners, so that
    # every band holds a frequency at any size.
    band_edges = np.geomspace(1 / min(lum.shape[1:]), np.sqrt(0.5), 8)
    low = np.r_[0, band_edges[:-1]]
    spectrum = np.stack([np.log(power[:, (radius > lo) & (radius <= hi)].mean(1) + 1e-12)
                         for lo, hi in zip(low, band_edges, strict=True)], 1)
    mx, mn = flat.max(2), flat.min(2)
    sat = (mx - mn) / (mx + 1e-6)
    hsv = [sat.mean(1, keepdims=True), sat.std(1, keepdims=True), mx.mean(1, keepdims=True),
           mx.std(1, keepdims=True)]
    parts = [*colour, grad.mean(1, keepdims=True), grad.std(1, keepdims=True), hist,
             res_std, np.abs(res).mean(1), np.log(kurt), corr, spectrum, *hsv]
    return np.nan_to_num(np.concatenate(parts, 1).astype(np.float64))


def statistics_model(seed: int) -> object:
    """Gradient-boosted trees on the statistics: no feature scaling to tune, and interactions (a
    grain only in dark images) without a hand-written model."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                          l2_regularization=1.0, random_state=seed)


@dataclass(frozen=True)
class Judge:
    why: str  # one line: what this judge is there to catch
    view: Callable[[torch.Tensor], torch.Tensor] = identity
    network: Callable[[int, int], nn.Module] | None = None  # (channels, width) -> CNN, one logit
    width: int = 16
    features: Callable[[np.ndarray], np.ndarray] | None = None  # the non-CNN judge's inputs


JUDGES: dict[str, Judge] = {
    "strided": Judge("the original test (3 stride-2 convs, 16/32/64): mid-scale grain and layout; "
                     "kept so that earlier figures compare", network=strided_net, width=16),
    "full-res": Judge("a stride-1 first layer of 32 channels reads every pixel: pixel-scale "
                      "texture, as a dermatologist's eye sees it at full resolution",
                      network=full_res_net, width=32),
    "residual": Judge("sees only the image minus its blur (Gaussian, sigma 1.5 px): fine "
                      "texture without the colour and shape that could distract it",
                      view=residual, network=full_res_net, width=32),
    "downscaled": Judge(f"sees only a 1/{DOWNSCALE}-size image: colour, shape and layout, "
                        "no texture", view=downscaled, network=full_res_net, width=32),
    "statistics": Judge("not a CNN: boosted trees on 47 image statistics (colour percentiles, "
                        "gradient histogram, residual kurtosis, chroma correlation, octave "
                        "spectrum)", features=image_statistics),
}
DEFAULT_JUDGES = tuple(JUDGES)


def check_judges(names: tuple[str, ...]) -> tuple[str, ...]:
    """`names` if every one is a judge, else a `UserError` naming the option and the choices."""
    from ..errors import UserError

    unknown = [j for j in names if j not in JUDGES]
    if unknown or not names:
        raise UserError(f"--c2st-judges: unknown judge(s) {', '.join(unknown) or '(none given)'}; "
                        f"choose from {', '.join(JUDGES)}")
    return names
