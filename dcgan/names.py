"""The registry names the CLIs offer as choices, spelled out so that `--help` needs no torch.

The registries themselves (`losses.LOSSES`, `losses.GRADIENT_PENALTIES`, `models.UPSAMPLING`,
`models.D_INPUTS`, `architectures.ARCHITECTURES`) import torch, which takes seconds;
tests/test_cli_help.py checks that these names match them.
"""

from __future__ import annotations

LOSS_NAMES = ("bce", "lsgan", "hinge", "wgan", "ragan", "ralsgan", "rahinge")
GRADIENT_PENALTY_NAMES = ("none", "wgan", "dragan", "r1")
UPSAMPLING_NAMES = ("transpose", "resize", "blur")
DOWNSAMPLING_NAMES = ("stride", "blur")
RGB_LAYER_NAMES = ("up", "conv", "conv-noise")
D_INPUT_NAMES = ("image", "image+fine")
ARCH_NAMES = ("dcgan", "sngan", "fastgan")
