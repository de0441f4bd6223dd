"""dcgan.images: finding, decoding any mode, EXIF rotation, cropping, atomic saves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan import images
from dcgan.errors import UserError
from dcgan.images import (
    ImageReadError,
    center_crop_box,
    decode_images,
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
    assert find_images(tmp_path / "sub" / "a.JPG", required=True) == [tmp_path / "sub" / "a.JPG"]
    (tmp_path / "empty").mkdir()
    assert find_images(tmp_path / "empty") == []
    with pytest.raises(UserError) as err:
        find_images(tmp_path / "empty", required=True)
    types = "jpg, jpeg, png, tif, tiff, bmp, webp"
    assert str(err.value) == f"{tmp_path / 'empty'}: no images found (looked for {types})"


def _folder_with_a_bad_file(tmp_path: Path) -> list[Path]:
    """Six images of distinct sizes (10..15 px wide) with an unreadable file third."""
    paths = [make_image(tmp_path / f"{i}.png", size=(10 + i, 8), seed=i) for i in range(6)]
    bad = tmp_path / "2.png"
    bad.write_bytes(b"not an image")
    return paths


def _record_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files `open_image` decodes from now on, in call order."""
    opened: list[str] = []
    real_open = images.open_image

    def counting(path: Path, *args: object, **kwargs: object) -> Image.Image:
        opened.append(Path(path).name)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(images, "open_image", counting)
    return opened


@pytest.mark.parametrize("workers", [1, 3])
def test_decode_images_in_order_once_each_errors_named(tmp_path: Path, workers: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _folder_with_a_bad_file(tmp_path)
    opened = _record_opens(monkeypatch)
    decoded = list(decode_images(paths, workers=workers))
    assert [d.path for d in decoded] == paths
    assert sorted(opened) == [p.name for p in paths]  # each decoded once
    assert [d.image.shape if d.image is not None else None for d in decoded] == [
        (8, 10, 3), (8, 11, 3), None, (8, 13, 3), (8, 14, 3), (8, 15, 3)]
    assert decoded[2].error is not None and decoded[2].error.startswith(f"{paths[2]}: not a readable image")
    assert all(d.image.dtype == np.uint8 for d in decoded if d.image is not None)
    resized = list(decode_images(paths, 6, grayscale=True, workers=workers))
    assert {d.image.shape for d in resized if d.image is not None} == {(6, 6, 1)}
    pil = next(decode_images(paths, as_array=False, workers=workers)).image
    assert isinstance(pil, Image.Image) and pil.size == (10, 8)


def test_decode_images_limit_stops_before_decoding_more(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _folder_with_a_bad_file(tmp_path)
    opened = _record_opens(monkeypatch)
    got = list(decode_images(paths, limit=3))
    assert [d.path.name for d in got] == ["0.png", "1.png", "2.png", "3.png"]  # 3 readable + the bad one
    assert opened == ["0.png", "1.png", "2.png", "3.png"]
    assert list(decode_images(paths, limit=0)) == [] and len(opened) == 4


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16"])
def test_any_mode_becomes_rgb(tmp_path: Path, mode: str) -> None:
    src = Image.new("RGB", (8, 6), (200, 100, 50))
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    (src.convert("L").convert(mode) if mode == "I;16" else src.convert(mode)).save(path)
    img = open_image(path)
    assert img.mode == "RGB" and img.size == (8, 6)
    assert open_image(path, grayscale=True).mode == "L"


@pytest.mark.parametrize(("name", "dtype"), [("g.png", "<u2"), ("g.tif", "<u2"), ("g.tif", ">u2"),
                                             ("g.tif", "<i4")])
def test_16_bit_images_use_the_fixed_range_not_their_own(tmp_path: Path, name: str, dtype: str) -> None:
    # A gradient over only part of the 16-bit range, 8-bit levels 10..73 (times 257, plus a
    # remainder that must round away): a per-image stretch would turn it into 0..255.
    levels = np.arange(10, 74).reshape(8, 8)
    arr = (levels * 257 + np.array([0, 100, -100, 128])[np.arange(64).reshape(8, 8) % 4]).astype(dtype)
    Image.fromarray(arr).save(tmp_path / name)
    assert Image.open(tmp_path / name).mode in ("I;16", "I;16B", "I")
    gray = np.asarray(open_image(tmp_path / name, grayscale=True))
    assert gray.dtype == np.uint8 and (gray == levels).all()
    rgb = np.asarray(open_image(tmp_path / name))
    assert (rgb == levels[..., None]).all()


def test_uniform_16_bit_image_keeps_its_gray_level(tmp_path: Path) -> None:
    for value, level in [(0, 0), (128 * 257, 128), (65535, 255)]:
        Image.fromarray(np.full((6, 5), value, np.uint16)).save(tmp_path / "u.png")
        assert (np.asarray(open_image(tmp_path / "u.png", grayscale=True)) == level).all()


def test_float_image_in_unit_range_maps_to_0_255(tmp_path: Path) -> None:
    levels = np.arange(20, 84).reshape(8, 8)
    Image.fromarray((levels / 255).astype(np.float32)).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert (np.asarray(open_image(tmp_path / "f.tif", grayscale=True)) == levels).all()


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
