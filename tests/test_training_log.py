"""What log.txt says about a run: a conditional run's classes and counts, the compute in plain words."""

from __future__ import annotations

from pathlib import Path

import torch
from click.testing import CliRunner

from gancontrol import cli
from tests.conftest import make_image

TINY = ["--resolution", "16", "--z-dim", "8", "--g-channels", "8", "--d-channels", "8", "--quiet",
        "--preset", "none", "--precision", "fp32"]


def test_a_conditional_run_logs_its_classes_and_counts_and_one_thread_reads_right(tmp_path: Path) -> None:
    for i in range(5):
        make_image(tmp_path / "data" / "benign" / f"b{i}.png", size=(16, 16), seed=i)
    for i in range(2):
        make_image(tmp_path / "data" / "malignant" / f"m{i}.png", size=(16, 16), seed=10 + i)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(cli, ["training", str(tmp_path / "data"), "1", "4", str(tmp_path / "run"),
                                          *TINY, "--conditional"])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "class-conditional: 2 classes, images per class: benign 5, malignant 2" in log
    compute = next(line for line in log.splitlines() if "compute: " in line)
    assert compute.endswith(", 1 CPU thread"), compute
    result = CliRunner().invoke(cli, ["training", str(tmp_path / "data"), "1", "4", str(tmp_path / "plain"),
                                      *TINY])
    assert result.exit_code == 0, result.output
    assert "class-conditional" not in (tmp_path / "plain" / "log.txt").read_text()
