"""dcgan.data.transform and `isic_dataset.py transform`: crop, resize, modes, layout, bad files, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import dcgan.images
from dcgan.data.transform import transform_folder
from dcgan.errors import UserError
from isic_dataset import cli
from tests.conftest import make_image


def thirds_image(path: Path) -> Path:
    """A 300x100 image: left third red, middle green, right third blue."""
    arr = np.zeros((100, 300, 3), np.uint8)
    arr[:, :100] = (255, 0, 0)
    arr[:, 100:200] = (0, 255, 0)
    arr[:, 200:] = (0, 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def files(root: Path) -> list[str]:
    """Every file under `root`, as sorted relative POSIX paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_center_crop_keeps_only_the_middle(tmp_path: Path) -> None:
    thirds_image(tmp_path / "in" / "t.png")
    summary = transform_folder(tmp_path / "in", tmp_path / "out", 12, 12, workers=1, progress=False)
    assert (summary.written, summary.skipped) == (1, [])
    arr = np.asarray(Image.open(tmp_path / "out" / "t.png"))
    assert arr.shape == (12, 12, 3)
    assert (arr == (0, 255, 0)).all()  # no red or blue leaks in from the cropped-off thirds


@pytest.mark.parametrize(("src_size", "x", "y"), [((300, 100), 16, 16), ((100, 300), 16, 8),
                                                   ((40, 30), 40, 30), ((33, 77), 20, 5)])
def test_output_has_the_requested_size(tmp_path: Path, src_size: tuple[int, int], x: int, y: int) -> None:
    make_image(tmp_path / "in" / "a.png", size=src_size)
    transform_folder(tmp_path / "in", tmp_path / "out", x, y, workers=1, progress=False)
    assert Image.open(tmp_path / "out" / "a.png").size == (x, y)


