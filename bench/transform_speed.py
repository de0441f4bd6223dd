#!/usr/bin/env python3
"""How much faster `transform` is than a plain full decode + crop + resize, per image.

Run from the repository root:  .venv/bin/python bench/transform_speed.py

The 2018 tool decoded every full-size original (twice); `transform_folder` decodes each JPEG once
in draft mode, at the smallest DCT scale that still covers the target, so a 4000x3000 original
headed for 160x160 is decoded at 500x375. This script measures that on synthetic 4000x3000 JPEGs
(smooth colour fields with sensor-like grain, quality 90, so file sizes and decode work are
realistic), generated once and cached in the temp folder.

Both methods run single-process for the per-image comparison; the default parallel run of
`transform_folder` is reported beside them. Runs alternate (A B C A B C ...) so that drift in the
machine's speed (thermal, other load) hits all methods alike, and medians are reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dcgan.data.transform import transform_folder
from dcgan.images import center_crop_box, find_images
from dcgan.resources import cpu_count


def make_jpeg(path: Path, size: tuple[int, int], seed: int) -> None:
    """One synthetic photo-like JPEG: blurry colour blobs plus fine grain, quality 90."""
    w, h = size
    rng = np.random.default_rng(seed)
    blobs = Image.fromarray(rng.integers(40, 220, size=(6, 8, 3), dtype=np.uint8))
    base = np.asarray(blobs.resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    # Grain from one tile repeated: realistic JPEG sizes without drawing 36M random numbers per image.
    tile = rng.integers(-6, 7, size=(256, 256, 1), dtype=np.int16)
    grain = np.tile(tile, (h // 256 + 1, w // 256 + 1, 1))[:h, :w]
    Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8)).save(path, quality=90)


def ensure_inputs(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """Generate the inputs once; later runs reuse them."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"synthetic_{i:03d}.jpg"
        if not path.exists():
            print(f"\rgenerating {i + 1}/{count} ...", end="", flush=True)
            tmp = path.with_name(".partial-" + path.name)
            make_jpeg(tmp, size, seed=i)
            tmp.replace(path)
    print()
    return find_images(folder, recursive=False)[:count]


def plain(paths: list[Path], out: Path, target: int) -> None:
    """The baseline: full decode, convert, crop, Lanczos resize, save, one image after another."""
    out.mkdir(parents=True, exist_ok=True)
    for p in paths:
        img = Image.open(p).convert("RGB")
        img = img.crop(center_crop_box(img.width, img.height, target, target))
        img.resize((target, target), Image.Resampling.LANCZOS).save(out / p.name, quality=95)


def timed(func: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--target", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3, help="A B C repetitions; medians are reported")
    parser.add_argument("--inputs", type=Path, default=None, help="folder for the generated JPEGs")
    args = parser.parse_args()

    inputs = args.inputs or Path(tempfile.gettempdir()) / (
        f"dcgan-bench-{args.width}x{args.height}-q90-{args.count}")
    paths = ensure_inputs(inputs, args.count, (args.width, args.height))
    mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
    print(f"{len(paths)} JPEGs {args.width}x{args.height} ({mb:.2f} MB each) in {inputs} -> "
          f"{args.target}x{args.target}; {cpu_count()} CPUs")
    for p in paths:  # warm the page cache so that the first method timed does not pay for the disk
        p.read_bytes()

    n, t = len(paths), args.target
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        methods: dict[str, Callable[[], object]] = {
            "transform_folder, workers=1": lambda: transform_folder(inputs, out / "a", t, t, workers=1,
                                                                   progress=False),
            "plain decode+crop+resize": lambda: plain(paths, out / "b", t),
            "transform_folder, default workers": lambda: transform_folder(inputs, out / "c", t, t,
                                                                         progress=False),
        }
        times: dict[str, list[float]] = {name: [] for name in methods}
        for r in range(args.rounds):
            for name, func in methods.items():
                times[name].append(timed(func) / n)
            print(f"round {r + 1}/{args.rounds}: " +
                  ", ".join(f"{name} {times[name][-1] * 1e3:.1f} ms" for name in methods))

    med = {name: statistics.median(v) for name, v in times.items()}
    base = med["plain decode+crop+resize"]
    print(f"\nmedian per image over {args.rounds} rounds:")
    for name, value in med.items():
        print(f"  {name:36s} {value * 1e3:8.2f} ms/img  {base / value:6.1f}x vs plain")
    single = base / med["transform_folder, workers=1"]
    print(f"single-process speed-up {single:.1f}x (target >= 3x): {'OK' if single >= 3 else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
