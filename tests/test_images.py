"""dcgan.images: finding, decoding any mode, EXIF rotation, cropping, atomic saves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan.errors import UserError
from dcgan.images import (
    ImageReadError,
    center_crop_box,
    find_images,
    load_array,
    open_image,
    save_image,
)
from tests.conftest import make_image


def test_find_images_sorted_recursive_and_filters(tmp_path: Path) -> None:
    make_image(tmp_path / "b.png")
    make_image(tmp_path / "sub" / "a.JPG")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".partial-x.png").write_bytes(b"")
    found = find_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["b.png", "sub/a.JPG"]
    assert [p.name for p in find_images(tmp_path, recursive=False)] == ["b.png"]
    with pytest.raises(UserError, match="no such file"):
        find_images(tmp_path / "missing")


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16"])
def test_any_mode_becomes_rgb(tmp_path: Path, mode: str) -> None:
    src = Image.new("RGB", (8, 6), (200, 100, 50))
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    (src.convert("L").convert(mode) if mode == "I;16" else src.convert(mode)).save(path)
    img = open_image(path)
    assert img.mode == "RGB" and img.size == (8, 6)
    assert open_image(path, grayscale=True).mode == "L"


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert open_image(tmp_path / "r.jpg").size == (20, 40)


def test_center_crop_box() -> None:
    assert center_crop_box(400, 300, 1, 1) == (50, 0, 350, 300)
    assert center_crop_box(300, 400, 1, 1) == (0, 50, 300, 350)
    assert center_crop_box(400, 300, 4, 3) == (0, 0, 400, 300)


def test_load_array_crops_to_size(tmp_path: Path) -> None:
    make_image(tmp_path / "x.png", size=(50, 30))
    assert load_array(tmp_path / "x.png", 16).shape == (16, 16, 3)
    assert load_array(tmp_path / "x.png", 16, grayscale=True).shape == (16, 16, 1)


@pytest.mark.parametrize("content", [b"", b"not an image", None])
def test_unreadable_files_raise_clear_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "bad.jpg"
    if content is None:  # truncated JPEG
        make_image(path, size=(64, 64))
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(content)
    with pytest.raises(ImageReadError, match=r"bad\.jpg"):
        open_image(path).load()


def test_save_image_atomic_leaves_no_temp(tmp_path: Path) -> None:
    arr = np.zeros((4, 4, 1), np.uint8)
    save_image(arr, tmp_path / "g.png")
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]
    assert Image.open(tmp_path / "g.png").mode == "L"
