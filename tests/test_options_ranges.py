"""Every training option is range-checked before anything is created: one Error line, OUTPUT_DIR untouched."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from dcgan.options import TrainOptions
from gancontrol import cli, training
from tests.conftest import TRAINING_DATA

# One out-of-range (or unknown) value per option of `gancontrol.py training`.
BAD = {
    "steps": "0", "batch_size": "0", "resolution": "8", "z_dim": "0", "g_channels": "0", "d_channels": "0",
    "arch": "resnet", "upsample": "bilinear", "upsample_last": "nearest", "upsample_last_count": "0",
    "downsample": "max", "rgb_layer": "tanh",
    "d_input": "edges", "d_coarse": "3", "g_fine_layers": "9", "ada_target": "1", "ada_kimg": "0",
    "d_fine_layers": "-1",
    "mbstd": "-1", "mode_seeking": "-0.5", "loss": "nope", "gp": "nope", "gp_weight": "-1", "gp_every": "0",
    "label_smoothing": "0", "lr_g": "-1", "lr_d": "0", "beta1": "2", "beta2": "1", "d_steps": "0",
    "ema": "1", "seed": "-1", "log_every": "-1", "sample_every": "-1", "checkpoint_every": "-1",
    "device": "tpu", "precision": "fp8", "grid_size": "0", "max_memory_gb": "-1", "preset": "magic",
    "diffaug": "blur", "eval_every": "-1", "eval_images": "3",
}
# Values click lets through (its ranges compare, and NaN compares false): TrainOptions refuses them.
PAST_CLICK = {"lr_g": "nan", "beta1": "inf", "ema": "nan", "mbstd": "1", "gp_weight": "inf",
              "mode_seeking": "nan"}
FLAGS_WITHOUT_VALUE = {"grayscale", "keep_checkpoints", "channels_last", "conditional", "sync_bn", "compile",
                       "noise", "d_spectrum", "g_supersample", "noise_per_image", "sparse_noise",
                       "hair_noise"}


def _args(name: str, value: str, out: Path) -> list[str]:
    positional = {"steps": "2", "batch_size": "4"}
    if name in positional:
        positional[name] = value
        return ["training", str(TRAINING_DATA), positional["steps"], positional["batch_size"], str(out)]
    return ["training", str(TRAINING_DATA), "2", "4", str(out), "--" + name.replace("_", "-"), value]


def _check_refused(args: list[str], name: str, out: Path) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if "Error" in line]
    assert len(errors) == 1 and errors[0].startswith("Error:"), result.output
    flag = name.upper() if name in ("steps", "batch_size") else "--" + name.replace("_", "-")
    assert flag in errors[0], errors[0]
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing created: the corrected command is not refused as "not empty"


def test_the_table_covers_every_option() -> None:
    valued = {p.name for p in training.params if p.name not in ("config", "overwrite", "quiet")}
    assert valued - FLAGS_WITHOUT_VALUE - {"training_images", "output_dir"} == set(BAD)
    fields = {f.name for f in dataclasses.fields(TrainOptions)} - {"user_set"}
    assert fields - FLAGS_WITHOUT_VALUE - {"training_images", "output_dir"} == set(BAD)


@pytest.mark.parametrize("name", sorted(BAD))
def test_out_of_range_value_is_one_error_line(tmp_path: Path, name: str) -> None:
    _check_refused(_args(name, BAD[name], tmp_path / "out"), name, tmp_path / "out")


@pytest.mark.parametrize("name", sorted(PAST_CLICK))
def test_values_click_lets_through_are_refused_by_the_options(tmp_path: Path, name: str) -> None:
    _check_refused(_args(name, PAST_CLICK[name], tmp_path / "out"), name, tmp_path / "out")


@pytest.mark.parametrize(("extra", "says"), [
    (["--arch", "fastgan", "--preset", "few-shot"], "DCGAN family"),
    (["--preset", "few-shot"], "DCGAN family"),  # the preset picks fastgan after the options' own check
    (["--resolution", "32"], "32 px / 8 must be a whole size of at least 8 px"),
])
def test_d_coarse_where_it_cannot_be_is_one_error_line(tmp_path: Path, extra: list[str], says: str) -> None:
    out = tmp_path / "out"
    args = [*_args("d_coarse", "8", out), *extra]
    _check_refused(args, "d_coarse", out)
    assert says in CliRunner().invoke(cli, args).output


def test_d_coarse_too_large_for_the_images_size_is_one_error_line(tmp_path: Path) -> None:
    # Without --resolution the size comes from the images (here 32 px): checked once it is known.
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (40 * i, 90, 120)).save(images / f"{i}.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["training", str(images), "2", "4", str(out), "--d-coarse", "8"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == (
        "Error: --d-coarse 8: 32 px / 8 must be a whole size of at least 8 px")
    assert not (out / "checkpoint.pt").exists()


def test_fine_layers_without_a_full_size_rgb_layer_is_one_error_line(tmp_path: Path) -> None:
    # `classic` keeps the DCGAN paper's output (its last upsampling makes RGB): no full-size layer.
    out = tmp_path / "out"
    args = [*_args("g_fine_layers", "2", out), "--preset", "classic"]
    _check_refused(args, "g_fine_layers", out)
    assert "rgb-layer conv or conv-noise" in CliRunner().invoke(cli, args).output


def test_supersample_without_a_full_size_rgb_layer_is_one_error_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [*_args("steps", "2", out), "--preset", "classic", "--g-supersample"]
    _check_refused(args, "g_supersample", out)
    assert "rgb-layer conv or conv-noise" in CliRunner().invoke(cli, args).output


@pytest.mark.parametrize("flag", ["noise_per_image", "sparse_noise"])
def test_noise_flags_without_a_noise_input_are_one_error_line(tmp_path: Path, flag: str) -> None:
    # The classic preset's G has no noise input: the flag would change nothing, silently.
    out = tmp_path / "out"
    args = [*_args("steps", "2", out), "--preset", "classic", "--" + flag.replace("_", "-")]
    _check_refused(args, flag, out)
    assert "needs --noise or --rgb-layer conv-noise" in CliRunner().invoke(cli, args).output
    ok = tmp_path / "ok"
    args = [*_args("steps", "2", ok), "--preset", "classic", "--noise", "--" + flag.replace("_", "-")]
    assert CliRunner().invoke(cli, args).exit_code == 0


def test_hair_noise_without_a_full_size_noise_input_is_one_error_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [*_args("steps", "2", out), "--rgb-layer", "conv", "--hair-noise"]
    _check_refused(args, "hair_noise", out)
    assert "needs --rgb-layer conv-noise" in CliRunner().invoke(cli, args).output


def test_adaptive_augmentation_without_a_policy_is_one_error_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [*_args("ada_target", "0.6", out), "--diffaug", "none"]
    _check_refused(args, "ada_target", out)
    assert "needs a --diffaug policy" in CliRunner().invoke(cli, args).output


@pytest.mark.parametrize("line,key", [("lr-g: -1", "lr-g -1.0: must be > 0"), ("beta1: 2", "beta1 2"),
                                      ("grid_size: 0", "grid-size 0"), ("z-dim: 0", "z-dim 0"),
                                      ("eval-images: 2", "eval-images 2"), ("ema: .nan", "ema nan"),
                                      ("loss: ragen", "loss 'ragen': unknown, choose from bce,"),
                                      ("diffaug: color,blur", "diffaug: unknown augmentation(s) blur"),
                                      ("arch: resnet", "arch 'resnet'"), ("preset: magic", "preset 'magic'")])
def test_control_file_values_are_checked_and_name_the_file(tmp_path: Path, line: str, key: str) -> None:
    """A bad value from a control file is reported as the file's key, not as a flag never typed."""
    cfg = tmp_path / "control.yaml"
    cfg.write_text(line + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["training", str(TRAINING_DATA), "2", "4", str(out),
                                      "--config", str(cfg)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith(f"Error: {cfg}: {key}"), result.output
    assert not out.exists()


def test_a_flag_overriding_a_bad_control_file_value_is_named_as_the_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "control.yaml"
    cfg.write_text("loss: ragen\nlr-d: 0\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["training", str(TRAINING_DATA), "2", "4", str(out),
                                      "--config", str(cfg), "--loss", "hinge", "--lr-d", "nan"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: --lr-d nan: must be a finite"), result.output


def test_a_valid_edge_value_passes_the_checks() -> None:
    opts = TrainOptions(training_images=".", lr_g=1e12, beta1=0.0, ema=0.0, label_smoothing=1.0,
                        grid_size=1024, seed=2**32 - 1, mbstd=2, max_memory_gb=0.0)
    assert opts.validate() is opts  # no error, nothing changed
    with pytest.raises(Exception, match="--grid-size 1025: must be in \\[1, 1024\\]"):
        dataclasses.replace(opts, grid_size=1025).validate()
