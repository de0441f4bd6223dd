#!/usr/bin/env python3
"""Training throughput on a GPU: both architectures, 64-256 px, bf16 and fp32, compiled or not.

Run from the repository root on a CUDA machine:  .venv/bin/python bench/gpu_check.py
(`--sizes 64,160`, `--archs fastgan`, `--steps 30`, `--batch 32`, `--no-compile` narrow it down).

For every combination it builds the trainer `gancontrol.py training` uses (the architecture's own
preset: `small-data` for dcgan, `few-shot` for fastgan) on random uint8 images in memory (the speed
does not depend on what they show; no dataset needed), runs warm-up steps (torch.compile compiles in
them), then times `--steps` training steps and prints one line each: images/s, ms per step, peak GPU
memory (torch.cuda.max_memory_allocated), and the machine (GPU, CUDA, torch) above the table.
A combination that fails (out of memory, a compiler error) prints its one-line reason and the rest go
on. `--tiny` runs the same code on the CPU at 32/64 px with small widths and 2 steps: the test suite
runs it so this script keeps working between the rare days a GPU is lent. `--cpu` measures on the CPU
at full size; run one combination per process there, as the peak memory it prints (the process's
maximum resident set) only grows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from dcgan.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PRESET_OF = {"dcgan": "small-data", "fastgan": "few-shot"}


def build(arch: str, size: int, batch: int, precision: str, compile_: bool, device: str,
          width: int | None) -> Trainer:
    """A Trainer for `arch` at `size` on random images, as `gancontrol.py training` would build it."""
    from bench.train_speed import random_trainer

    widths = {"g_channels": width, "d_channels": width} if width else {}
    return random_trainer(size, batch, precision, PRESET_OF[arch], n=max(batch * 4, 64), device=device,
                          compile_=compile_, recipe={"arch": arch, **widths})


def measure(arch: str, size: int, batch: int, precision: str, compile_: bool, device: str, steps: int,
            warmup: int, width: int | None) -> dict[str, float]:
    cuda = device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer = build(arch, size, batch, precision, compile_, device, width)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(warmup):
        trainer.train_step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    sync()
    seconds = (time.perf_counter() - start) / steps
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return {"images_per_s": batch / seconds, "ms_per_step": 1e3 * seconds, "peak_gib": peak}


def machine(device: str) -> str:
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        return (f"{p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
                f"torch {torch.__version__}, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    from bench.train_speed import cpu_description

    return f"{cpu_description()}, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,160,256")
    parser.add_argument("--archs", default="dcgan,fastgan")
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--width", type=int, default=None,
                        help="--g-channels and --d-channels for both (default: each preset's)")
    parser.add_argument("--no-compile", action="store_true", help="only eager mode")
    parser.add_argument("--tiny", action="store_true", help="CPU, 32/64 px, small widths, 2 steps (the test)")
    parser.add_argument("--cpu", action="store_true", help="measure on the CPU (peak = max resident set)")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() and not (args.tiny or args.cpu) else "cpu"
    if device == "cpu" and not (args.tiny or args.cpu):
        print("no CUDA device here: --cpu measures on the CPU, --tiny is the smoke test", file=sys.stderr)
        return 2
    sizes = [32, 64] if args.tiny else [int(s) for s in args.sizes.split(",")]
    width = 4 if args.tiny else args.width
    steps, warmup = (2, 1) if args.tiny else (args.steps, args.warmup)
    batch = 4 if args.tiny else args.batch
    compiles = [False] if args.no_compile or args.tiny or args.cpu else [False, True]
    print(f"machine: {machine(device)}")
    print(f"batch {batch}, {steps} timed steps after {warmup} warm-up steps; presets {PRESET_OF}")
    print(f"{'arch':8} {'px':>4} {'precision':9} {'compile':7} {'images/s':>9} {'ms/step':>8} "
          f"{'peak GiB':>8}")
    failures = 0
    for arch in args.archs.split(","):
        for size in sizes:
            for precision in args.precisions.split(","):
                for compile_ in compiles:
                    head = f"{arch:8} {size:4d} {precision:9} {'on' if compile_ else 'off':7}"
                    try:
                        r = measure(arch, size, batch, precision, compile_, device, steps, warmup, width)
                    except Exception as err:  # one failure (OOM, compiler) must not end the table
                        failures += 1
                        reason = (str(err).splitlines() or [""])[0][:120]
                        print(f"{head} failed: {type(err).__name__}: {reason}", flush=True)
                        continue
                    print(f"{head} {r['images_per_s']:9.1f} {r['ms_per_step']:8.1f} {r['peak_gib']:8.2f}",
                          flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
