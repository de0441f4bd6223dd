"""The architectures registry: `--arch` name -> the function that builds a run's G and D.

A new architecture is one builder and one entry. Its own module holds the networks (`models` the
DCGAN family, `fastgan` the few-shot one); this module only chooses, so the trainer, the checkpoint
checks and `generate` build every architecture the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .fastgan import FewShotDiscriminator, FewShotGenerator
from .models import Discriminator, Generator
from .spec import RunSpec

Models = tuple[nn.Module, Callable[[], nn.Module]]  # G, and how to build D (after G: init draws in order)


def _dcgan(spec: RunSpec) -> Models:
    """The DCGAN paper's networks and their variants (`--arch sngan`: spectral norm on D)."""
    o = spec.options
    G = Generator(spec.resolution, o.z_dim, o.g_channels, spec.channels, spec.num_classes, o.upsample,
                  o.rgb_layer, o.noise, o.g_fine_layers, o.g_supersample, o.noise_per_image,
                  o.sparse_noise, o.hair_noise, o.upsample_last, o.upsample_last_count)
    return G, lambda: Discriminator(spec.resolution, o.d_channels, spec.channels, o.arch, spec.num_classes,
                                    o.mbstd, o.downsample, o.d_input, o.d_fine_layers, o.d_spectrum,
                                    o.d_coarse)


def _fastgan(spec: RunSpec) -> Models:
    """The few-shot networks of `dcgan.fastgan` (FastGAN's ideas)."""
    o = spec.options
    G = FewShotGenerator(spec.resolution, o.z_dim, o.g_channels, spec.channels, spec.num_classes, o.noise)
    return G, lambda: FewShotDiscriminator(spec.resolution, o.d_channels, spec.channels, spec.num_classes,
                                           o.d_input, o.d_spectrum)


ARCHITECTURES: dict[str, Callable[[RunSpec], Models]] = {
    "dcgan": _dcgan, "sngan": _dcgan, "fastgan": _fastgan}


def build_generator(spec: RunSpec) -> Generator | FewShotGenerator:
    """G as a run's settled settings describe it."""
    return ARCHITECTURES[spec.options.arch](spec)[0]  # type: ignore[return-value]


def build_models(spec: RunSpec) -> tuple[Generator | FewShotGenerator, Discriminator | FewShotDiscriminator]:
    """G and D as a run's settled settings describe them; G is built first, as its init draws come first."""
    G, make_d = ARCHITECTURES[spec.options.arch](spec)
    return G, make_d()  # type: ignore[return-value]
