"""Each loss's value and gradient direction on hand-made logits; the gradient penalties."""

from __future__ import annotations

import math

import pytest
import torch

from dcgan.losses import GRADIENT_PENALTIES, LOSSES

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
