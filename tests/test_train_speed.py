"""Issue 18's speed work: what log.txt says about the compute, the periodic work's intervals, and the
reference script of bench/train_speed.py (pytorch/examples' DCGAN) running on a folder."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dcgan.options import TrainOptions
from dcgan.spec import fill_automatic
from dcgan.training.trainer import cpu_supports_bf16
from gancontrol import cli
from tests.conftest import REPO, TRAINING_DATA, make_image

TINY = ["--resolution", "32", "--z-dim", "16", "--g-channels", "8", "--d-channels", "8", "--quiet"]


def test_log_names_precision_compile_and_threads(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["training", str(TRAINING_DATA), "3", "8", str(tmp_path / "run"), *TINY,
                                      "--precision", "fp32", "--preset", "small-data"])
    assert result.exit_code == 0, result.output
    line = next(x for x in (tmp_path / "run" / "log.txt").read_text().splitlines() if "compute: " in x)
    has = "has native bf16" if cpu_supports_bf16() else "has no native bf16"
    assert f"compute: fp32 (--precision fp32; this CPU {has}), not compiled, channels_last, " in line
    assert re.search(r" \d+ CPU threads?$", line), line  # "1 CPU thread" on one core (OMP_NUM_THREADS=1)


@pytest.mark.parametrize(("steps", "sample_every", "checkpoint_every"),
                         [(4, 4, 4), (25, 10, 10), (150, 10, 15), (2000, 100, 200)])
def test_auto_grids_and_checkpoints_are_at_least_10_steps_apart(steps: int, sample_every: int,
                                                                checkpoint_every: int) -> None:
    asked = TrainOptions(training_images=".", steps=steps, output_dir="out")
    opts = fill_automatic(asked)
    assert (opts.sample_every, opts.checkpoint_every) == (sample_every, checkpoint_every)
    assert (asked.sample_every, asked.checkpoint_every) == (0, 0)  # what the user asked is kept apart
    explicit = fill_automatic(TrainOptions(training_images=".", steps=25, output_dir="out", sample_every=1))
    assert explicit.sample_every == 1  # a value the user set is kept


def test_a_short_run_makes_few_grids_and_still_plots_at_the_end(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["training", str(TRAINING_DATA), "12", "4", str(tmp_path / "run"), *TINY,
                                      "--preset", "classic"])
    assert result.exit_code == 0, result.output
    grids = sorted(p.name for p in (tmp_path / "run" / "samples").iterdir())
    assert grids == ["step_0000000.png", "step_0000010.png", "step_0000012.png"]
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 0


def test_reference_example_trains_on_an_image_folder(tmp_path: Path) -> None:
    """bench/example_dcgan.py (the speed reference) runs the example's loop and writes its files."""
    for i in range(6):
        make_image(tmp_path / "data" / "all" / f"{i}.jpg", size=(80, 70), seed=i)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "example_dcgan.py"), "--dataroot",
                           str(tmp_path / "data"), "--niter", "2", "--batchSize", "4", "--imageSize", "64",
                           "--ngf", "4", "--ndf", "4", "--nz", "8", "--workers", "0", "--outf", str(out),
                           "--manualSeed", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Loss_D:") == 4  # 6 images in batches of 4: 2 batches, 2 epochs
    assert sorted(p.name for p in out.iterdir()) == [
        "fake_samples_epoch_000.png", "fake_samples_epoch_001.png", "netD_epoch_0.pth", "netD_epoch_1.pth",
        "netG_epoch_0.pth", "netG_epoch_1.pth", "real_samples.png"]
