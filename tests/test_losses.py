"""Each loss's value and gradient direction on hand-made logits; the gradient penalties."""

from __future__ import annotations

import math

import pytest
import torch

from dcgan.losses import GRADIENT_PENALTIES, LOSSES, mode_seeking

LN2 = math.log(2)


def logits(*values: float) -> torch.Tensor:
    return torch.tensor(values, requires_grad=True)


@pytest.mark.parametrize(("name", "real", "fake", "d_value", "g_value"), [
    ("bce", 0.0, 0.0, 2 * LN2, LN2),
    ("lsgan", 1.0, 0.0, 0.0, 0.5),
    ("hinge", 2.0, -2.0, 0.0, 2.0),
    ("wgan", 3.0, 1.0, -2.0, -1.0),
    ("ragan", 0.0, 0.0, 2 * LN2, 2 * LN2),
    ("ralsgan", 1.0, 0.0, 0.0, 8.0),
    ("rahinge", 1.0, 0.0, 0.0, 4.0),
])
def test_values(name: str, real: float, fake: float, d_value: float, g_value: float) -> None:
    loss = LOSSES[name]
    r, f = logits(real, real), logits(fake, fake)
    assert float(loss.d(r, f, 1.0)) == pytest.approx(d_value, abs=1e-6)
    assert float(loss.g(r, f)) == pytest.approx(g_value, abs=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_d_with_two_logits_per_image_is_two_discriminators_averaged(name: str) -> None:
    # `--d-coarse` gives D a second column: each column must be judged on its own (a relativistic
    # loss compares a real with the mean fake of the same head, not of both), the loss their mean.
    torch.manual_seed(0)
    real, fake = torch.randn(6, 2) + torch.tensor([2.0, -1.0]), torch.randn(6, 2) + torch.tensor([-3.0, 0.5])
    loss = LOSSES[name]
    per_head_d = [loss.d(real[:, k], fake[:, k], 0.9) for k in range(2)]
    per_head_g = [loss.g(real[:, k], fake[:, k]) for k in range(2)]
    assert torch.allclose(loss.d(real, fake, 0.9), sum(per_head_d) / 2, atol=1e-6)
    assert torch.allclose(loss.g(real, fake), sum(per_head_g) / 2, atol=1e-6)
    # A relativistic average over every element would mix the heads' means, and differ here.
    if loss.g_needs_real:
        assert not torch.allclose(loss.g(real, fake), loss.g(real.flatten(), fake.flatten()))


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradient_directions(name: str) -> None:
    """D wants real logits up and fake logits down; G wants fake logits up.

    Logits lie where every loss is active: real below its target 1, fake above 0.
    """
    loss = LOSSES[name]
    r, f = logits(0.3, -0.2, 0.1), logits(0.1, 0.4, 0.2)
    loss.d(r, f, 1.0).backward()
    assert (r.grad < 0).all() and (f.grad > 0).all()
    r2, f2 = logits(0.3, -0.2, 0.1), logits(0.1, 0.4, 0.2)
    loss.g(r2, f2).backward()
    assert (f2.grad < 0).all()
    if loss.g_needs_real:  # relativistic: G also pushes real logits down
        assert (r2.grad > 0).all()


@pytest.mark.parametrize("name", ["bce", "lsgan", "ragan", "ralsgan"])
def test_label_smoothing_lowers_the_real_target(name: str) -> None:
    loss = LOSSES[name]
    assert loss.uses_targets
    r, f = logits(5.0), logits(-5.0)
    # With smoothing 0.9 an over-confident real logit is penalised more than without.
    assert float(loss.d(r, f, 0.9)) > float(loss.d(r, f, 1.0))


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


@pytest.mark.parametrize(("name", "real", "fake", "value"), [
    # real target 0.9, fake target untouched (one-sided smoothing, Salimans et al. 2016)
    ("bce", 3.0, -3.0, -(0.9 * _log_sigmoid(3) + 0.1 * _log_sigmoid(-3)) - _log_sigmoid(3)),
    ("lsgan", 1.0, 0.5, 0.5 * 0.1**2 + 0.5 * 0.5**2),
    ("ragan", 1.0, 0.0, -(0.9 * _log_sigmoid(1) + 0.1 * _log_sigmoid(-1)) - _log_sigmoid(1)),
    ("ralsgan", 1.0, 0.0, 0.1**2),  # the fake term (ff + 1)^2 is 0: its target stays -1
])
def test_label_smoothing_is_one_sided(name: str, real: float, fake: float, value: float) -> None:
    d = LOSSES[name].d(logits(real, real), logits(fake, fake), 0.9)
    assert float(d) == pytest.approx(value, abs=1e-6)


class Linear(torch.nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere, so penalties are known in closed form."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1)


@pytest.mark.parametrize(("name", "expected"), [("wgan", (3.0 - 1) ** 2), ("dragan", (3.0 - 1) ** 2),
                                                 ("r1", 0.5 * 9.0)])
def test_gradient_penalties_closed_form(name: str, expected: float) -> None:
    w = torch.zeros(1, 1, 2, 2)
    w[0, 0, 0, 0] = 3.0  # ||w|| = 3
    D = Linear(w)
    real, fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    penalty = GRADIENT_PENALTIES[name](D, real, fake)
    assert float(penalty) == pytest.approx(expected, rel=1e-5)
    penalty.backward()  # differentiable w.r.t. D's weights (create_graph)
    assert D.w.grad is not None and float(D.w.grad.abs().sum()) > 0


class TwoHeads(torch.nn.Module):
    """Two linear critics side by side, (N, 2): slopes of norm 3 and 4 in orthogonal directions."""

    def __init__(self) -> None:
        super().__init__()
        w = torch.zeros(2, 1, 2, 2)
        w[0, 0, 0, 0], w[1, 0, 1, 1] = 3.0, 4.0
        self.w = torch.nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, None] * self.w[None]).flatten(2).sum(2)


