#!/usr/bin/env python3
"""Small-data quality: the 2018 recipe (`--preset classic`) against `--preset small-data`.

Run from the repository root:  .venv/bin/python bench/quality.py [--steps 2000] [--batch 32]

Trains at 64x64 on ../shared/data/isic/all-64 (398 real ISIC images; falls back to the 54 of
training_data/, resized) with the same CPU budget for each preset (same steps and batch), two seeds
each, then scores 400 generated images against the reals with the measures of `img2dist.py
quality`: the sliced Wasserstein distance on Laplacian-pyramid patches (x 1e3, lower is better),
k-NN precision/recall on 16x16 downscaled pixels, the top-band power-spectrum ratio (1 = like the
reals) and the classifier two-sample test's judge panel (5-fold held-out accuracy of each judge, 0.5 =
indistinguishable; the strongest judge is the verdict; about 7 minutes per run on 2 cores,
`--no-c2st` skips it), with two halves of the reals as the reference of all.
`--train-args "--upsample blur"` adds flags to every training run (`--label` names them);
`--score FAKES...` scores existing folders of generated images instead of training. The
overview grids of the runs (seed 0) are copied to docs/images/ for docs/quality.md. When
../shared/data/seed-dcgan-100k exists, the 54 samples of the 2018 DCGAN after 100k GPU steps are
scored the same way beside 54 of ours (the quality anchor).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dcgan.analysis.c2st import C2STOptions, panel_accuracies, panel_test, reference_test  # noqa: E402
from dcgan.analysis.quality import load_quality_set, pr_features, precision_recall, sliced_wasserstein  # noqa: E402
from dcgan.analysis.spectrum import spectrum_report  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
DOCS = REPO / "docs" / "images"


def cli(*args: object) -> None:
    subprocess.run([sys.executable, *map(str, args)], check=True, cwd=REPO)


def score(real: object, fake_dir: Path, c2st: bool = True) -> dict[str, float]:
    fake = load_quality_set(str(fake_dir), (64, 64)).images
    reals = real.images  # type: ignore[attr-defined]
    swd = sliced_wasserstein(reals, fake)["mean"]
    precision, recall = precision_recall(pr_features(reals), pr_features(fake))
    spectrum = spectrum_report(reals, fake)
    out = {"swd": swd, "precision": precision, "recall": recall,
           "spectrum": spectrum["top_band_ratio"], "peak": spectrum["peak_ratio"]}
    if c2st:
        # The judge panel; the strongest judge is the verdict (`c2st`), each judge's figure beside it.
        out.update(panel_accuracies(panel_test(reals, fake, C2STOptions()), "c2st"))
    return out


def panel_text(s: dict[str, float]) -> str:
    """'  C2ST 0.942 (full-res; strided 0.69, ...)' for a score with the panel, else ''."""
    if "c2st" not in s:
        return ""
    others = ", ".join(f"{k[5:]} {v:.3f}" for k, v in s.items()
                       if k.startswith("c2st_") and k != "c2st_judge")
    return f"  C2ST {s['c2st']:.3f} ({s['c2st_judge']}; {others})"


def reference(real: object, c2st: bool = True) -> str:
    """What indistinguishable scores: two halves of the reals against each other."""
    reals = real.images  # type: ignore[attr-defined]
    halves = spectrum_report(reals, reals)
    spec, peak = halves["real_halves"], halves["real_halves_peak"]
    line = (f"reals vs reals: spectrum ratio of halves {spec['min']:.3f} - {spec['max']:.3f}, "
            f"peak {peak['min']:.2f} - {peak['max']:.2f}")
    if c2st:
        refs = reference_test(reals, C2STOptions())
        n = next(iter(refs.values()))["images_per_set"]
        line += (f"; C2ST judges ({n} vs {n}): "
                 + ", ".join(f"{j} {r['accuracy']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
                             for j, r in refs.items())
                 + f"; max {max(r['accuracy'] for r in refs.values()):.3f}")
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--presets", default="classic,small-data")
    ap.add_argument("--images", type=int, default=400, help="generated images scored per run")
    ap.add_argument("--keep", default=None, help="folder to keep the run folders in")
    ap.add_argument("--train-args", default="",
                    help='extra training flags for every run, e.g. "--upsample blur"')
    ap.add_argument("--label", default="", help="suffix of the run names and grids for --train-args")
    ap.add_argument("--no-c2st", action="store_true", help="skip the classifier two-sample test")
    ap.add_argument("--score", nargs="+", default=None, metavar="FAKES",
                    help="only score these folders of generated images (no training)")
    args = ap.parse_args()
    data = SHARED / "isic" / "all-64"
    if not data.is_dir():
        data = REPO / "training_data"
    real = load_quality_set(str(data), (64, 64))
    print(f"real: {data} ({len(real.images)} images at 64x64)"
          + ("" if args.score else f"; {args.steps} steps of {args.batch} per run"))
    print(reference(real, not args.no_c2st), flush=True)
    if args.score:
        for folder in args.score:
            s = score(real, Path(folder), not args.no_c2st)
            print(f"{folder}: SWD {s['swd']:.1f}  precision {s['precision']:.3f}  recall {s['recall']:.3f}  "
                  f"spectrum {s['spectrum']:.3f}  peak {s['peak']:.2f}" + panel_text(s), flush=True)
        return
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="isic-gan-quality-"))
    results: dict[str, list[dict[str, float]]] = {}
    for seed in args.seeds.split(","):
        for preset in args.presets.split(","):
            name = f"{preset}{'-' + args.label if args.label else ''}"
            run = work / f"{name}-seed{seed}"
            t0 = time.perf_counter()
            cli("gancontrol.py", "training", data, args.steps, args.batch, run, "--resolution", 64,
                "--preset", preset, "--seed", seed, "--quiet", "--overwrite", *args.train_args.split())
            minutes = (time.perf_counter() - t0) / 60
            fakes = work / f"{name}-seed{seed}-fakes"
            shutil.rmtree(fakes, ignore_errors=True)
            cli("gancontrol.py", "generate", run, args.images, fakes, "--quiet")
            s = score(real, fakes, not args.no_c2st)
            results.setdefault(preset, []).append(s)
            print(f"{name:>10} seed {seed}: SWD {s['swd']:7.1f}  precision {s['precision']:.3f}  "
                  f"recall {s['recall']:.3f}  spectrum {s['spectrum']:.3f}  peak {s['peak']:.2f}"
                  + panel_text(s) + f"  ({minutes:.1f} min)", flush=True)
            if seed == args.seeds.split(",")[0]:
                DOCS.mkdir(parents=True, exist_ok=True)
                overview = work / f"{name}-overview"
                cli("gancontrol.py", "generate", run, 64, overview, "--overview", "--quiet")
                grid = next(overview.glob("overview_*.png"))
                shutil.copyfile(grid, DOCS / f"quality_{name}.png")
    print("\npreset       SWD (mean of seeds)  precision  recall  spectrum  peak (max)   C2ST (strongest)")
    for preset, rs in results.items():
        swd, p, r, sp = (statistics.mean(x[k] for x in rs)
                         for k in ("swd", "precision", "recall", "spectrum"))
        peak = max(x["peak"] for x in rs)  # the worst seed: one lattice is one too many
        c2st = f"{statistics.mean(x['c2st'] for x in rs):6.3f}" if "c2st" in rs[0] else "   n/a"
        print(f"{preset:>10}  {swd:19.1f}  {p:9.3f}  {r:6.3f}  {sp:8.3f}  {peak:10.2f}  {c2st}")
    if {"classic", "small-data"} <= results.keys():
        ratio = statistics.mean(r["swd"] for r in results["small-data"]) / statistics.mean(
            r["swd"] for r in results["classic"])
        recall = {k: statistics.mean(r["recall"] for r in results[k]) for k in ("classic", "small-data")}
        print(f"small-data SWD / classic SWD = {ratio:.2f} (target <= 0.7: "
              f"{'met' if ratio <= 0.7 else 'MISSED'}); recall {recall['small-data']:.3f} vs classic "
              f"{recall['classic']:.3f} (target: not lower: "
              f"{'met' if recall['small-data'] >= recall['classic'] else 'MISSED'})")
    anchor = SHARED / "seed-dcgan-100k"
    if anchor.is_dir():
        seed_set = load_quality_set(str(anchor), (64, 64))
        n = len(seed_set.images)
        last = args.presets.split(",")[-1]
        last_run = f"{last}{'-' + args.label if args.label else ''}-seed{args.seeds.split(',')[0]}"
        ours = load_quality_set(str(work / f"{last_run}-fakes"), (64, 64)).images[:n]
        swd_2018 = sliced_wasserstein(real.images, seed_set.images)["mean"]
        swd_ours = sliced_wasserstein(real.images, ours)["mean"]
        print(f"anchor, {n} images each against the reals: 2018 DCGAN after 100k GPU steps "
              f"SWD {swd_2018:.1f}, ours ({last}, {args.steps} CPU steps) SWD {swd_ours:.1f}")
    print(f"grids: {DOCS}/quality_<preset>.png; runs in {work}")


if __name__ == "__main__":
    main()
