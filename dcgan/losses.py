"""GAN losses and gradient penalties as registries: a new variant is one function and one entry.

Every loss takes the discriminator's raw outputs (logits) on real and fake images and returns a
scalar. Outputs are (N,) or (N, K) for a D with K heads (`--d-coarse`): each head is judged as a
discriminator of its own (its own mean fake in a relativistic loss, its own gradient in a penalty)
and the losses average over them.

`real_target` is the one-sided label-smoothing target for real images (1.0 = none); losses
without targets (hinge, wgan, rahinge) ignore it. Relativistic losses (Jolicoeur-Martineau 2018)
compare each real output with the mean fake output and vice versa, so their generator loss needs
the discriminator's outputs on real images too (`Loss.g_needs_real`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .bands import coarse


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


@dataclass(frozen=True)
class Loss:
    """A discriminator loss and its generator loss."""

    d: Callable[[Tensor, Tensor, float], Tensor]
    g: Callable[[Tensor | None, Tensor], Tensor]
    g_needs_real: bool = False
    uses_targets: bool = True
    # D's verdict on each real, > 0 meaning 'real': adaptive augmentation (--ada-target) averages its
    # sign. D's output for the losses whose boundary is 0; against the mean fake where only the
    # difference is trained (relativistic, Wasserstein); against 0.5, between LSGAN's targets 0 and 1.
    realness: Callable[[Tensor, Tensor], Tensor] = lambda real, fake: real


def _ra(real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
    """Relativistic average logits: each real vs the mean fake, each fake vs the mean real; over the
    batch only, so that a D with several heads compares each with its own."""
    return real - fake.mean(0), fake - real.mean(0)


def bce_d(real: Tensor, fake: Tensor, t: float) -> Tensor:
    return _bce(real, t) + _bce(fake, 0.0)


def bce_g(real: Tensor | None, fake: Tensor) -> Tensor:
    return _bce(fake, 1.0)


def lsgan_d(real: Tensor, fake: Tensor, t: float) -> Tensor:
    return 0.5 * ((real - t) ** 2).mean() + 0.5 * (fake ** 2).mean()


def lsgan_g(real: Tensor | None, fake: Tensor) -> Tensor:
    return 0.5 * ((fake - 1.0) ** 2).mean()


def hinge_d(real: Tensor, fake: Tensor, t: float) -> Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def wgan_d(real: Tensor, fake: Tensor, t: float) -> Tensor:
    return fake.mean() - real.mean()


def minus_fake_g(real: Tensor | None, fake: Tensor) -> Tensor:
    return -fake.mean()


def ragan_d(real: Tensor, fake: Tensor, t: float) -> Tensor:
    rr, ff = _ra(real, fake)
    return _bce(rr, t) + _bce(ff, 0.0)


def ragan_g(real: Tensor | None, fake: Tensor) -> Tensor:
    assert real is not None
    rr, ff = _ra(real, fake)
    return _bce(ff, 1.0) + _bce(rr, 0.0)


def ralsgan_d(real: Tensor, fake: Tensor, t: float) -> Tensor:
    rr, ff = _ra(real, fake)
    return ((rr - t) ** 2).mean() + ((ff + 1.0) ** 2).mean()  # one-sided: only the real target moves


def ralsgan_g(real: Tensor | None, fake: Tensor) -> Tensor:
    assert real is not None
    rr, ff = _ra(real, fake)
    return ((ff - 1.0) ** 2).mean() + ((rr + 1.0) ** 2).mean()


def rahinge_d(real: Tensor, fake: Tensor, t: float) -> Tensor:
    rr, ff = _ra(real, fake)
    return F.relu(1.0 - rr).mean() + F.relu(1.0 + ff).mean()


def rahinge_g(real: Tensor | None, fake: Tensor) -> Tensor:
    assert real is not None
    rr, ff = _ra(real, fake)
    return F.relu(1.0 + rr).mean() + F.relu(1.0 - ff).mean()


def _above_mean_fake(real: Tensor, fake: Tensor) -> Tensor:
    return real - fake.mean(0)


def _above_half(real: Tensor, fake: Tensor) -> Tensor:
    return real - 0.5


LOSSES: dict[str, Loss] = {
    "bce": Loss(bce_d, bce_g),                      # non-saturating (Goodfellow 2014; DCGAN)
    "lsgan": Loss(lsgan_d, lsgan_g, realness=_above_half),     # least squares (Mao 2017)
    "hinge": Loss(hinge_d, minus_fake_g, uses_targets=False),   # SNGAN, BigGAN
    # Arjovsky 2017; use --gp wgan
    "wgan": Loss(wgan_d, minus_fake_g, uses_targets=False, realness=_above_mean_fake),
    # relativistic average (Jolicoeur-Martineau 2018)
    "ragan": Loss(ragan_d, ragan_g, g_needs_real=True, realness=_above_mean_fake),
    "ralsgan": Loss(ralsgan_d, ralsgan_g, g_needs_real=True, realness=_above_mean_fake),
    "rahinge": Loss(rahinge_d, rahinge_g, g_needs_real=True, uses_targets=False, realness=_above_mean_fake),
}


def mode_seeking(fake: Tensor, z: Tensor) -> Tensor:
    """The mode-seeking term of MSGAN (Mao et al. 2019): the latent distance over the image distance
    between the batch's two halves (mean absolute differences), paired image by image.

    Added to G's loss with `--mode-seeking`: G is penalised for giving two different latents similar
    images, which is how a GAN drops the rarer looks of a small set (lower recall). The images are
    compared in their coarse view (`bands.coarse`: shape, colour, layout), so that G earns its
    distance with different looks, not with different per-pixel speckle from its noise inputs.
    """
    half = fake.shape[0] // 2
    if half == 0:  # one image (a rank's slice of a tiny batch): no pair to compare
        return fake.float().sum() * 0.0
    looks = coarse(fake.float())
    images = (looks[:half] - looks[half:2 * half]).abs().mean()
    latents = (z[:half].float() - z[half:2 * half].float()).abs().mean()
    return latents / (images + 1e-5 * latents)


def _grad_norm_penalty(discriminator: Callable[[Tensor], Tensor], points: Tensor,
                       target: float | None) -> Tensor:
    """Mean of (||grad D(points)|| - target)^2, or of ||grad||^2 when target is None; for a D with
    several heads (output (N, K)) each head's penalty on its own gradient, averaged over the heads
    as the losses are."""
    points = points.detach().requires_grad_(True)
    out = discriminator(points)
    heads = [out] if out.dim() == 1 else list(out.unbind(1))
    penalties = []
    for head in heads:
        (grad,) = torch.autograd.grad(head.sum(), points, create_graph=True)
        norm2 = grad.float().flatten(1).pow(2).sum(1)
        penalties.append(norm2.mean() if target is None else ((norm2 + 1e-12).sqrt() - target).pow(2).mean())
    return torch.stack(penalties).mean()


def gp_wgan(discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): unit gradient norm on random real-fake interpolates."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    return _grad_norm_penalty(discriminator, eps * real + (1 - eps) * fake.detach(), 1.0)


def gp_dragan(discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor) -> Tensor:
    """DRAGAN (Kodali et al. 2017): unit gradient norm around the real images, at a random point
    (alpha per image) between each real image and its noise-perturbed copy, as the authors' code does."""
    noise = 0.5 * real.std() * torch.rand_like(real)
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    return _grad_norm_penalty(discriminator, real + alpha * noise, 1.0)


def gp_r1(discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): gamma/2 * ||grad D(real)||^2, gamma being --gp-weight."""
    return 0.5 * _grad_norm_penalty(discriminator, real, None)


GRADIENT_PENALTIES: dict[str, Callable[..., Tensor] | None] = {
    "none": None,
    "wgan": gp_wgan,
    "dragan": gp_dragan,
    "r1": gp_r1,
}
