"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) as a registry of policies.

With a few hundred training images the discriminator memorises them and training collapses.
DiffAugment applies the same kind of random, differentiable transformations to real and fake
images before every discriminator call (in D's step and in G's step), so D cannot memorise and G
still gets gradients through the augmentation. Each function maps a batch (N, C, H, W) in [-1, 1]
to an augmented batch, drawing its randomness per image from torch's global generator (which the
checkpoint stores, so resumed runs stay exact). Dermoscopy has no canonical orientation, so flips
and 90-degree rotations are in the registry too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .errors import UserError


def _rand(x: Tensor, *shape: int) -> Tensor:
    return torch.rand(x.shape[0], *shape, device=x.device, dtype=x.dtype)


def brightness(x: Tensor) -> Tensor:
    return x + (_rand(x, 1, 1, 1) - 0.5)


def saturation(x: Tensor) -> Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand(x, 1, 1, 1) * 2) + mean


def contrast(x: Tensor) -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, 1, 1, 1) + 0.5) + mean


def color(x: Tensor) -> Tensor:
    """Random brightness, saturation and contrast (DiffAugment's 'color')."""
    return contrast(saturation(brightness(x)))


def _shift(x: Tensor, ratio: float, reflect: bool) -> Tensor:
    """Shift each image by up to `ratio` of its size; uncovered pixels are zeros or mirrored.

    Shifts are whole pixels, so one gather does it exactly (no interpolation blur, unlike
    grid_sample), and the gradient flows back to the shifted pixels.
    """
    n, _, h, w = x.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (n,), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (n,), device=x.device)
    rows = torch.arange(h, device=x.device)[None, :] - dy[:, None]  # source row for each target row
    cols = torch.arange(w, device=x.device)[None, :] - dx[:, None]
    if reflect:  # mirror about the edge pixel: -1 -> 1, h -> h - 2 (shifts are below the size)
        rows = torch.where(rows >= h, 2 * (h - 1) - rows, rows.abs())
        cols = torch.where(cols >= w, 2 * (w - 1) - cols, cols.abs())
    valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    idx = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]  # (N, H, W)
    flat = x.flatten(2)  # (N, C, H*W)
    out = flat.gather(2, idx.flatten(1)[:, None, :].expand(-1, x.shape[1], -1)).view_as(x)
    return out * valid[:, None].to(x.dtype)


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to `ratio` of its size, filling with zeros (DiffAugment's)."""
    return _shift(x, ratio, reflect=False)


def translation_reflect(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to `ratio` of its size, filling with the mirrored image (as ADA does).

    Zero fill paints mid-grey bars over the image border, where dermoscopy keeps its background
    colour and the dark vignette of the lens; mirroring keeps them.
    """
    return _shift(x, ratio, reflect=True)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero one square of `ratio` times the image size at a random place in each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    top, left = cy - ch // 2, cx - cw // 2  # the square may hang over the border, as in DiffAugment
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    return x * (~inside)[:, None].to(x.dtype)


def flip(x: Tensor) -> Tensor:
    """Random left-right and top-bottom flips, each with probability 1/2."""
    lr = _rand(x, 1, 1, 1) < 0.5
    x = torch.where(lr, x.flip(3), x)
    tb = _rand(x, 1, 1, 1) < 0.5
    return torch.where(tb, x.flip(2), x)


def rot90(x: Tensor) -> Tensor:
    """Rotate each (square) image by a random multiple of 90 degrees."""
    k = torch.randint(0, 4, (x.shape[0], 1, 1, 1), device=x.device)
    out = x
    for turns in (1, 2, 3):
        out = torch.where(k == turns, torch.rot90(x, turns, dims=(2, 3)), out)
    return out


AUGMENTATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "color": color,
    "brightness": brightness,
    "saturation": saturation,
    "contrast": contrast,
    "translation": translation,
    "translation-reflect": translation_reflect,
    "cutout": cutout,
    "flip": flip,
    "rot90": rot90,
}


def parse_policy(policy: str, option: str = "--diffaug") -> list[Callable[[Tensor], Tensor]]:
    """'color,translation,cutout' -> the functions, in order; 'none' or '' -> []. `option` names
    where the policy came from in the error (a flag, or a control file's key)."""
    names = [p.strip() for p in policy.split(",") if p.strip() and p.strip() != "none"]
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise UserError(f"{option}: unknown augmentation(s) {', '.join(unknown)}; "
                        f"choose from {', '.join(AUGMENTATIONS)} or none")
    return [AUGMENTATIONS[n] for n in names]


def make_augment(policy: str) -> Callable[[Tensor], Tensor] | None:
    """The composed augmentation for a policy string, or None for 'none'."""
    funcs = parse_policy(policy)
    if not funcs:
        return None

    def augment(x: Tensor) -> Tensor:
        for f in funcs:
            x = f(x)
        return x

    return augment


# Training cycles between two adjustments of p (StyleGAN2-ADA's ada_interval, in minibatches).
ADA_INTERVAL = 4


class AdaptiveAugment:
    """A DiffAugment policy whose transforms each apply to an image with probability p, where p
    follows how sure D is of the reals (StyleGAN2-ADA, Karras et al. 2020).

    On a few hundred images D memorises the reals; the sign of its outputs on them, averaged
    (`r_t`), climbs toward 1 as it does. Every `ADA_INTERVAL` training cycles p moves up when r_t is
    above `target`, down when below, by the images seen over `kimg` thousand (so p can go from 0
    to 1 in that many images). DiffAugment applies every transform to every image, however little
    D overfits; here the augmentation is as strong as D's overfitting asks, and no stronger. p and
    the running sums are tensors on the training device (no host sync per step) and are saved in
    the checkpoint, so resumed runs stay exact.
    """

    def __init__(self, funcs: list[Callable[[Tensor], Tensor]], target: float, kimg: float,
                 device: torch.device | str = "cpu") -> None:
        self.funcs, self.target, self.kimg = funcs, target, kimg
        self.p = torch.zeros((), device=device)
        self.signs = torch.zeros((), device=device)  # sum of sign(D's realness) on the reals seen
        self.count = torch.zeros((), device=device)  # ... over this many images

    def __call__(self, x: Tensor) -> Tensor:
        for f in self.funcs:
            apply = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < self.p
            x = torch.where(apply, f(x), x)
        return x

    def observe(self, realness: Tensor, images: int | None = None) -> None:
        """Count D's verdicts on a batch of `images` (augmented) reals (default: realness's first
        dimension): realness > 0 means 'real'. A D with several outputs per image (heads, patches,
        in image order) casts one vote per image, their mean, so that p moves by images seen."""
        votes = realness.detach().float().sign()
        n = votes.shape[0] if images is None else images
        self.signs += votes.reshape(n, -1).mean(1).sum()
        self.count += n

    def adjust(self, reduce: Callable[[Tensor], Tensor] = lambda t: t) -> None:
        """Move p by the images seen since the last adjustment; `reduce` sums over processes."""
        both = reduce(torch.stack([self.signs, self.count]))
        r_t = both[0] / both[1].clamp(min=1)
        step = torch.sign(r_t - self.target) * both[1] / (self.kimg * 1000)
        self.p = (self.p + step).clamp(0.0, 1.0)
        self.signs.zero_()
        self.count.zero_()

    def state_dict(self) -> dict[str, Tensor]:
        return {"p": self.p.cpu(), "signs": self.signs.cpu(), "count": self.count.cpu()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        device = self.p.device
        self.p, self.signs, self.count = (state[k].to(device).clone() for k in ("p", "signs", "count"))
