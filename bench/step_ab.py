#!/usr/bin/env python3
"""Training step time of two recipes, alternating (A B A B), at one or more image sizes.

Run from the repository root:
    .venv/bin/python bench/step_ab.py --a d_coarse=0,upsample_last=same --b "" --sizes 128,160,256

Each side is the `small-data` preset (or `--preset`) with the given options set as a user would set
them (name=value, comma-separated; empty = the preset as it is), so the preset fills in the rest
exactly as `gancontrol.py training` does. The trainer is built on random images in memory (a step's
speed does not depend on what they show), one warm-up step, then the median of `--steps` timed
steps, for `--rounds` rounds of A then B; this machine's speed drifts, so only the same round's
figures compare. Prints the CPU (model, native bf16 or not), each round, the ratio of the medians
B / A and the process's peak resident memory (both recipes, every size so far).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_recipe(text: str) -> dict[str, Any]:
    """`name=value,...` -> {name: value}, the values typed by TrainOptions as a control file's are."""
    from dcgan.options import TrainOptions

    pairs = {k.strip().replace("-", "_"): v for k, v in
             (item.split("=", 1) for item in text.split(",") if item.strip())}
    typed = TrainOptions.from_dict(pairs, f"recipe {text!r}")
    return {k: getattr(typed, k) for k in pairs}


def step_seconds(recipe: dict[str, Any], preset: str, size: int, batch: int, precision: str,
                 steps: int) -> float:
    from bench.train_speed import random_trainer

    trainer = random_trainer(size, batch, precision, preset, n=max(4 * batch, 64), recipe=recipe)
    trainer.train_step()  # warm-up: first-call allocations and oneDNN's kernel choice
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", default="", help="recipe A: name=value,... over the preset")
    ap.add_argument("--b", default="", help="recipe B: name=value,... over the preset")
    ap.add_argument("--preset", default="small-data")
    ap.add_argument("--sizes", default="160")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per recipe and round")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    from bench.train_speed import cpu_description
    from dcgan.errors import UserError

    try:
        recipes = {"A": parse_recipe(args.a), "B": parse_recipe(args.b)}
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"machine: {cpu_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"preset {args.preset}, batch {args.batch}, {args.precision}; A {recipes['A'] or 'as is'}; "
          f"B {recipes['B'] or 'as is'}")
    for size in (int(s) for s in args.sizes.split(",")):
        medians: dict[str, list[float]] = {"A": [], "B": []}
        for rnd in range(args.rounds):
            for name, recipe in recipes.items():
                medians[name].append(step_seconds(recipe, args.preset, size, args.batch, args.precision,
                                                  args.steps))
                print(f"{size} px round {rnd + 1} {name}: {medians[name][-1]:.3f} s per step", flush=True)
        ratio = statistics.median(medians["B"]) / statistics.median(medians["A"])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        print(f"{size} px: A {' / '.join(f'{t:.2f}' for t in medians['A'])} s, "
              f"B {' / '.join(f'{t:.2f}' for t in medians['B'])} s, B/A {ratio:.2f}x, "
              f"peak memory {peak:.1f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