@pytest.mark.parametrize(("name", "expected"), [("wgan", ((3 - 1) ** 2 + (4 - 1) ** 2) / 2),
                                                 ("dragan", ((3 - 1) ** 2 + (4 - 1) ** 2) / 2),
                                                 ("r1", 0.5 * (9 + 16) / 2)])
def test_a_penalty_on_two_heads_is_each_heads_own_averaged(name: str, expected: float) -> None:
    # Each head's gradient apart (norms 3 and 4), not the gradient of their sum (norm 5).
    D = TwoHeads()
    real, fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    penalty = GRADIENT_PENALTIES[name](D, real, fake)
    assert float(penalty) == pytest.approx(expected, rel=1e-5)
    penalty.backward()
    assert D.w.grad is not None and bool((D.w.grad.flatten(1).abs().sum(1) > 0).all())


def test_dragan_penalises_points_between_each_real_image_and_its_perturbed_copy() -> None:
    torch.manual_seed(0)
    real = torch.rand(64, 3, 4, 4)
    seen: list[torch.Tensor] = []

    def d(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach().clone())
        return x.flatten(1).sum(1)

    GRADIENT_PENALTIES["dragan"](d, real, torch.zeros_like(real))
    offset = (seen[0] - real).flatten(1)
    assert offset.min() >= 0 and offset.max() <= 0.5 * float(real.std()) + 1e-6  # in [x, x + 0.5 std U]
    # alpha is drawn per image: the mean offsets spread out rather than all sitting at alpha = 1
    per_image = offset.mean(1)
    assert float(per_image.min()) < 0.3 * float(per_image.max())


def test_mode_seeking_is_latent_distance_over_image_distance_between_the_halves() -> None:
    fake = torch.cat([torch.zeros(2, 3, 16, 16), torch.full((2, 3, 16, 16), 0.5)])
    z = torch.cat([torch.zeros(2, 8), torch.ones(2, 8)])
    assert float(mode_seeking(fake, z)) == pytest.approx(1.0 / 0.5, rel=1e-4)
    # Pairs are image i with image i + N/2, not any two images: the same images reordered so that
    # each pair is identical give the largest value instead.
    paired = fake[[0, 2, 1, 3]]
    assert float(mode_seeking(paired, z)) > 1e4


def test_mode_seeking_pushes_two_latents_images_apart() -> None:
    fake = (0.1 * torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    before = mode_seeking(fake, z)
    before.backward()
    moved = (fake - 0.01 * fake.grad).detach()  # one gradient step, as G's optimiser would take
    assert (moved[:4] - moved[4:]).abs().mean() > (fake[:4] - fake[4:]).abs().mean()
    assert float(mode_seeking(moved, z)) < float(before)


def test_mode_seeking_on_one_image_is_zero_not_nan() -> None:
    fake = torch.ones(1, 3, 16, 16, requires_grad=True)
    value = mode_seeking(fake, torch.ones(1, 8))
    value.backward()
    assert float(value) == 0.0 and torch.isfinite(fake.grad).all()


def test_mode_seeking_counts_different_looks_not_different_speckle() -> None:
    # Halves that differ by a one-pixel checkerboard (speckle, the fine view) are "the same look";
    # halves that differ by a flat colour shift of the same size are not.
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 1.0 - 0.5  # +-0.5
    z = torch.cat([torch.zeros(2, 8), torch.ones(2, 8)])
    speckled = torch.cat([torch.zeros(2, 3, 16, 16), checker.expand(2, 3, 16, 16)])
    recoloured = torch.cat([torch.zeros(2, 3, 16, 16), torch.full((2, 3, 16, 16), 0.5)])
    assert float(mode_seeking(recoloured, z)) == pytest.approx(2.0, rel=1e-3)
    assert float(mode_seeking(speckled, z)) > 10 * float(mode_seeking(recoloured, z))


# What D is trained to output on reals and on fakes, per loss (relativistic and Wasserstein: only
# the difference is trained, so any pair with the real above).
TRAINED = {"bce": (2.0, -2.0), "hinge": (1.0, -1.0), "lsgan": (1.0, 0.0), "wgan": (5.0, 3.0),
           "ragan": (5.0, 3.0), "ralsgan": (5.0, 3.0), "rahinge": (5.0, 3.0)}


@pytest.mark.parametrize("name", list(TRAINED))
def test_realness_is_positive_where_d_says_real_and_negative_where_it_says_fake(name: str) -> None:
    """Adaptive augmentation reads D's overfitting from the sign of `realness` on the reals."""
    assert set(TRAINED) == set(LOSSES)
    real, fake = (torch.full((4,), v) for v in TRAINED[name])
    assert bool((LOSSES[name].realness(real, fake) > 0).all())
    assert bool((LOSSES[name].realness(fake, real) < 0).all())  # a real D scores like a fake
