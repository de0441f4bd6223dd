"""DiffAugment registry: each augmentation is random per image, differentiable and shape-preserving."""

from __future__ import annotations

import pytest
import torch

from dcgan.diffaug import (
    AUGMENTATIONS,
    AdaptiveAugment,
    cutout,
    flip,
    make_augment,
    parse_policy,
    rot90,
    translation,
    translation_reflect,
)
from dcgan.errors import UserError


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_shape_gradient_and_per_image_randomness(name: str) -> None:
    torch.manual_seed(0)
    x = torch.rand(8, 3, 16, 16, requires_grad=True) * 2 - 1
    x.retain_grad()
    y = AUGMENTATIONS[name](x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    copies = AUGMENTATIONS[name](x.detach()[:1].expand(16, -1, -1, -1).contiguous())
    assert not all(torch.equal(copies[0], c) for c in copies[1:]), "every image should get its own draw"


def test_translation_shifts_whole_pixels_and_fills_zeros() -> None:
    torch.manual_seed(1)
    x = torch.ones(64, 1, 8, 8)
    y = translation(x)
    zeros = (y == 0).flatten(1).sum(1)
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}
    assert int(zeros.max()) > 0 and int(zeros.min()) == 0  # some shifted, some not


def test_translation_reflect_mirrors_the_border_instead_of_zeros() -> None:
    torch.manual_seed(3)
    assert float(translation_reflect(torch.ones(64, 3, 16, 16)).min()) == 1.0  # no fill value anywhere
    ramp = torch.arange(16.0).expand(64, 1, 16, 16).contiguous()  # every row 0..15
    y = translation_reflect(ramp)
    assert torch.equal(y, y[:, :, :1].expand_as(y))  # columns move alike in every row

    def mirrored(d: int) -> torch.Tensor:  # row shifted right by d, mirrored about the edge pixels
        src = torch.arange(16) - d
        return torch.where(src < 0, -src, torch.where(src > 15, 30 - src, src)).float()

    shifts = []
    for row in y[:, 0, 0]:
        matches = [d for d in range(-2, 3) if torch.equal(row, mirrored(d))]  # 1/8 of 16 px: up to 2
        assert len(matches) == 1, row
        shifts += matches
    assert set(shifts) == {-2, -1, 0, 1, 2}


def test_cutout_removes_a_quarter() -> None:
    torch.manual_seed(2)
    y = cutout(torch.ones(32, 3, 16, 16))
    removed = (y[:, 0] == 0).flatten(1).sum(1).float()
    # An 8x8 square (a quarter of the image) when fully inside, less at the borders.
    assert int(removed.max()) == 64 and float(removed.min()) >= 16


def test_flip_and_rot90_are_permutations_of_pixels() -> None:
    torch.manual_seed(3)
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(32, 1, 4, 4).contiguous()
    for f in (flip, rot90):
        y = f(x)
        assert torch.equal(y.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
        assert len({tuple(v.flatten().tolist()) for v in y}) > 1


def test_policy_parsing() -> None:
    assert parse_policy("none") == [] and make_augment("none") is None
    names = [f.__name__ for f in parse_policy("color, translation,cutout")]
    assert names == ["color", "translation", "cutout"]
    with pytest.raises(UserError, match="unknown augmentation"):
        parse_policy("color,zoom")


def test_adaptive_augmentation_applies_each_transform_with_probability_p() -> None:
    torch.manual_seed(3)
    x = torch.rand(2000, 1, 2, 2) + 0.5  # all positive: a negated image is told by its sign
    ada = AdaptiveAugment([lambda v: -v], target=0.6, kimg=1.0)
    assert torch.equal(ada(x), x)  # p starts at 0: nothing applied
    for p, low, high in [(0.25, 0.22, 0.28), (1.0, 1.0, 1.0)]:
        ada.p = torch.tensor(p)
        out = ada(x)
        negated = (out < 0).flatten(1).all(1)
        assert torch.equal(out[negated], -x[negated]) and torch.equal(out[~negated], x[~negated])
        assert low <= float(negated.float().mean()) <= high


def test_adaptive_augmentation_follows_ds_sign_on_the_reals() -> None:
    ada = AdaptiveAugment([lambda v: v], target=0.6, kimg=1.0)
    ada.observe(torch.tensor([3.0, 1.0, 0.5, -2.0] * 25))  # r_t = 0.5: below 0.6, and p is at 0
    ada.adjust()
    assert float(ada.p) == 0.0 and float(ada.count) == 0  # clamped; the sums start again
    for _ in range(4):  # r_t = 0.8 over 100 images: up by 100 / 1000 each time
        ada.observe(torch.tensor([1.0] * 90 + [-1.0] * 10))
        ada.adjust()
    assert float(ada.p) == pytest.approx(0.4)
    ada.observe(torch.tensor([1.0] * 50 + [-1.0] * 50))
    ada.adjust(lambda t: t * 2)  # two processes that saw the same: 200 images, down by 0.2
    assert float(ada.p) == pytest.approx(0.2)
    # Two heads per image (--d-coarse) or patches (fastgan, image by image): one vote per image,
    # their mean, and p moves by the images seen, not by the outputs.
    ada.observe(torch.tensor([[1.0, 1.0]] * 80 + [[1.0, -1.0]] * 20))  # votes 1 and 0: 80 over 100 images
    assert float(ada.count) == 100 and float(ada.signs) == 80
    ada.observe(torch.tensor([1.0, -1.0, -1.0, -1.0] * 10), images=10)  # 10 images of 4 patches: -0.5 each
    assert float(ada.count) == 110 and float(ada.signs) == 75
    ada.adjust()  # r_t = 75 / 110 > 0.6: up by 110 / 1000
    assert float(ada.p) == pytest.approx(0.31)
    ada.p.fill_(0.2)
    state = ada.state_dict()
    other = AdaptiveAugment([lambda v: v], target=0.6, kimg=1.0)
    other.load_state_dict(state)
    assert float(other.p) == pytest.approx(0.2)
