"""bench/g_lattice.py: spectral lines read out of G's layers (the source of a lattice in the fakes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner

from gancontrol import cli
from tests.conftest import REPO, TRAINING_DATA

sys.path.insert(0, str(REPO / "bench"))
import g_lattice

TINY = ["--resolution", "32", "--z-dim", "8", "--g-channels", "8", "--d-channels", "8", "--quiet",
        "--preset", "small-data"]


def test_a_checkerboard_stands_out_and_noise_does_not() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    noise = torch.from_numpy(rng.normal(size=(16, 4, 32, 32)))
    board = torch.from_numpy(((-1.0) ** (yy + xx))[None, None] * 0.5)
    lattice = torch.from_numpy(np.cos(np.pi / 2 * (yy + xx))[None, None] * 0.5)  # period 4 on the diagonal
    plain = g_lattice.map_power(noise)
    marked = g_lattice.map_power(noise + board + lattice)
    for fy, fx in g_lattice.GRID:
        assert 0.2 < g_lattice.line_strength(plain, fy, fx) < 5
    assert g_lattice.line_strength(marked, 0.5, 0.5) > 50
    assert g_lattice.line_strength(marked, 0.25, 0.25) > 20
    assert g_lattice.line_strength(marked, 0.25, 0.0) < 5  # only where the pattern is
    assert g_lattice.line_strength(marked, 0.25, -0.25) < 5  # not on the other diagonal


def test_every_layer_of_a_trained_g_gets_a_row(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["training", str(TRAINING_DATA), "2", "8", str(run), *TINY])
    assert result.exit_code == 0, result.output
    rows = g_lattice.layer_lines(run, n=8, min_size=8)
    assert [r["size"] for r in rows] == sorted(r["size"] for r in rows)  # input to output
    assert rows[-1]["kind"] == "Tanh" and rows[-1]["size"] == 32
    assert {r["size"] for r in rows} == {8, 16, 32}
    assert all(np.isfinite(v) and v > 0 for r in rows for v in r["lines"].values())
    proc = subprocess.run([sys.executable, "bench/g_lattice.py", str(run), "--n", "4", "--min-size", "32"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{run}: line strength") and "(0.25,0.25)" in lines[1]
    assert lines[-1].split()[1:3] == ["Tanh", "32"] and len(lines[-1].split()) == 3 + len(g_lattice.GRID)
