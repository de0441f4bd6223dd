"""bench/gpu_check.py stays working between the days a GPU is lent: its CPU smoke test."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_gpu_check_tiny_runs_every_combination_on_the_cpu() -> None:
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--tiny"], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("machine: ") and "torch " in lines[0]
    rows = [line.split() for line in lines[3:]]
    wanted = [(a, s, p) for a in ("dcgan", "fastgan") for s in ("32", "64") for p in ("bf16", "fp32")]
    assert [(r[0], r[1], r[2]) for r in rows] == wanted
    assert all(float(r[4]) > 0 and float(r[5]) > 0 and float(r[6]) > 0 for r in rows)  # images/s, ms, peak


def test_gpu_check_without_a_gpu_says_what_to_run() -> None:
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--sizes", "64"], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2 and "--cpu" in proc.stderr and "--tiny" in proc.stderr
