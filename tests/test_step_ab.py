"""bench/step_ab.py (the A B A B step-time comparison behind docs/performance.md) keeps working."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

ENV = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}


def test_step_ab_times_both_recipes_in_alternating_rounds() -> None:
    proc = subprocess.run([sys.executable, "bench/step_ab.py", "--a", "d_coarse=0,upsample_last=same",
                           "--sizes", "80", "--batch", "2", "--steps", "1", "--rounds", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("machine: ") and "A {'d_coarse': 0, 'upsample_last': 'same'}" in lines[1]
    assert [line.split(":")[0] for line in lines[2:6]] == [
        "80 px round 1 A", "80 px round 1 B", "80 px round 2 A", "80 px round 2 B"]
    summary = lines[6]
    assert summary.startswith("80 px: A ") and float(summary.split("B/A ")[1].split("x")[0]) > 0


def test_step_ab_refuses_a_bad_recipe_in_one_line() -> None:
    proc = subprocess.run([sys.executable, "bench/step_ab.py", "--a", "d_coarse=x"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "d-coarse" in proc.stderr
