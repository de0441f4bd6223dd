"""Every command of the three CLIs is registered and answers --help (issue: `python X.py --help` works)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import gancontrol
import img2dist
import isic_dataset

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    isic_dataset: ["download", "transform", "augment"],
    gancontrol: ["training", "resume", "generate"],
    img2dist: ["distance", "embedding", "quality", "turing", "turing-score", "utility"],
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
            "gp none, upsample resize, rgb-layer conv-noise, noise on, d-input image+fine, "
            "mode-seeking 0.6") in out
    assert "sngan-diffaug: arch sngan, loss hinge, diffaug color,translation,cutout" in out
    assert "classic: arch dcgan, loss bce, ema 0.0" in out  # 0.0 is a number, not "off"
    assert "[default: bce, or the preset's]" in out


HEAVY = ("torch", "torchvision", "sklearn", "scipy", "matplotlib", "piqa", "Augmentor", "requests")


@pytest.mark.parametrize("script", ["isic_dataset.py", "gancontrol.py", "img2dist.py"])
def test_help_and_argument_errors_import_nothing_heavy_and_answer_fast(script: str) -> None:
    # Every command's --help and a missing-argument error, in one fresh interpreter per script: none
    # may import torch and friends (seconds), which only the commands' bodies need.
    module = script.removesuffix(".py")
    by_name = {"isic_dataset": isic_dataset, "gancontrol": gancontrol, "img2dist": img2dist}
    commands = COMMANDS[by_name[module]]
    code = f"""
import sys, time
from click.testing import CliRunner
t0 = time.perf_counter()
import {module}
for argv in [["--help"]] + [[c, "--help"] for c in {commands!r}] + [[c] for c in {commands!r}]:
    r = CliRunner().invoke({module}.cli, argv)
    assert r.exit_code in (0, 2), (argv, r.output)
print(time.perf_counter() - t0)
print(",".join(m for m in {HEAVY!r} if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seconds, heavy = out.stdout.splitlines()
    assert heavy == ""
    assert float(seconds) < 5.0  # ~0.2 s alone; generous for a loaded CI machine (torch alone takes 3-15 s)


def test_help_as_a_user_runs_it_takes_under_a_second_of_cpu() -> None:
    # CPU time, not wall time, so that a busy test machine does not make this flaky.
    code = ("import resource, subprocess, sys; subprocess.run([sys.executable, 'gancontrol.py', 'training', "
            "'--help'], check=True, capture_output=True); "
            "r = resource.getrusage(resource.RUSAGE_CHILDREN); print(r.ru_utime + r.ru_stime)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert float(out.stdout) < 1.0, out


def test_swapped_positional_arguments_say_which_argument_goes_where() -> None:
    result = CliRunner().invoke(gancontrol.cli, ["training", "./data", "./runs/r1", "20000", "64"])
    assert result.exit_code == 2
    assert "Invalid value for 'STEPS': './runs/r1' is not a number of training steps" in result.output
    assert "training TRAINING_IMAGES STEPS BATCH_SIZE OUTPUT_DIR" in result.output
    assert "integer range" not in result.output
    result = CliRunner().invoke(gancontrol.cli, ["training", "./data", "100", "0", "out"])
    assert "Invalid value for 'BATCH_SIZE': '0' is not a batch size" in result.output


def test_choice_names_match_the_registries() -> None:
    from dcgan.architectures import ARCHITECTURES
    from dcgan.losses import GRADIENT_PENALTIES, LOSSES
    from dcgan.models import D_INPUTS, DOWNSAMPLING, RGB_LAYERS, UPSAMPLING
    from dcgan.names import (
        ARCH_NAMES,
        D_INPUT_NAMES,
        DOWNSAMPLING_NAMES,
        GRADIENT_PENALTY_NAMES,
        LOSS_NAMES,
        RGB_LAYER_NAMES,
        UPSAMPLING_NAMES,
    )

    assert list(LOSS_NAMES) == list(LOSSES)
    assert list(GRADIENT_PENALTY_NAMES) == list(GRADIENT_PENALTIES)
    assert list(UPSAMPLING_NAMES) == list(UPSAMPLING)
    assert list(DOWNSAMPLING_NAMES) == list(DOWNSAMPLING)
    assert list(RGB_LAYER_NAMES) == list(RGB_LAYERS)
    assert list(D_INPUT_NAMES) == list(D_INPUTS)
    assert list(ARCH_NAMES) == list(ARCHITECTURES)


@pytest.mark.parametrize("script", ["isic_dataset.py", "gancontrol.py", "img2dist.py"])
def test_a_python_without_the_set_up_gets_one_line_saying_how_to_set_up(script: str, tmp_path: Path) -> None:
    # A bare virtual environment of the same Python: no click, no torch, nothing installed.
    import venv

    venv.create(tmp_path / "bare", with_pip=False)
    out = subprocess.run([str(tmp_path / "bare" / "bin" / "python"), script, "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("Error: this Python"), out.stderr
    assert "make install" in out.stderr and "source .venv/bin/activate" in out.stderr


def test_a_command_whose_dependency_is_missing_gets_the_same_one_line(tmp_path: Path) -> None:
    # click is there but torch is not (sys.modules[name] = None makes `import torch` fail).
    code = ("import runpy, sys; sys.modules['torch'] = None; "
            f"sys.argv = ['gancontrol.py', 'generate', {str(tmp_path / 'm.pt')!r}, '2', "
            f"{str(tmp_path / 'g')!r}]; "
            "runpy.run_path('gancontrol.py', run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith("Error: this Python") and "lacks torch" in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1


def test_training_option_help_names_its_values_and_hides_no_none() -> None:
    """--loss lists the loss registry's names (not a module path to look up); an option without a
    default says what happens instead of "None = ... [default: None]"."""
    from dcgan.losses import LOSSES

    helps = {p.name: p.help or "" for p in gancontrol.training.params if isinstance(p, click.Option)}
    assert all(name in helps["loss"] for name in LOSSES) and "dcgan.losses" not in helps["loss"]
    assert "None" not in helps["resolution"] and "[default: the images' own size]" in helps["resolution"]
    assert [name for name, text in helps.items() if "default: None" in text] == []
