#!/usr/bin/env python3
"""Training throughput of `gancontrol.py training` on this machine, end to end.

Run from the repository root:  .venv/bin/python bench/train_speed.py [--steps 100] [--rounds 2]

For the reference DCGAN recipe (64x64, batch 64, z 100, 64 channels, bce) it times the real CLI
in a subprocess (image decoding, logging, sample grids and the final checkpoint included) and,
alternating with it (A B A B, since this machine's speed drifts), a loop written the way the
pytorch/examples DCGAN (dcgan/main.py) trains: a DataLoader decoding JPEGs every epoch, fp32,
D's real and fake halves backpropagated separately, gradients for D's weights in the G step and a
host sync for the printed losses every step. It also reports 128 and 160 px, the FLOPs of one step
(torch.utils.flop_counter) and the FLOP rate achieved against a large matmul's in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED_64 = REPO.parent / "shared" / "data" / "isic" / "all-64"


def dataset() -> tuple[Path, str]:
    if SHARED_64.is_dir():
        return SHARED_64, "../shared/data/isic/all-64 (398 images)"
    return REPO / "training_data", "training_data/ (54 images, resized on load)"


def run_ours(data: Path, size: int, steps: int, batch: int, extra: list[str],
             nproc: int = 0) -> dict[str, float]:
    """Time `gancontrol.py training` end to end; steady rate from stats.jsonl after warm-up.

    nproc > 0 launches it with torchrun (that many processes, the CPU threads shared among them).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, str(REPO / "gancontrol.py"), "training", str(data), str(steps), str(batch),
               str(out), "--resolution", str(size), "--quiet", "--log-every", "10",
               "--sample-every", "50", *extra]
        env = dict(os.environ)
        if nproc:
            cmd[1:2] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                        "--local-addr=127.0.0.1", str(REPO / "gancontrol.py")]
            env.update(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // nproc)))
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        stats = [json.loads(x) for x in (out / "stats.jsonl").read_text().splitlines()]
    steady = stats[1:] or stats
    steady_sec = statistics.mean(s["sec_per_step"] for s in steady)
    return {"end_to_end": steps * batch / wall, "steady": batch / steady_sec, "wall": wall}


def run_reference(data: Path, steps: int, batch: int = 64, nz: int = 100) -> dict[str, float]:
    """A training loop in the style of pytorch/examples dcgan/main.py, timed end to end."""
    t0 = time.perf_counter()
    import torchvision.transforms as T
    from PIL import Image
    from torch import nn
    from torchvision.utils import save_image

    from dcgan.models import Discriminator, Generator

    class Folder(torch.utils.data.Dataset):
        def __init__(self, root: Path):
            self.paths = sorted(root.glob("*.jpg"))
            self.tf = T.Compose([T.Resize(64), T.CenterCrop(64), T.ToTensor(),
                                 T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])

        def __len__(self) -> int:
            return len(self.paths)

        def __getitem__(self, i: int) -> torch.Tensor:
            return self.tf(Image.open(self.paths[i]).convert("RGB"))

    loader = torch.utils.data.DataLoader(Folder(data), batch_size=batch, shuffle=True, num_workers=2)
    netG, netD = Generator(64, nz, 64, 3), Discriminator(64, 64, 3)
    criterion = nn.BCEWithLogitsLoss()
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    fixed = torch.randn(batch, nz)
    done = 0
    with tempfile.TemporaryDirectory() as tmp:
        while done < steps:
            for real in loader:
                netD.zero_grad()
                b = real.shape[0]
                err_real = criterion(netD(real), torch.ones(b))
                err_real.backward()
                fake = netG(torch.randn(b, nz))
                err_fake = criterion(netD(fake.detach()), torch.zeros(b))
                err_fake.backward()
                optD.step()
                netG.zero_grad()
                err_g = criterion(netD(fake), torch.ones(b))
                err_g.backward()
                optG.step()
                _ = (err_real + err_fake).item(), err_g.item()  # the example prints every step
                if done % 100 == 0:
                    with torch.no_grad():
                        save_image(netG(fixed) * 0.5 + 0.5, f"{tmp}/fake.png")
                done += 1
                if done == steps:
                    break
            torch.save(netG.state_dict(), f"{tmp}/netG.pth")
    wall = time.perf_counter() - t0
    return {"end_to_end": steps * batch / wall, "wall": wall}


def step_flops(size: int, batch: int, precision: str) -> float:
    """FLOPs of one training cycle of our loop at `size` (counted, not estimated)."""
    from torch.utils.flop_counter import FlopCounterMode

    from dcgan.options import TrainOptions
    from dcgan.training.dataset import ImageSet
    from dcgan.training.trainer import build_trainer

    pixels = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    data = ImageSet([Path("x")] * batch, size, 3, pixels, [""], torch.zeros(batch, dtype=torch.int64))
    opts = TrainOptions(training_images=".", steps=10, batch_size=batch, output_dir=".", resolution=size,
                        precision=precision, device="cpu").resolve()
    trainer = build_trainer(opts, data)
    trainer.train_step()
    with FlopCounterMode(display=False) as counter:
        trainer.train_step()
    return float(counter.get_total_flops())


def matmul_rate(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2, help="A B rounds at 64 px")
    ap.add_argument("--sizes", default="64,128,160")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--nproc", type=int, default=0,
                    help="instead: scaling of N torchrun processes against 1 at the same global batch")
    ap.add_argument("--preset", default="classic", help="the reference recipe is the classic one")
    ap.add_argument("--compare-precision", action="store_true",
                    help="instead: train the same run in fp32 and bf16 and compare losses and samples")
    args = ap.parse_args()
    data, label = dataset()
    print(f"data: {label}; {os.cpu_count()} CPUs; torch {torch.__version__}; {args.steps} steps per run")
    extra = ["--precision", args.precision, "--preset", args.preset]
    if args.nproc:
        scaling(data, args, extra)
        return
    if args.compare_precision:
        compare_precision(data, args)
        return

    ours, ref = [], []
    for r in range(args.rounds):
        ours.append(run_ours(data, 64, args.steps, 64, extra))
        ref.append(run_reference(data, args.steps))
        o = ours[-1]
        print(f"round {r + 1}: ours {o['end_to_end']:.1f} img/s end to end ({o['steady']:.1f} steady), "
              f"reference-style {ref[-1]['end_to_end']:.1f} img/s", flush=True)
    med_ours = statistics.median(o["end_to_end"] for o in ours)
    med_steady = statistics.median(o["steady"] for o in ours)
    med_ref = statistics.median(o["end_to_end"] for o in ref)
    print(f"\n64x64 batch 64: ours {med_ours:.1f} img/s end to end (steady {med_steady:.1f}), "
          f"reference-style loop {med_ref:.1f} img/s -> {med_ours / med_ref:.2f}x (medians of {args.rounds})")

    fp32_rate, bf16_rate = matmul_rate(torch.float32), matmul_rate(torch.bfloat16)
    print(f"2048^2 matmul: fp32 {fp32_rate / 1e9:.0f} GFLOP/s, bf16 {bf16_rate / 1e9:.0f} GFLOP/s")
    for size in [int(s) for s in args.sizes.split(",")]:
        res = ours[0] if size == 64 else run_ours(data, size, max(20, args.steps // 2), 64, extra)
        flops = step_flops(size, 64, args.precision)
        achieved = flops * res["steady"] / 64
        print(f"{size}x{size}: {res['end_to_end']:.1f} img/s end to end, {res['steady']:.1f} steady; "
              f"{flops / 1e9:.0f} GFLOP per step of 64 -> {achieved / 1e9:.0f} GFLOP/s "
              f"({achieved / fp32_rate:.0%} of fp32 matmul, {achieved / bf16_rate:.0%} of bf16 matmul)",
              flush=True)


def compare_precision(data: Path, args: argparse.Namespace) -> None:
    """Same seed, same steps, fp32 vs bf16: do the losses and the samples agree?"""
    from dcgan.analysis.quality import load_image_set, pr_features, precision_recall, sliced_wasserstein

    real = load_image_set(str(data), (64, 64)).images
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
            fake = load_image_set(str(fakes), (64, 64)).images
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
