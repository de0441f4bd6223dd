"""dcgan.data.augment and `isic_dataset.py augment`: the Augmentor pipeline, seeds, names, layout, CLI."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest
from Augmentor.Operations import Flip, RotateRange, ZoomRandom
from click.testing import CliRunner
from PIL import Image

from dcgan.data.augment import AugmentOptions, augment_folder, build_pipeline
from dcgan.errors import UserError
from dcgan.images import AUGMENTED_MARKER
from isic_dataset import cli
from tests.conftest import make_image

NAME = re.compile(r"^(?P<stem>.+)_aug(?P<index>\d{5})\.(?P<ext>\w+)$")


def files(root: Path) -> list[str]:
    """Every file under `root` but augment's marker, as sorted relative POSIX paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.name != AUGMENTED_MARKER)


def sources(folder: Path, count: int = 3, size: tuple[int, int] = (24, 16)) -> Path:
    """`count` noise PNGs named s0.png, s1.png, ... in `folder`."""
    for i in range(count):
        make_image(folder / f"s{i}.png", size=size, seed=i)
    return folder


def test_default_pipeline_is_the_2018_tools() -> None:
    ops = build_pipeline(AugmentOptions()).operations
    assert [type(op) for op in ops] == [RotateRange, Flip, ZoomRandom, Flip]
    rotate, flip_lr, zoom, flip_tb = ops
    assert (rotate.probability, rotate.max_left_rotation, rotate.max_right_rotation) == (1.0, -5, 5)
    assert (flip_lr.probability, flip_lr.top_bottom_left_right) == (0.5, "LEFT_RIGHT")
    assert (zoom.probability, zoom.percentage_area, zoom.randomise) == (0.5, 0.8, False)
    assert (flip_tb.probability, flip_tb.top_bottom_left_right) == (0.5, "TOP_BOTTOM")


@pytest.mark.parametrize(("options", "left"), [
    (AugmentOptions(rotate=0), [Flip, ZoomRandom, Flip]),
    (AugmentOptions(rotate_prob=0), [Flip, ZoomRandom, Flip]),
    (AugmentOptions(flip_lr=0), [RotateRange, ZoomRandom, Flip]),
    (AugmentOptions(zoom_prob=0), [RotateRange, Flip, Flip]),
    (AugmentOptions(zoom_area=1), [RotateRange, Flip, Flip]),
    (AugmentOptions(flip_tb=0), [RotateRange, Flip, ZoomRandom]),
])
def test_zero_turns_an_operation_off(options: AugmentOptions, left: list[type]) -> None:
    assert [type(op) for op in build_pipeline(options).operations] == left


def test_changed_options_reach_augmentor() -> None:
    ops = build_pipeline(AugmentOptions(rotate=12, rotate_prob=0.3, flip_lr=0.7, zoom_prob=0.2,
                                        zoom_area=0.5, flip_tb=0.9)).operations
    assert [op.probability for op in ops] == [0.3, 0.7, 0.2, 0.9]
    assert (ops[0].max_right_rotation, ops[2].percentage_area) == (12, 0.5)