def test_wide_target_crops_rows(tmp_path: Path) -> None:
    # 60x60: top 20 rows red, middle 20 green, bottom 20 blue; a 3:1 box keeps the green band.
    arr = np.zeros((60, 60, 3), np.uint8)
    arr[:20], arr[20:40], arr[40:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    (tmp_path / "in").mkdir()
    Image.fromarray(arr).save(tmp_path / "in" / "b.png")
    transform_folder(tmp_path / "in", tmp_path / "out", 9, 3, workers=1, progress=False)
    assert (np.asarray(Image.open(tmp_path / "out" / "b.png")) == (0, 255, 0)).all()


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16"])
def test_any_mode_becomes_rgb_or_gray(tmp_path: Path, mode: str) -> None:
    src = Image.new("RGB", (20, 10), (200, 100, 50))
    name = "x.tif" if mode in ("CMYK", "I;16") else "x.png"
    (tmp_path / "in").mkdir()
    (src.convert("L").convert(mode) if mode == "I;16" else src.convert(mode)).save(tmp_path / "in" / name)
    transform_folder(tmp_path / "in", tmp_path / "rgb", 8, 8, workers=1, progress=False)
    transform_folder(tmp_path / "in", tmp_path / "gray", 8, 8, grayscale=True, workers=1, progress=False)
    rgb, gray = Image.open(tmp_path / "rgb" / name), Image.open(tmp_path / "gray" / name)
    assert (rgb.mode, rgb.size) == ("RGB", (8, 8))
    assert (gray.mode, gray.size) == ("L", (8, 8))


def test_rgba_transparency_becomes_black(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    Image.new("RGBA", (10, 10), (255, 255, 255, 0)).save(tmp_path / "in" / "clear.png")
    transform_folder(tmp_path / "in", tmp_path / "out", 4, 4, workers=1, progress=False)
    assert (np.asarray(Image.open(tmp_path / "out" / "clear.png")) == 0).all()


def test_exif_orientation_is_applied_before_cropping(tmp_path: Path) -> None:
    # Stored 40x20 with a red left half and a blue right half; orientation 6 displays it rotated
    # 90 degrees clockwise: 20x40, red on top, blue below.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20], arr[:, 20:] = (255, 0, 0), (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "in").mkdir()
    Image.fromarray(arr).save(tmp_path / "in" / "r.png", exif=exif.tobytes())
    transform_folder(tmp_path / "in", tmp_path / "out", 10, 20, workers=1, progress=False)
    out = Image.open(tmp_path / "out" / "r.png")
    assert out.size == (10, 20)
    assert out.getpixel((5, 2)) == (255, 0, 0)
    assert out.getpixel((5, 17)) == (0, 0, 255)
    assert 0x0112 not in out.getexif()  # not rotated a second time by a viewer


def test_recursive_mirrors_class_folders_and_flat_reads_top_level_only(tmp_path: Path) -> None:
    make_image(tmp_path / "in" / "top.png")
    make_image(tmp_path / "in" / "benign" / "b1.jpg")
    make_image(tmp_path / "in" / "malignant" / "deep" / "m1.png")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    flat = transform_folder(tmp_path / "in", tmp_path / "flat", 8, 8, workers=1, progress=False)
    assert flat.written == 1 and files(tmp_path / "flat") == ["top.png"]
    rec = transform_folder(tmp_path / "in", tmp_path / "rec", 8, 8, recursive=True, workers=1, progress=False)
    assert rec.written == 3
    assert files(tmp_path / "rec") == ["benign/b1.jpg", "malignant/deep/m1.png", "top.png"]


@pytest.mark.parametrize(("fmt", "expected"), [(None, ["a.JPG", "b.png", "c.tif", "d.bmp", "e.webp"]),
                                               ("jpg", ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]),
                                               ("png", ["a.png", "b.png", "c.png", "d.png", "e.png"])])
def test_format_kept_or_changed(tmp_path: Path, fmt: str | None, expected: list[str]) -> None:
    for name in ["a.JPG", "b.png", "c.tif", "d.bmp", "e.webp"]:
        make_image(tmp_path / "in" / name, color=(10, 200, 30))
    summary = transform_folder(tmp_path / "in", tmp_path / "out", 6, 6, fmt=fmt, workers=1, progress=False)
    assert summary.written == 5 and files(tmp_path / "out") == expected
    want = {"jpg": "JPEG", "png": "PNG"}
    for name in expected:
        with Image.open(tmp_path / "out" / name) as img:
            assert img.size == (6, 6)
            if fmt:
                assert img.format == want[fmt]
    assert Image.open(tmp_path / "out" / expected[2]).format == ("TIFF" if fmt is None else want[fmt])


def test_unknown_format_is_a_user_error(tmp_path: Path) -> None:
    make_image(tmp_path / "in" / "a.png")
    with pytest.raises(UserError, match="unknown output format"):
        transform_folder(tmp_path / "in", tmp_path / "out", 8, 8, fmt="gif", workers=1, progress=False)


def test_suffix_collision_is_reported_not_overwritten(tmp_path: Path) -> None:
    make_image(tmp_path / "in" / "a.jpg", color=(255, 0, 0))
    make_image(tmp_path / "in" / "a.png", color=(0, 0, 255))
    summary = transform_folder(tmp_path / "in", tmp_path / "out", 4, 4, fmt="png", workers=1, progress=False)
    assert summary.written == 1 and len(summary.skipped) == 1
    assert "a.png" in summary.skipped[0] and "would overwrite" in summary.skipped[0]
    assert Image.open(tmp_path / "out" / "a.png").getpixel((2, 2))[0] > 240  # a.jpg (red) sorts first


def bad_files(folder: Path) -> list[str]:
    """Write one good image and four bad ones with image extensions; return the bad names."""
    make_image(folder / "good.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("this is not an image")
    make_image(folder / "whole.jpg", size=(64, 64))
    data = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "whole.jpg").unlink()
    (folder / "garbage.tif").write_bytes(bytes(range(256)) * 4)
    return ["empty.jpg", "garbage.tif", "text.png", "truncated.jpg"]


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_files_are_skipped_and_named(tmp_path: Path, workers: int) -> None:
    bad = bad_files(tmp_path / "in")
    summary = transform_folder(tmp_path / "in", tmp_path / "out", 8, 8, workers=workers, progress=False)
    assert summary.written == 1 and files(tmp_path / "out") == ["good.png"]
    assert len(summary.skipped) == 4
    for name, message in zip(bad, sorted(summary.skipped), strict=True):
        assert name in message
    assert any("empty file (0 bytes)" in m for m in summary.skipped)


@pytest.mark.parametrize("workers", [1, 2])
def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    make_image(tmp_path / "in" / "big.png", size=(60, 60))
    make_image(tmp_path / "in" / "small.png", size=(10, 10))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 60x60 = 3600 pixels: over twice the limit
    summary = transform_folder(tmp_path / "in", tmp_path / "out", 8, 8, workers=workers, progress=False)
    assert summary.written == 1 and files(tmp_path / "out") == ["small.png"]
    assert len(summary.skipped) == 1
    assert "big.png" in summary.skipped[0] and "decompression-bomb" in summary.skipped[0]


def test_parallel_and_in_process_give_identical_files(tmp_path: Path) -> None:
    for i in range(6):
        make_image(tmp_path / "in" / f"n{i}.jpg", size=(50, 40), seed=i)
    transform_folder(tmp_path / "in", tmp_path / "one", 16, 16, workers=1, progress=False)
    transform_folder(tmp_path / "in", tmp_path / "two", 16, 16, workers=2, progress=False)
    assert files(tmp_path / "one") == files(tmp_path / "two") == [f"n{i}.jpg" for i in range(6)]
    for name in files(tmp_path / "one"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_jpeg_is_decoded_once_at_reduced_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_image(tmp_path / "in" / "large.jpg", size=(1600, 1200), color=(90, 60, 30))
    seen: list[tuple[int, int]] = []
    real = dcgan.images.crop_resize

    def spy(img: Image.Image, width: int, height: int) -> Image.Image:
        seen.append(img.size)
        return real(img, width, height)

    monkeypatch.setattr(dcgan.images, "crop_resize", spy)
    transform_folder(tmp_path / "in", tmp_path / "out", 16, 16, workers=1, progress=False)
    assert seen == [(200, 150)]  # JPEG draft at 1/8 scale, still >= 16 on each side
    assert Image.open(tmp_path / "out" / "large.jpg").size == (16, 16)


def test_empty_folder_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "readme.txt").write_text("no images here")
    with pytest.raises(UserError, match="no images found in"):
        transform_folder(tmp_path / "in", tmp_path / "out", 8, 8, workers=1, progress=False)


def test_output_inside_input_is_not_read_back(tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_image(src / "a.png")
    make_image(src / "benign" / "b.png")
    first = transform_folder(src, src / "out", 8, 8, recursive=True, workers=1, progress=False)
    second = transform_folder(src, src / "out", 8, 8, recursive=True, workers=1, progress=False)
    assert first.written == second.written == 2
    assert files(src / "out") == ["a.png", "benign/b.png"]


def test_output_equal_to_input_is_refused(tmp_path: Path) -> None:
    make_image(tmp_path / "in" / "a.png")
    with pytest.raises(UserError, match="must differ"):
        transform_folder(tmp_path / "in", tmp_path / "in" / ".", 8, 8, workers=1, progress=False)


def test_rerun_overwrites(tmp_path: Path) -> None:
    make_image(tmp_path / "in" / "a.png", color=(0, 0, 255))
    transform_folder(tmp_path / "in", tmp_path / "out", 8, 8, workers=1, progress=False)
    make_image(tmp_path / "in" / "a.png", color=(255, 0, 0))
    transform_folder(tmp_path / "in", tmp_path / "out", 8, 8, workers=1, progress=False)
    assert Image.open(tmp_path / "out" / "a.png").getpixel((4, 4)) == (255, 0, 0)
    assert files(tmp_path / "out") == ["a.png"]  # and no temporary files left behind


def test_cli_transform(tmp_path: Path) -> None:
    thirds_image(tmp_path / "in" / "benign" / "t.png")
    make_image(tmp_path / "in" / "malignant" / "m.jpg", size=(30, 20))
    (tmp_path / "in" / "malignant" / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    result = CliRunner().invoke(cli, ["transform", str(tmp_path / "in"), str(tmp_path / "out"), "10", "10",
                                      "--recursive", "--format", "png", "--workers", "1"])
    # one rule with `download`: the others are written, and the exit status says not all were
    assert result.exit_code == 1, result.output
    assert result.stdout.strip().endswith("transformed 2, skipped 1 -> " + str(tmp_path / "out"))
    assert "skipped" in result.stderr and "broken.jpg" in result.stderr and "Traceback" not in result.output
    assert files(tmp_path / "out") == ["benign/t.png", "malignant/m.png"]
    assert (np.asarray(Image.open(tmp_path / "out" / "benign" / "t.png")) == (0, 255, 0)).all()


def test_cli_transform_grayscale_default_workers(tmp_path: Path) -> None:
    make_image(tmp_path / "in" / "a.jpg", size=(30, 20))
    make_image(tmp_path / "in" / "b.jpg", size=(30, 20), seed=1)
    result = CliRunner().invoke(cli, ["transform", str(tmp_path / "in"), str(tmp_path / "out"), "8", "4",
                                      "--grayscale"])
    assert result.exit_code == 0, result.output
    for name in ("a.jpg", "b.jpg"):
        img = Image.open(tmp_path / "out" / name)
        assert (img.mode, img.size) == ("L", (8, 4))


def test_cli_transform_empty_folder_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    result = CliRunner().invoke(cli, ["transform", str(tmp_path / "in"), str(tmp_path / "out"), "8", "8"])
    assert result.exit_code == 1
    assert "no images found in" in result.output
    assert "Traceback" not in result.output
