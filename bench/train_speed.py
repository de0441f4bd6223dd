#!/usr/bin/env python3
"""Training speed of `gancontrol.py training` against pytorch/examples' dcgan/main.py, end to end.

Run from the repository root:  .venv/bin/python bench/train_speed.py [--precision fp32] [--rounds 3]

Prints the CPU (model, native bf16 / AMX or not) and the precision and compile choice our run
logged. Then, whole process against whole process, alternating (A B A B: this machine's speed
drifts and it is shared), for each batch size: bench/example_dcgan.py (the example's own training
loop, data pipeline and file output, rewritten from pytorch/examples dcgan/main.py) for EPOCHS
epochs, and `gancontrol.py training` on the same number of images for each preset. Figures: images
per second of wall time (process start to exit) and the ratio ours / example per round, medians;
the CPU seconds each process used (user + sys, its workers included) as a contention-robust
second view; and the load average. Then the fp32 rates of a 2048x2048 matmul (torch.matmul, i.e.
the BLAS) and of the same GEMM through oneDNN (a 1x1 convolution, what the training convs use),
the FLOPs of one training step (torch.utils.flop_counter) and the rate our steady state reaches.
For each preset it also prints what a 1.5x ratio leaves room for: the example's wall time / 1.5
against our steps alone at the steady rate plus the torch and torch._dynamo imports.
`--profile` prints the per-op breakdown (torch.profiler) of one training step per preset instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from dcgan.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED_64 = REPO.parent / "shared" / "data" / "isic" / "all-64"


def dataset() -> tuple[Path, str]:
    if SHARED_64.is_dir():
        return SHARED_64, "../shared/data/isic/all-64 (398 images)"
    return REPO / "training_data", "training_data/ (54 images, resized on load)"


def cpu_description() -> str:
    """The CPU model and whether it has native bf16 (AVX512-BF16, AMX): what `precision auto` asks."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    lines = info.splitlines()
    model = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), "unknown CPU")
    flags = set(next((x.split(":", 1)[1].split() for x in lines if x.startswith("flags")), []))
    native = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    from dcgan.resources import cpu_count

    return (f"{model}, {cpu_count()} CPUs, {'AVX-512' if 'avx512f' in flags else 'no AVX-512'}, "
            f"{'native bf16: ' + ' '.join(native) if native else 'no native bf16 (no AVX512-BF16, no AMX)'}")


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_ours(data: Path, size: int, steps: int, batch: int, extra: list[str],
             nproc: int = 0) -> dict[str, float | str]:
    """Time `gancontrol.py training` end to end; steady rate from stats.jsonl after warm-up.

    nproc > 0 launches it with torchrun (that many processes, the CPU threads shared among them).
    """
    from dcgan.resources import cpu_count

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, str(REPO / "gancontrol.py"), "training", str(data), str(steps), str(batch),
               str(out), "--resolution", str(size), "--quiet", *extra]
        env = dict(os.environ)
        if nproc:
            cmd[1:2] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                        "--local-addr=127.0.0.1", str(REPO / "gancontrol.py")]
            env.update(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS=str(max(1, cpu_count() // nproc)))
        wall, cpu = timed(cmd, env)
        stats = [json.loads(x) for x in (out / "stats.jsonl").read_text().splitlines()]
        compute = next((line.split("compute: ", 1)[1] for line in (out / "log.txt").read_text().splitlines()
                        if "compute: " in line), "?")
    steady = stats[1:] or stats
    steady_sec = statistics.mean(s["sec_per_step"] for s in steady)
    return {"end_to_end": steps * batch / wall, "steady": batch / steady_sec, "wall": wall, "cpu": cpu,
            "images": steps * batch, "compute": compute}


def run_example(root: Path, epochs: int, batch: int, n: int) -> dict[str, float]:
    """Time bench/example_dcgan.py (pytorch/examples' dcgan/main.py) end to end."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(REPO / "bench" / "example_dcgan.py"), "--dataroot", str(root),
               "--niter", str(epochs), "--batchSize", str(batch), "--outf", tmp, "--manualSeed", "0"]
        wall, cpu = timed(cmd, dict(os.environ))
    return {"end_to_end": epochs * n / wall, "wall": wall, "cpu": cpu, "images": epochs * n}


def random_trainer(size: int, batch: int, precision: str, preset: str, *, n: int = 398, device: str = "cpu",
                   compile_: bool = False, recipe: dict[str, Any] | None = None) -> Trainer:
    """A Trainer on `n` random uint8 images (the speed does not depend on their content), built as
    `gancontrol.py training` builds it: `preset` fills in what `recipe` (options set as a user would)
    leaves open. The bench scripts' one way to a trainer without a dataset."""
    from dcgan.options import TrainOptions
    from dcgan.spec import settle
    from dcgan.training.dataset import ImageSet
    from dcgan.training.trainer import build_trainer

    recipe = recipe or {}
    pixels = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)
    data = ImageSet([Path("x")] * n, size, 3, pixels, [""], torch.zeros(n, dtype=torch.int64))
    opts = TrainOptions(training_images=".", steps=10, batch_size=batch, output_dir=".", resolution=size,
                        precision=precision, device=device, preset=preset, compile=compile_,
                        user_set=sorted(recipe), **recipe)
    return build_trainer(settle(opts.validate(), n, size, 3, data.class_names), data)


def step_flops(size: int, batch: int, precision: str, preset: str = "classic") -> float:
    """FLOPs of one training cycle of our loop at `size` (counted, not estimated)."""
    from torch.utils.flop_counter import FlopCounterMode

    trainer = random_trainer(size, batch, precision, preset)
    trainer.train_step()  # type: ignore[attr-defined]
    with FlopCounterMode(display=False) as counter:
        trainer.train_step()  # type: ignore[attr-defined]
    return float(counter.get_total_flops())


def best_rate(flops: float, fn: object, reps: int = 10) -> float:
    fn()  # type: ignore[operator]
    best = math.inf
    for _ in range(reps):  # the best of several: the machine is shared, contention only slows
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return flops / best


def matmul_rate(dtype: torch.dtype, n: int = 2048) -> float:
    """torch.matmul, i.e. the BLAS PyTorch links (MKL; on AMD CPUs MKL takes a slower code path)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return best_rate(2 * n**3, lambda: a @ b)


def onednn_gemm_rate(n: int = 2048) -> float:
    """The same 2048^3 fp32 GEMM through oneDNN (a 1x1 convolution), the library the convs use."""
    x = torch.randn(1, n, 1, n).contiguous(memory_format=torch.channels_last)
    w = torch.randn(n, n, 1, 1)
    return best_rate(2 * n**3, lambda: torch.conv2d(x, w))


def image_folder(data: Path, tmp: str) -> Path:
    """ImageFolder wants one subfolder level: a folder holding a link to the images."""
    root = Path(tmp) / "imagefolder"
    root.mkdir()
    (root / "all").symlink_to(data.resolve(), target_is_directory=True)
    return root


def import_seconds(rounds: int = 3) -> float:
    """Wall seconds a fresh process takes to import torch and torch._dynamo (which torch.optim
    imports on first use): the fixed cost every PyTorch training process pays, ours and the
    example's alike. Median of `rounds`."""
    code = "import time; t = time.perf_counter(); import torch, torch._dynamo; print(time.perf_counter() - t)"
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], check=True, text=True,
                                                  capture_output=True).stdout) for _ in range(rounds))


