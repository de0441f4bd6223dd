"""A run's settings are settled once (RunSpec) and the options the user gave are kept apart, unchanged."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dcgan.errors import UserError
from dcgan.options import PRESETS, SMALL_DATA_LIMIT, TrainOptions, merge_options, option_help
from dcgan.spec import RunSpec, fill_automatic, settle


def asked(**values: object) -> TrainOptions:
    return merge_options(TrainOptions(), {}, {"training_images": "data", "steps": 2000, "batch_size": 8,
                                              "output_dir": "out", **values})


def test_settle_fills_a_copy_and_leaves_what_was_asked_alone() -> None:
    mine = asked(lr_d=4e-4, log_every=7)
    spec = settle(mine, 398, 64, 3, ["benign", "malignant"])
    # what the user asked: the preset unresolved, the automatic values still 0, no resolution
    assert (mine.preset, mine.ema, mine.sample_every, mine.resolution, mine.training_images) == (
        "auto", 0.999, 0, None, "data")
    assert spec.asked is mine
    o = spec.options
    assert (o.preset, o.ema, o.lr_g, o.lr_d, o.upsample) == ("small-data", 0.95, 4e-4, 4e-4, "resize")
    assert (o.log_every, o.sample_every, o.checkpoint_every) == (7, 100, 200)
    assert (spec.resolution, spec.channels, spec.class_names, spec.num_classes) == (64, 3, (), 0)
    assert o.training_images == str(Path("data").resolve())
    conditional = settle(asked(conditional=True), 398, 64, 1, ["benign", "malignant"])
    assert (conditional.class_names, conditional.num_classes, conditional.channels) == (
        ("benign", "malignant"), 2, 1)
    assert settle(mine, SMALL_DATA_LIMIT, 64, 3, [""]).options.preset == "classic"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.options.steps = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        mine.ema = 0.5  # type: ignore[misc]


def test_every_preset_gives_valid_options() -> None:
    # validate() runs on what the user asked; the preset's values must pass it as well
    for name in PRESETS:
        spec = settle(asked(preset=name), 100, 32, 3, [""])
        assert spec.options.validate() is spec.options, name


def test_automatic_values_follow_steps() -> None:
    filled = fill_automatic(asked(steps=150))
    assert (filled.log_every, filled.sample_every, filled.checkpoint_every) == (7, 10, 15)
    assert fill_automatic(filled) == filled  # a settled spec has nothing left to fill


def test_the_ema_help_says_what_the_automatic_presets_give() -> None:
    text = option_help()["ema"]
    assert f"{PRESETS['small-data']['ema']} with small-data" in text
    assert PRESETS["classic"]["ema"] == 0 and "0 (off) with classic" in text
    assert PRESETS["sngan-diffaug"]["ema"] == TrainOptions.ema
    assert f"{TrainOptions.ema} with sngan-diffaug or none" in text


def test_options_json_and_checkpoint_fields_round_trip(tmp_path: Path) -> None:
    spec = settle(asked(conditional=True, grayscale=True), 100, 32, 1, ["a", "b"])
    spec.save(tmp_path / "options.json")
    saved = json.loads((tmp_path / "options.json").read_text())
    # the settled options at the top level, as options.json always had them, and the request apart
    assert (saved["preset"], saved["resolution"], saved["channels"], saved["class_names"]) == (
        "small-data", 32, 1, ["a", "b"])
    assert (saved["asked"]["preset"], saved["asked"]["resolution"]) == ("auto", None)
    assert RunSpec.load(tmp_path) == spec
    assert RunSpec.from_checkpoint(spec.checkpoint_fields()) == spec
    moved = spec.continued(tmp_path / "elsewhere", 4000)
    assert (moved.options.output_dir, moved.options.steps, moved.asked) == (
        str(tmp_path / "elsewhere"), 4000, spec.asked)
    assert spec.continued(tmp_path).options.steps == spec.options.steps


def test_options_json_and_checkpoints_of_earlier_versions_load(tmp_path: Path) -> None:
    # Before the spec, options.json held the settled options alone, with a `channels` option, and
    # checkpoints had `channels` among their options and no `asked`.
    spec = settle(asked(conditional=True), 100, 32, 3, ["a", "b"])
    old = {**spec.options.to_dict(), "channels": 3}
    (tmp_path / "options.json").write_text(json.dumps(old))
    assert RunSpec.load(tmp_path) == dataclasses.replace(spec, class_names=(), asked=None)
    ckpt = {"options": old, "resolution": 32, "channels": 3, "class_names": ["a", "b"]}
    assert RunSpec.from_checkpoint(ckpt) == dataclasses.replace(spec, asked=None)
    # a control file that still names `channels` is not refused either (it follows --grayscale)
    assert TrainOptions.from_dict({"channels": 1, "grayscale": True}).grayscale


def test_damaged_saved_specs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a training run folder"):
        RunSpec.load(tmp_path)
    (tmp_path / "options.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="unreadable"):
        RunSpec.load(tmp_path)
    spec = settle(asked(conditional=True), 100, 32, 3, ["a", "b"])
    fields = spec.checkpoint_fields()
    with pytest.raises(UserError, match="class names"):
        RunSpec.from_checkpoint({**fields, "class_names": None})
    with pytest.raises(UserError, match="asked"):
        RunSpec.from_checkpoint({**fields, "asked": [1]})
