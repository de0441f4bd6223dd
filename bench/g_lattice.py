#!/usr/bin/env python3
"""Where a generator's periodic pattern is born: the strength of spectral lines layer by layer.

Run from the repository root:  .venv/bin/python bench/g_lattice.py RUN_DIR [RUN_DIR ...] [--n 64]

A lattice in the fakes (the spectrum report's peak ratio at a single frequency such as fy = fx =
1/4) is made somewhere inside G. This script runs G (EMA weights) on `--n` random latents, keeps the
output of every layer that holds feature maps of at least `--min-size` pixels, and prints, for
each, how far the maps' mean power at each frequency of G's doubling grid (multiples of 1/4
cycle/pixel on each axis and both diagonals) stands above the power around it: the power there over
the median of the ring of frequencies 2-3 bins away (1 = no line; a pattern repeated every 2 or 4
pixels gives tens). Each channel loses its mean (the DC line does not count) and is Hann-windowed
(the maps' borders would otherwise put a cross of power on both axes). One line per layer: its
name in G, its kind and size, then the strengths.

Why layer by layer: a line that a conv's output lacks and the ReLU after it has was made by the
rectification; one that a doubling carries from 1/2 to 1/4 was born a layer earlier; one that grows
in the last conv is G's choice, not its architecture's (docs/quality.md has the 160 px readings).
numpy/torch only: no library reads lines out of a network's activations.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dcgan.generate import load_generator  # noqa: E402

GRID = [(0.5, 0.5), (0.5, 0.0), (0.0, 0.5), (0.25, 0.25), (0.25, -0.25), (0.25, 0.0), (0.0, 0.25)]


def line_strength(power: np.ndarray, fy: float, fx: float) -> float:
    """Power at (fy, fx) cycles/pixel over the median power 2-3 frequency bins around it."""
    h, w = power.shape
    i, j = round(fy * h) % h, round(fx * w) % w
    ring = [power[(i + di) % h, (j + dj) % w] for di in range(-3, 4) for dj in range(-3, 4)
            if max(abs(di), abs(dj)) >= 2]
    return float(power[i, j] / max(float(np.median(ring)), 1e-30))


def map_power(maps: torch.Tensor) -> np.ndarray:
    """Mean |FFT|^2 over images and channels of (N, C, H, W) maps, each channel less its mean and
    Hann-windowed (the maps' borders would otherwise put a cross of power on both axes)."""
    maps = maps.float()
    maps = maps - maps.mean(dim=(2, 3), keepdim=True)
    h, w = maps.shape[-2:]
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
    return (torch.fft.fft2(maps * window).abs() ** 2).mean(dim=(0, 1)).numpy()


def layer_lines(run: str | Path, n: int = 64, seed: int = 0, min_size: int = 8) -> list[dict]:
    """One row per layer of a run's G (EMA weights) whose maps are at least `min_size` pixels wide."""
    return generator_lines(load_generator(run)[0], n, seed, min_size)


def generator_lines(G: torch.nn.Module, n: int = 64, seed: int = 0, min_size: int = 8) -> list[dict]:
    """`layer_lines` for a G in hand (eval mode or not, as the caller left it)."""
    modules = dict(G.named_modules())
    outputs: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in modules.items():
        if next(module.children(), None) is None:  # leaves only: a container repeats its last child
            # clone: in-place ReLUs would otherwise overwrite what the previous layer handed on
            hooks.append(module.register_forward_hook(
                lambda _m, _i, out, name=name: outputs.__setitem__(name, out.detach().clone())))
    generator = torch.Generator().manual_seed(seed)
    try:
        with torch.no_grad():
            G(torch.randn(n, G.latent_dim, generator=generator))
    finally:  # the caller's G must not keep our hooks if its forward fails
        for hook in hooks:
            hook.remove()
    rows = []
    for name, out in outputs.items():
        if out.dim() != 4 or min(out.shape[-2:]) < min_size:
            continue
        power = map_power(out)
        rows.append({"layer": name, "kind": type(modules[name]).__name__, "size": out.shape[-1],
                     "lines": {f: line_strength(power, *f) for f in GRID}})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders or checkpoints")
    parser.add_argument("--n", type=int, default=64, help="latents to average over")
    parser.add_argument("--min-size", type=int, default=40, help="smallest map side to report")
    args = parser.parse_args(argv)
    head = "  ".join(f"({fy:g},{fx:g})".rjust(10) for fy, fx in GRID)
    for run in args.runs:
        print(f"{run}: line strength at (fy,fx) cycles/pixel, 1 = no line")
        print(f"  {'layer':>12} {'kind':16} {'px':>4}  {head}")
        for row in layer_lines(run, args.n, min_size=args.min_size):
            values = "  ".join(f"{row['lines'][f]:10.1f}" for f in GRID)
            print(f"  {row['layer']:>12} {row['kind']:16} {row['size']:4d}  {values}")


if __name__ == "__main__":
    main()
