"""Generator/Discriminator shapes for every supported size and arch; the DCGAN reference size."""

from __future__ import annotations

import pytest
import torch

from dcgan.errors import UserError
from dcgan.models import Discriminator, Generator, size_plan


@pytest.mark.parametrize("resolution", [32, 40, 64, 128, 160, 256, 512])
@pytest.mark.parametrize("arch", ["dcgan", "sngan"])
def test_shapes(resolution: int, arch: str) -> None:
    width = 4 if resolution >= 256 else 8
    G = Generator(resolution, z_dim=16, width=width, channels=3)
    D = Discriminator(resolution, width=width, channels=3, arch=arch)
    x = G(torch.randn(2, 16))
    assert x.shape == (2, 3, resolution, resolution)
    assert float(x.detach().abs().max()) <= 1.0  # tanh output
    assert D(x).shape == (2,)


def test_grayscale_shapes() -> None:
    G, D = Generator(32, 8, 8, channels=1), Discriminator(32, 8, channels=1)
    assert G(torch.randn(3, 8)).shape == (3, 1, 32, 32)
    assert D(torch.randn(3, 1, 32, 32)).shape == (3,)


def test_reference_dcgan_parameter_counts() -> None:
    # pytorch/examples dcgan at 64 px, ngf = ndf = 64, nz = 100: same layers, same sizes.
    assert sum(p.numel() for p in Generator(64).parameters()) == 3_576_704
    assert sum(p.numel() for p in Discriminator(64).parameters()) == 2_765_568


def test_sngan_has_spectral_norm_on_every_conv_and_no_batchnorm() -> None:
    D = Discriminator(64, 8, arch="sngan")
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())


def test_init_is_dcgan_normal() -> None:
    G = Generator(64)
    w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    assert abs(float(w.mean())) < 1e-3 and abs(float(w.std()) - 0.02) < 1e-3


@pytest.mark.parametrize("bad", [48, 100, 8, 0, 96 * 3])
def test_unsupported_resolution_is_a_clear_error(bad: int) -> None:
    with pytest.raises(UserError, match="4 or 5 times a power of two"):
        size_plan(bad)
