"""Every command of the three CLIs is registered and answers --help (issue: `python X.py --help` works)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import gancontrol
import img2dist
import isic_dataset

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    isic_dataset: ["download", "transform", "augment"],
    gancontrol: ["training", "resume", "generate"],
    img2dist: ["distance", "embedding", "quality", "turing", "turing-score"],
}


@pytest.mark.parametrize("module", list(COMMANDS), ids=lambda m: m.__name__)
def test_every_command_is_registered_and_has_help(module: object) -> None:
    group = module.cli  # type: ignore[attr-defined]
    assert sorted(group.commands) == sorted(COMMANDS[module])  # type: ignore[index]
    for name in COMMANDS[module]:  # type: ignore[index]
        result = CliRunner().invoke(group, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output and "Example" in result.output, name


def test_train_is_an_alias_of_training() -> None:
    result = CliRunner().invoke(gancontrol.cli, ["train", "--help"])
    assert result.exit_code == 0 and "TRAINING_IMAGES STEPS BATCH_SIZE OUTPUT_DIR" in result.output


@pytest.mark.parametrize("script", ["isic_dataset.py", "gancontrol.py", "img2dist.py"])
def test_top_level_help_as_a_user_runs_it(script: str) -> None:
    out = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "Usage:" in out.stdout, out.stderr


def test_training_help_spells_out_the_presets() -> None:
    # click wraps long lines, also after the hyphen of a name such as sngan-diffaug: undo both.
    output = CliRunner().invoke(gancontrol.cli, ["training", "--help"]).output
    out = " ".join(output.split()).replace("- ", "-")
    assert ("small-data: arch dcgan, loss bce, ema 0.95, diffaug translation, lr-g 0.0004, lr-d 0.0002, "
            "gp none, upsample resize") in out
    assert "sngan-diffaug: arch sngan, loss hinge, diffaug color,translation,cutout" in out
    assert "classic: arch dcgan, loss bce, ema 0.0" in out
    assert "[default: bce, or the preset's]" in out