@pytest.mark.parametrize(("options", "message"), [
    (AugmentOptions(rotate=0, flip_lr=0, zoom_prob=0, flip_tb=0), "turned off"),
    (AugmentOptions(rotate=30), "rotate must be"),
    (AugmentOptions(flip_lr=1.5), "flip_lr must be"),
    (AugmentOptions(zoom_area=0.05), "zoom_area must be"),
])
def test_bad_options_are_user_errors(options: AugmentOptions, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_pipeline(options)


def test_writes_n_images_named_after_their_sources(tmp_path: Path) -> None:
    src = sources(tmp_path / "in")
    out = augment_folder(src, 7, seed=1)
    assert out == src / "output"
    names = files(out)
    assert len(names) == 7
    matches = [NAME.match(n) for n in names]
    assert all(matches)
    assert sorted(int(m["index"]) for m in matches) == list(range(7))
    assert {m["stem"] for m in matches} <= {"s0", "s1", "s2"} and {m["ext"] for m in matches} == {"png"}
    for name in names:
        img = Image.open(out / name)
        assert (img.size, img.mode) == ((24, 16), "RGB")  # Augmentor's operations keep the size


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    src = sources(tmp_path / "in")
    runs = {name: augment_folder(src, 8, output=tmp_path / name, seed=seed)
            for name, seed in [("a", 5), ("b", 5), ("c", 6)]}
    a, b, c = ({n: (runs[k] / n).read_bytes() for n in files(runs[k])} for k in "abc")
    assert a == b
    assert a != c


def test_seed_leaves_the_callers_random_streams_alone(tmp_path: Path) -> None:
    src = sources(tmp_path / "in", count=1)
    random.seed(99)
    np.random.seed(99)
    expected = (random.random(), np.random.random())
    random.seed(99)
    np.random.seed(99)
    augment_folder(src, 3, seed=1)
    assert (random.random(), np.random.random()) == expected


def test_flip_options_give_exact_mirrors(tmp_path: Path) -> None:
    src = sources(tmp_path / "in", count=1)
    original = np.asarray(Image.open(src / "s0.png"))
    off = {"rotate": 0, "zoom_prob": 0}
    lr = augment_folder(src, 1, output=tmp_path / "lr", options=AugmentOptions(flip_lr=1, flip_tb=0, **off))
    tb = augment_folder(src, 1, output=tmp_path / "tb", options=AugmentOptions(flip_lr=0, flip_tb=1, **off))
    assert np.array_equal(np.asarray(Image.open(lr / "s0_aug00000.png")), original[:, ::-1])
    assert np.array_equal(np.asarray(Image.open(tb / "s0_aug00000.png")), original[::-1])


def test_rotation_changes_pixels_but_not_size(tmp_path: Path) -> None:
    src = sources(tmp_path / "in", count=1, size=(40, 40))
    opts = AugmentOptions(rotate=25, flip_lr=0, flip_tb=0, zoom_prob=0)
    out = augment_folder(src, 6, output=tmp_path / "out", seed=3, options=opts)
    original = np.asarray(Image.open(src / "s0.png"))
    rotated = [np.asarray(Image.open(out / n)) for n in files(out)]
    assert all(r.shape == original.shape for r in rotated)
    assert sum(not np.array_equal(r, original) for r in rotated) >= 5  # only a 0-degree draw is unchanged


def test_previous_outputs_are_not_sources_and_numbering_continues(tmp_path: Path) -> None:
    src = sources(tmp_path / "in")
    augment_folder(src, 4, seed=1)
    augment_folder(src, 4, seed=2)
    names = files(src / "output")
    assert len(names) == 8
    matches = [NAME.match(n) for n in names]
    assert sorted(int(m["index"]) for m in matches) == list(range(8))
    assert all("_aug" not in m["stem"] for m in matches)  # never an augmented augmented image


def test_custom_output_inside_input_is_not_a_source(tmp_path: Path) -> None:
    src = sources(tmp_path / "in", count=1)
    augment_folder(src, 2, output=src / "more", seed=1)
    augment_folder(src, 2, output=src / "more", seed=1)
    assert [NAME.match(n)["stem"] for n in files(src / "more")] == ["s0"] * 4


def test_class_folders_are_mirrored(tmp_path: Path) -> None:
    make_image(tmp_path / "in" / "benign" / "b.jpg", size=(20, 20))
    make_image(tmp_path / "in" / "malignant" / "m.png", size=(20, 20))
    out = augment_folder(tmp_path / "in", 12, output=tmp_path / "out", seed=4)
    names = files(out)
    assert len(names) == 12
    for name in names:
        folder, file = name.split("/")
        assert NAME.match(file)["stem"] == {"benign": "b", "malignant": "m"}[folder]
        assert file.endswith({"benign": ".jpg", "malignant": ".png"}[folder])
    assert {n.split("/")[0] for n in names} == {"benign", "malignant"}


def test_grayscale_sources_stay_grayscale(tmp_path: Path) -> None:
    make_image(tmp_path / "in" / "g.png", size=(16, 16), mode="L")
    out = augment_folder(tmp_path / "in", 2, seed=1)
    assert {Image.open(out / n).mode for n in files(out)} == {"L"}


def test_unreadable_sources_are_reported_and_left_out(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    src = sources(tmp_path / "in", count=1)
    (src / "broken.png").write_text("not a png")
    (src / "empty.jpg").write_bytes(b"")
    out = augment_folder(src, 10, seed=0)
    assert [NAME.match(n)["stem"] for n in files(out)] == ["s0"] * 10
    err = capsys.readouterr().err
    assert "broken.png" in err and "empty.jpg" in err


def test_only_unreadable_sources_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.png").write_text("not a png")
    with pytest.raises(UserError, match="no readable images"):
        augment_folder(tmp_path / "in", 3, seed=0)


def test_empty_folder_is_a_user_error(tmp_path: Path) -> None:
    make_image(tmp_path / "in" / "output" / "old_aug00000.png")  # only a previous run's output
    with pytest.raises(UserError, match="no images found in"):
        augment_folder(tmp_path / "in", 3)


def test_bad_seed_is_a_user_error(tmp_path: Path) -> None:
    src = sources(tmp_path / "in", count=1)
    with pytest.raises(UserError, match="seed must be"):
        augment_folder(src, 1, seed=-1)


def test_cli_augment(tmp_path: Path) -> None:
    src = sources(tmp_path / "in")
    args = ["augment", str(src), "5", "--output", str(tmp_path / "out"), "--seed", "3"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert f"augmented 5 images -> {tmp_path / 'out'}" in first.stdout
    names = files(tmp_path / "out")
    assert len(names) == 5 and all(NAME.match(n) for n in names)
    again = CliRunner().invoke(cli, [*args[:3], "--output", str(tmp_path / "again"), "--seed", "3"])
    assert again.exit_code == 0, again.output
    assert all((tmp_path / "out" / n).read_bytes() == (tmp_path / "again" / n).read_bytes() for n in names)


def test_cli_augment_options_and_default_output(tmp_path: Path) -> None:
    src = sources(tmp_path / "in", count=1)
    result = CliRunner().invoke(cli, ["augment", str(src), "2", "--rotate", "0", "--zoom-prob", "0",
                                      "--flip-tb", "0", "--flip-lr", "1"])
    assert result.exit_code == 0, result.output
    original = np.asarray(Image.open(src / "s0.png"))
    for name in files(src / "output"):
        assert np.array_equal(np.asarray(Image.open(src / "output" / name)), original[:, ::-1])


def test_cli_augment_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    empty = CliRunner().invoke(cli, ["augment", str(tmp_path / "in"), "3"])
    assert empty.exit_code == 1 and "no images found in" in empty.output
    make_image(tmp_path / "in" / "a.png")
    off = CliRunner().invoke(cli, ["augment", str(tmp_path / "in"), "3", "--rotate", "0", "--zoom-prob", "0",
                                   "--flip-tb", "0", "--flip-lr", "0"])
    assert off.exit_code == 1 and "turned off" in off.output and "Traceback" not in off.output
