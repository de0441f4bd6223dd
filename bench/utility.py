#!/usr/bin/env python3
"""Do the toolkit's own fakes help a classifier? The docs/quality.md table of `img2dist.py utility`.

Run from the repository root:  .venv/bin/python bench/utility.py WORK [--steps 1500] [--fakes 200]

The ISIC sample has no labels, so two classes are made by a stated colour rule: a lesion is *dark*
when the mean luminance (Rec. 601) of the central 32x32 of its 64x64 image (where an ISIC crop puts
the lesion) is below the median over ../shared/data/isic/all-64, else *light*. A seeded quarter of
each class is held out as WORK/test; the rest (WORK/train) is all that the conditional GAN
(`gancontrol.py training --conditional`, default preset) and the classifier see. Then
`generate --class` makes --fakes per class into WORK/fakes and `img2dist.py utility` runs with its
defaults (3 seeds, one thread), writing WORK/utility.json and WORK/utility.png. A stage whose output exists is
skipped, so a stopped run (SIGTERM: the GAN saves a checkpoint) goes on from there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "isic" / "all-64"


def split(work: Path, seed: int = 0) -> None:
    """WORK/{train,test}/{dark,light}/ by the rule in the docstring."""
    paths = sorted(SOURCE.glob("*.jpg"))
    centres = [np.asarray(Image.open(p).convert("RGB"), float)[16:48, 16:48] for p in paths]
    lum = np.array([(c @ [0.299, 0.587, 0.114]).mean() for c in centres])
    rng = np.random.default_rng(seed)
    for name, members in (("dark", lum < np.median(lum)), ("light", lum >= np.median(lum))):
        idx = np.flatnonzero(members)
        rng.shuffle(idx)
        for part, chosen in (("test", idx[: len(idx) // 4]), ("train", idx[len(idx) // 4:])):
            (work / part / name).mkdir(parents=True, exist_ok=True)
            for i in chosen:
                shutil.copy(paths[i], work / part / name / paths[i].name)
        print(f"{name}: {len(idx)} images, luminance {lum[members].min():.1f}-{lum[members].max():.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--fakes", type=int, default=200, help="per class")
    args = parser.parse_args()
    work, py = args.work, sys.executable
    if not (work / "train").is_dir():
        split(work)
    if not (work / "run" / "checkpoint.pt").is_file():
        subprocess.run([py, "gancontrol.py", "training", str(work / "train"), str(args.steps), "32",
                        str(work / "run"), "--conditional", "--seed", "0"], cwd=REPO, check=True)
    for name in ("dark", "light"):
        if not (work / "fakes" / name).is_dir():
            subprocess.run([py, "gancontrol.py", "generate", str(work / "run"), str(args.fakes),
                            str(work / "fakes" / name), "--class", name], cwd=REPO, check=True)
    folders = [str(work / name) for name in ("train", "fakes", "test")]
    # one thread, as measured: on the shared machine two threads spun (docs/performance.md)
    subprocess.run([py, "img2dist.py", "utility", *folders, "--json", str(work / "utility.json")], cwd=REPO,
                   check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


if __name__ == "__main__":
    main()