def loadavg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=4, help="the example's epochs; ours trains as many images")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians are quoted)")
    ap.add_argument("--batches", default="64,32")
    ap.add_argument("--presets", default="classic,small-data")
    ap.add_argument("--precision", default="auto", help="ours; the example is fp32 (its only CPU path)")
    ap.add_argument("--compile", action="store_true", help="ours with --compile")
    ap.add_argument("--sizes", default="", help="also report these sizes (e.g. 128,160), ours only")
    ap.add_argument("--profile", action="store_true", help="instead: per-op profile of one training step")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads of every "
                    "process (0 = PyTorch's default); 1 keeps figures meaningful on a loaded machine")
    ap.add_argument("--steps", type=int, default=60, help="--nproc / --compare-precision: steps per run")
    ap.add_argument("--nproc", type=int, default=0,
                    help="instead: scaling of N torchrun processes against 1 at the same global batch")
    ap.add_argument("--preset", default="classic", help="--nproc / --compare-precision: the recipe")
    ap.add_argument("--compare-precision", action="store_true",
                    help="instead: train the same run in fp32 and bf16 and compare losses and samples")
    args = ap.parse_args()
    if args.threads:  # this process and the timed ones (theirs read OMP_NUM_THREADS)
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    data, label = dataset()
    n = len([p for p in data.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")])
    print(f"CPU: {cpu_description()}\ntorch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"data: {label}; load average {loadavg()}", flush=True)
    if args.profile:
        profile(args)
        return
    if args.nproc:
        scaling(data, args, ["--precision", args.precision, "--preset", args.preset, "--log-every", "10"])
        return
    if args.compare_precision:
        compare_precision(data, args)
        return

    presets, batches = args.presets.split(","), [int(b) for b in args.batches.split(",")]
    results: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = image_folder(data, tmp)
        for r in range(args.rounds):
            for batch in batches:
                steps = math.ceil(args.epochs * n / batch)
                line = [f"round {r + 1}, batch {batch}:"]
                for who in ["example", *presets]:
                    if who == "example":
                        res = run_example(root, args.epochs, batch, n)
                    else:
                        extra = ["--preset", who, "--precision", args.precision,
                                 *(["--compile"] * args.compile)]
                        res = run_ours(data, 64, steps, batch, extra)
                    results.setdefault((who, batch), []).append(res)
                    line.append(f"{who} {res['images']} images {res['wall']:.1f} s ({res['cpu']:.0f} CPU s)")
                print("  ".join(line) + f"  [load {loadavg()}]", flush=True)
    imports = import_seconds()
    print(f"\nours: {results[(presets[0], batches[0])][0]['compute']}")
    print(f"end to end, 64x64, whole processes, medians of {args.rounds} alternating rounds "
          f"(example: {args.epochs} epochs of {n} images):")
    for batch in batches:
        ex = results[("example", batch)]
        med = {k: statistics.median(e[k] for e in ex) for k in ("end_to_end", "wall", "cpu")}
        print(f"  batch {batch}: example {med['end_to_end']:.1f} images/s ({med['wall']:.1f} s, "
              f"{med['cpu']:.0f} CPU s)")
        for preset in presets:
            pairs = list(zip(results[(preset, batch)], ex, strict=True))
            ratios = [o["end_to_end"] / e["end_to_end"] for o, e in pairs]
            cpu_ratio = statistics.median(e["cpu"] / e["images"] / (o["cpu"] / o["images"]) for o, e in pairs)
            med = {k: statistics.median(o[k] for o, _ in pairs) for k in ("end_to_end", "wall", "steady")}
            print(f"    {preset}: {med['end_to_end']:.1f} images/s ({med['wall']:.1f} s, steady "
                  f"{med['steady']:.1f}) -> {statistics.median(ratios):.2f}x the example (rounds: "
                  f"{', '.join(f'{x:.2f}' for x in ratios)}); CPU seconds per image, example / ours: "
                  f"{cpu_ratio:.2f}",
                  flush=True)
            # What 1.5x leaves room for: the steps alone at the steady rate, plus the imports.
            budget = statistics.median(e["wall"] for e in ex) / 1.5
            steps_alone = statistics.median(o["images"] for o, _ in pairs) / med["steady"]
            floor = steps_alone + imports
            print(f"      1.5x needs <= {budget:.1f} s; steps alone {steps_alone:.1f} s + imports "
                  f"{imports:.1f} s = {floor:.1f} s, leaving {budget - floor:+.1f} s for data, models, "
                  "grids, checkpoints and exit", flush=True)

    blas, onednn = matmul_rate(torch.float32), onednn_gemm_rate()
    print(f"\n2048^3 fp32 GEMM: torch.matmul (BLAS) {blas / 1e9:.0f} GFLOP/s, oneDNN {onednn / 1e9:.0f} "
          f"GFLOP/s (best of 10, load {loadavg()})")
    for preset in presets:
        flops = step_flops(64, batches[0], "fp32", preset)
        steady = statistics.median(o["steady"] for o in results[(preset, batches[0])])
        rate = flops * steady / batches[0]
        print(f"  {preset}, batch {batches[0]}: {flops / 1e9:.0f} GFLOP per step -> {rate / 1e9:.0f} GFLOP/s "
              f"steady, {rate / blas:.0%} of the matmul rate, {rate / onednn:.0%} of oneDNN's", flush=True)
    for size in [int(x) for x in args.sizes.split(",") if x]:
        res = run_ours(data, size, 30, 64, ["--preset", presets[0], "--precision", args.precision])
        flops = step_flops(size, 64, "fp32", presets[0])
        rate = flops * float(res["steady"]) / 64
        print(f"  {size}x{size}: {res['end_to_end']:.1f} img/s end to end, {res['steady']:.1f} steady; "
              f"{flops / 1e9:.0f} GFLOP per step of 64 -> {rate / 1e9:.0f} GFLOP/s", flush=True)


GROUPS = (("convolution backward", ("convolution_backward",)),
          ("convolution forward", ("mkldnn_convolution", "_convolution", "convolution")),
          ("BatchNorm", ("batch_norm",)), ("activations", ("relu", "leaky", "threshold", "tanh", "sigmoid")),
          ("upsample", ("upsample",)),
          ("optimizer (Adam) + EMA", ("Optimizer", "lerp", "addcdiv", "addcmul", "sqrt", "foreach")),
          ("augmentation (gather, ...)", ("gather", "scatter", "index", "arange")))


def profile(args: argparse.Namespace) -> None:
    """Per-op self CPU time of one training step (averaged over 3) for each preset, grouped."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for preset in args.presets.split(","):
        batch = int(args.batches.split(",")[0])
        trainer = random_trainer(64, batch, args.precision, preset)
        for _ in range(3):
            trainer.train_step()  # type: ignore[attr-defined]
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                trainer.train_step()  # type: ignore[attr-defined]
        events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\n{preset}, 64x64, batch {batch}, {trainer.describe_compute()}: "  # type: ignore[attr-defined]
              f"{total / 3 / 1e3:.0f} ms of op time per step")
        grouped: dict[str, float] = {}
        for e in events:
            name = e.key.split("::")[-1]
            group = next((g for g, keys in GROUPS if any(k in name for k in keys)), "other")
            grouped[group] = grouped.get(group, 0.0) + e.self_cpu_time_total
        for group, us in sorted(grouped.items(), key=lambda kv: -kv[1]):
            print(f"  {group:32s} {us / total:6.1%}")
        print("  top ops:")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]:
            print(f"    {e.key:45s} {e.self_cpu_time_total / total:6.1%}  {e.count // 3:4d} calls/step")


def compare_precision(data: Path, args: argparse.Namespace) -> None:
    """Same seed, same steps, fp32 vs bf16: do the losses and the samples agree?"""
    from dcgan.analysis.quality import load_quality_set, pr_features, precision_recall, sliced_wasserstein

    real = load_quality_set(str(data), (64, 64)).images
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            out, fakes = Path(tmp) / precision, Path(tmp) / f"{precision}-fakes"
            t0 = time.perf_counter()
            gan = [sys.executable, str(REPO / "gancontrol.py")]
            flags = ["--resolution", "64", "--quiet", "--preset", args.preset, "--precision", precision,
                     "--log-every", "10"]
            subprocess.run([*gan, "training", str(data), str(args.steps), "64", str(out), *flags],
                           check=True, cwd=REPO, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
            subprocess.run([*gan, "generate", str(out), "256", str(fakes), "--quiet"], check=True, cwd=REPO,
                           stdout=subprocess.DEVNULL)
            stats = [json.loads(x) for x in (out / "stats.jsonl").read_text().splitlines()]
            tail = stats[len(stats) // 2:]
            loss_d, loss_g = (statistics.mean(s[k] for s in tail) for k in ("loss_d", "loss_g"))
            fake = load_quality_set(str(fakes), (64, 64)).images
            p, r = precision_recall(pr_features(real), pr_features(fake))
            swd = sliced_wasserstein(real, fake)["mean"]
            print(f"{precision}: {wall:.0f} s; second half mean loss_d {loss_d:.3f} loss_g {loss_g:.3f}; "
                  f"256 samples: SWD {swd:.1f} precision {p:.3f} recall {r:.3f}", flush=True)


def scaling(data: Path, args: argparse.Namespace, extra: list[str]) -> None:
    """Images/s of 1 and N processes (torchrun, gloo on CPU) at the same global batch, alternating."""
    one, many = [], []
    for r in range(args.rounds):
        one.append(run_ours(data, 64, args.steps, 64, extra, nproc=1)["steady"])
        many.append(run_ours(data, 64, args.steps, 64, extra, nproc=args.nproc)["steady"])
        print(f"round {r + 1}: 1 process {one[-1]:.1f} img/s, {args.nproc} processes {many[-1]:.1f} img/s",
              flush=True)
    a, b = statistics.median(one), statistics.median(many)
    print(f"64x64, global batch 64: 1 process {a:.1f} img/s, {args.nproc} processes {b:.1f} img/s -> "
          f"speed-up {b / a:.2f}x, scaling efficiency {b / a / args.nproc:.0%} (medians of {args.rounds})")


if __name__ == "__main__":
    main()
