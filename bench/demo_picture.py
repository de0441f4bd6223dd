#!/usr/bin/env python3
"""The README's first picture: 16 real training images beside the 16 that `make demo` generates.

Run from the repository root after `make demo`:  .venv/bin/python bench/demo_picture.py [demo]
Writes docs/images/demo.png: two 4x4 grids of 64x64 images, reals (demo/data-64) on the left and
the demo's fakes (demo/fakes) on the right, each under a caption.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]


def grid(paths: list[Path], columns: int = 4, pad: int = 2) -> Image.Image:
    tiles = [Image.open(p).convert("RGB") for p in paths]
    w, h = tiles[0].size
    rows = -(-len(tiles) // columns)
    out = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for i, tile in enumerate(tiles):
        out.paste(tile, (pad + (i % columns) * (w + pad), pad + (i // columns) * (h + pad)))
    return out


def main() -> None:
    demo = REPO / (sys.argv[1] if len(sys.argv) > 1 else "demo")
    reals = sorted((demo / "data-64").glob("*.*"))
    # 16 spread over the sorted names rather than the first 16
    reals = [reals[i] for i in np.linspace(0, len(reals) - 1, 16).round().astype(int)]
    fakes = sorted((demo / "fakes").glob("seed*.png"))[:16]
    left, right = grid(reals), grid(fakes)
    font = ImageFont.load_default(size=14)
    top, gap = 24, 24
    canvas = Image.new("RGB", (left.width + gap + right.width, top + left.height), (255, 255, 255))
    canvas.paste(left, (0, top))
    canvas.paste(right, (left.width + gap, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((left.width / 2, top / 2), "real (training_data/)", fill=(0, 0, 0), font=font, anchor="mm")
    draw.text((left.width + gap + right.width / 2, top / 2), "generated (make demo)", fill=(0, 0, 0),
              font=font, anchor="mm")
    out = REPO / "docs" / "images" / "demo.png"
    canvas.save(out, optimize=True)
    print(f"{out}: {canvas.size[0]}x{canvas.size[1]}")


if __name__ == "__main__":
    main()
