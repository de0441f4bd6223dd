"""dcgan.turing.site and `turing`: layout, what the files give away (nothing), reproducibility, refusals."""

from __future__ import annotations

import io
import json
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

import img2dist
from dcgan.errors import UserError
from dcgan.turing.site import SiteOptions, build_site, encode_png, pad_png, split_count, upscale_factor
from tests.conftest import TRAINING_DATA, make_image

PAGE_FILES = {"index.html", "app.js", "style.css", "items.js"}


def folders(tmp_path: Path, reals: int = 6, fakes: int = 6,
            fake_size: tuple[int, int] = (32, 32)) -> tuple[Path, Path]:
    """Reals: 48x40 noise JPEGs. Fakes: noise PNGs of `fake_size`."""
    for i in range(reals):
        make_image(tmp_path / "reals" / f"real_{i}.jpg", size=(48, 40), seed=i)
    for i in range(fakes):
        make_image(tmp_path / "fakes" / f"fake_{i}.png", size=fake_size, seed=100 + i)
    return tmp_path / "reals", tmp_path / "fakes"


def read_items(site: Path) -> dict[str, Any]:
    """The JSON object that items.js assigns to window.TURING_SITE."""
    text = (site / "items.js").read_text()
    return json.loads(text[text.index("{"):text.rindex("}") + 1])


def key_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "key.json").read_text())


def test_split_count() -> None:
    assert split_count(40, 0.5) == (20, 20)
    assert split_count(10, 0.3) == (7, 3)
    assert split_count(5, 0.0) == (5, 0)
    assert split_count(5, 1.0) == (0, 5)
    with pytest.raises(UserError):
        split_count(0, 0.5)


def test_layout_keeps_the_key_outside_the_site(tmp_path: Path) -> None:
    reals, fakes = folders(tmp_path, reals=8)
    summary = build_site(reals, fakes, tmp_path / "out", SiteOptions(n=10, seed=1, fake_share=0.3))
    out = tmp_path / "out"
    site = out / "site"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README.txt", "key.json", "site", f"real-or-fake-{summary.site_id}.zip"])
    assert {p.name for p in site.iterdir()} == PAGE_FILES | {"images"}
    assert len(list((site / "images").iterdir())) == 10
    key = key_of(out)
    assert key["site_id"] == summary.site_id == read_items(site)["siteId"]
    assert [item["label"] for item in key["items"]].count("fake") == 3 == summary.n_fake
    # The page loads only its own files: no key, no network, no fetch of anything.
    html = (site / "index.html").read_text()
    assert re.findall(r'<script src="([^"]+)"', html) == ["items.js", "app.js"]
    for name in PAGE_FILES:
        text = (site / name).read_text()
        assert "http://" not in text and "https://" not in text
        assert "fetch(" not in text and "XMLHttpRequest" not in text
    with zipfile.ZipFile(summary.zip_path) as archive:
        names = archive.namelist()
        pngs = [i for i in archive.infolist() if i.filename.endswith(".png")]
    assert not any("key" in n for n in names) and len(names) == 14
    assert all(n.startswith(f"real-or-fake-{summary.site_id}/") for n in names)
    assert {i.compress_type for i in pngs} == {zipfile.ZIP_STORED} and len({i.file_size for i in pngs}) == 1
    readme = (out / "README.txt").read_text()
    assert "KEEP IT" in readme and "turing-score" in readme


def test_images_give_nothing_away(tmp_path: Path) -> None:
    reals, fakes = folders(tmp_path)
    out = tmp_path / "out"
    build_site(reals, fakes, out, SiteOptions(n=12, seed=2))
    key, site = key_of(out), out / "site"
    images = sorted((site / "images").iterdir())
    # Names: 8 random hex digits; nothing of the source name anywhere in the site.
    assert all(re.fullmatch(r"[0-9a-f]{8}\.png", p.name) for p in images)
    everything = b"".join(p.read_bytes() for p in site.rglob("*") if p.is_file())
    assert b"real_" not in everything and b"fake_" not in everything
    # Sizes: one byte size, one pixel size (the fakes'), one format, one modification time.
    assert len({p.stat().st_size for p in images}) == 1
    assert {Image.open(p).size for p in images} == {(32, 32)}
    assert {Image.open(p).mode for p in images} == {"RGB"}
    assert len({p.stat().st_mtime for p in site.rglob("*")}) == 1
    # Fakes keep every pixel; reals were center-cropped and resized to the fakes' size.
    for item in key["items"]:
        shown = np.asarray(Image.open(site / "images" / f"{item['id']}.png"))
        if item["label"] == "fake":
            assert np.array_equal(shown, np.asarray(Image.open(item["source"]).convert("RGB")))
            assert not item["resized"]
        else:
            assert item["resized"] and item["original_size"] == [48, 40]
    # Order: the page's list and the key follow the same shuffled order, not reals-then-fakes.
    data = read_items(site)
    assert data["images"] == [item["id"] for item in key["items"]]
    labels = [item["label"] for item in key["items"]]
    assert labels != sorted(labels) and labels != sorted(labels, reverse=True)


def test_metadata_is_stripped(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "DermaCam 3000"  # Make
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    (tmp_path / "reals").mkdir()
    Image.new("RGB", (32, 32), (200, 150, 120)).save(tmp_path / "reals" / "r.jpg", exif=exif, icc_profile=icc)
    make_image(tmp_path / "fakes" / "f.png", size=(32, 32))
    build_site(tmp_path / "reals", tmp_path / "fakes", tmp_path / "out", SiteOptions(n=2, seed=0))
    for path in (tmp_path / "out" / "site" / "images").iterdir():
        with Image.open(path) as img:
            assert not {"exif", "icc_profile", "dpi"} & set(img.info)
            assert not any(k for k in img.info if k not in ("paDd",))
        assert b"DermaCam" not in path.read_bytes()


def test_padding_keeps_pixels_and_a_valid_png() -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    data = encode_png(img)
    padded = pad_png(data, len(data) + 100, random.Random(0))
    assert len(padded) == len(data) + 100
    with Image.open(io.BytesIO(padded)) as check:
        check.verify()  # checks every chunk's CRC
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(padded))), np.asarray(img))
    with pytest.raises(ValueError):
        pad_png(data, len(data) + 5, random.Random(0))  # a chunk needs 12 bytes


def test_page_score_is_masked_and_optional(tmp_path: Path) -> None:
    reals, fakes = folders(tmp_path)
    build_site(reals, fakes, tmp_path / "a", SiteOptions(n=8, seed=4))
    data, key = read_items(tmp_path / "a" / "site"), key_of(tmp_path / "a")
    mask, bits = bytes.fromhex(data["score"]["mask"]), bytes.fromhex(data["score"]["bits"])
    decoded = ["fake" if (m ^ b) & 1 else "real" for m, b in zip(mask, bits, strict=True)]
    assert decoded == [item["label"] for item in key["items"]]
    assert set(data) == {"version", "siteId", "width", "height", "images", "score"}

    build_site(reals, fakes, tmp_path / "b", SiteOptions(n=8, seed=4, score_in_page=False))
    assert read_items(tmp_path / "b" / "site")["score"] is None
    assert key_of(tmp_path / "b")["score_in_page"] is False


def test_same_seed_same_site_new_site_id(tmp_path: Path) -> None:
    reals, fakes = folders(tmp_path)
    a = build_site(reals, fakes, tmp_path / "a", SiteOptions(n=8, seed=7))
    b = build_site(reals, fakes, tmp_path / "b", SiteOptions(n=8, seed=7))
    build_site(reals, fakes, tmp_path / "c", SiteOptions(n=8, seed=8))
    items = key_of(tmp_path / "a")["items"]
    assert items == key_of(tmp_path / "b")["items"]  # same images, ids, order
    assert items != key_of(tmp_path / "c")["items"]
    assert (tmp_path / "a" / "site" / "items.js").read_text().replace(a.site_id, b.site_id) == (
        tmp_path / "b" / "site" / "items.js").read_text()
    assert a.site_id != b.site_id
    assert build_site(reals, fakes, tmp_path / "d", SiteOptions(n=4)).seed == key_of(tmp_path / "d")["seed"]


def test_mixed_fake_sizes_use_the_most_common(tmp_path: Path) -> None:
    reals, fakes = folders(tmp_path, fakes=3, fake_size=(24, 24))
    make_image(fakes / "odd.png", size=(50, 30))
    out = tmp_path / "out"
    build_site(reals, fakes, out, SiteOptions(n=8, seed=0))
    assert {Image.open(p).size for p in (out / "site" / "images").iterdir()} == {(24, 24)}
    odd = [item for item in key_of(out)["items"] if item["source"].endswith("odd.png")]
    assert odd[0]["resized"]


def test_upscale_factor() -> None:
    assert upscale_factor((64, 64), (128, 128)) == 2.0
    assert upscale_factor((48, 40), (32, 32)) == 0.8  # crop 40x40 first, then shrink
    assert upscale_factor((100, 30), (60, 60)) == 2.0  # the 30x30 crop is what gets enlarged
    assert upscale_factor((100, 30), (90, 60)) == 2.0  # crop 45x30


def test_the_page_size_is_the_smaller_common_size(tmp_path: Path) -> None:
    # Fakes larger than the reals (370 px fakes, 160 px reals in the issue): all shown at the
    # reals' size, the fakes downscaled, nothing refused.
    reals, fakes = folders(tmp_path, fake_size=(96, 96))
    summary = build_site(reals, fakes, tmp_path / "out", SiteOptions(n=6, seed=0))
    assert (summary.size, summary.n_fake, summary.resized) == ((48, 40), 3, 3)
    assert {Image.open(p).size for p in (tmp_path / "out" / "site" / "images").iterdir()} == {(48, 40)}
    resized = {item["label"]: item["resized"] for item in key_of(tmp_path / "out")["items"]}
    assert resized == {"fake": True, "real": False}


def test_upscaling_beyond_2x_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big"
    for i in range(3):
        make_image(big / f"real_{i}.png", size=(100, 100), seed=i)
    make_image(big / "real_tiny.png", size=(30, 30), seed=9)
    fakes = tmp_path / "fakes"
    for i in range(2):
        make_image(fakes / f"fake_{i}.png", size=(96, 96), seed=100 + i)
    out = tmp_path / "out"
    with pytest.raises(UserError) as refused:  # 4 reals, 2 fakes: every image is drawn
        build_site(big, fakes, out, SiteOptions(n=6, seed=0, fake_share=1 / 3))
    message = str(refused.value)
    assert "\n" not in message
    assert re.match(r".*real_tiny\.png: is 30x30, would need 3\.20x upscaling to the common size 96x96 "
                    r"\(at most 2x", message), message
    assert not out.exists()
    # A fake is held to the same limit.
    reals, _ = folders(tmp_path, fakes=0)
    make_image(tmp_path / "f2" / "big.png", size=(64, 64))
    make_image(tmp_path / "f2" / "big2.png", size=(64, 64), seed=1)
    make_image(tmp_path / "f2" / "tiny.png", size=(20, 20))
    with pytest.raises(UserError, match=r"tiny\.png: is 20x20, would need 2\.40x upscaling to the common "
                                        r"size 48x40"):
        build_site(reals, tmp_path / "f2", tmp_path / "out2", SiteOptions(n=6, seed=0, fake_share=0.5))
    # Exactly 2x is fine.
    (big / "real_tiny.png").unlink()
    make_image(big / "real_half.png", size=(48, 48), seed=9)
    summary = build_site(big, fakes, tmp_path / "ok", SiteOptions(n=6, seed=0, fake_share=1 / 3))
    assert (summary.size, summary.n_real, summary.resized) == ((96, 96), 4, 4)


def test_all_reals_or_all_fakes(tmp_path: Path) -> None:
    reals, fakes = folders(tmp_path)
    only_fakes = build_site(reals, fakes, tmp_path / "f", SiteOptions(n=4, fake_share=1.0, seed=0))
    only_reals = build_site(reals, fakes, tmp_path / "r", SiteOptions(n=4, fake_share=0.0, seed=0))
    assert (only_fakes.n_real, only_fakes.n_fake, only_fakes.size) == (0, 4, (32, 32))
    assert (only_reals.n_real, only_reals.n_fake, only_reals.size) == (4, 0, (48, 40))


def test_unreadable_images_are_skipped(tmp_path: Path) -> None:
    # Images are decoded in random order until enough are read: with two good reals among six
    # and both needed, the broken ones met on the way are named and skipped.
    reals, fakes = folders(tmp_path, reals=2)
    for i in range(4):
        (reals / f"broken{i}.jpg").write_bytes(b"not an image")
    summary = build_site(reals, fakes, tmp_path / "out", SiteOptions(n=4, seed=0))
    assert summary.n_real == 2 and summary.skipped
    assert all(re.search(r"broken\d\.jpg: not a readable image", m) for m in summary.skipped)


def test_refusals(tmp_path: Path) -> None:
    reals, fakes = folders(tmp_path, reals=2)
    with pytest.raises(UserError, match=r"REAL_PATH has 2 readable image\(s\), 5 real ones needed"):
        build_site(reals, fakes, tmp_path / "out", SiteOptions(n=10))
    with pytest.raises(UserError, match="under both REAL_PATH and FAKE_PATH"):
        build_site(tmp_path, fakes, tmp_path / "out", SiteOptions(n=4))
    assert not (tmp_path / "out").exists()


def test_overwrite(tmp_path: Path) -> None:
    reals, fakes = folders(tmp_path)
    out = tmp_path / "out"
    first = build_site(reals, fakes, out, SiteOptions(n=4, seed=0))
    with pytest.raises(UserError, match=r"already holds a turing site.*--overwrite"):
        build_site(reals, fakes, out, SiteOptions(n=4, seed=0))
    second = build_site(reals, fakes, out, SiteOptions(n=6, seed=0, overwrite=True))
    assert key_of(out)["site_id"] == second.site_id != first.site_id
    assert not first.zip_path.exists() and second.zip_path.exists()
    assert len(list((out / "site" / "images").iterdir())) == 6
    assert not [p for p in out.iterdir() if p.name.startswith(".partial-")]
    foreign = tmp_path / "foreign"
    (foreign / "site").mkdir(parents=True)
    (foreign / "site" / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a turing site"):
        build_site(reals, fakes, foreign, SiteOptions(n=4, overwrite=True))
    assert (foreign / "site" / "mine.txt").read_text() == "keep me"


def test_cli_turing(tmp_path: Path) -> None:
    fakes = tmp_path / "fakes"
    for i in range(4):
        make_image(fakes / f"f{i}.png", size=(64, 64), seed=i)
    group = img2dist.cli  # the real CLI: a command missing from it must fail here
    runner = CliRunner()
    out = tmp_path / "study"
    result = runner.invoke(group, ["turing", str(TRAINING_DATA), str(fakes), str(out), "-n", "8",
                                   "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert "4 real + 4 fake images at 64x64 (4 resized), seed 5" in result.output
    assert "never send" in result.output and "turing-score" in result.output
    assert {Image.open(p).size for p in (out / "site" / "images").iterdir()} == {(64, 64)}

    result = runner.invoke(group, ["turing", str(TRAINING_DATA), str(fakes), str(out), "-n", "8"])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "--overwrite" in result.output
    result = runner.invoke(group, ["turing", str(TRAINING_DATA), str(fakes), str(tmp_path / "x"), "-n", "20"])
    assert result.exit_code == 1 and "FAKE_PATH has 4 readable image(s), 10 fake ones needed" in result.output


def test_a_site_inside_real_path_is_not_read_back(tmp_path: Path) -> None:
    reals, fakes = folders(tmp_path, reals=4, fakes=4)
    build_site(reals, fakes, reals / "study", SiteOptions(n=8, seed=0))
    build_site(reals, fakes, reals / "study", SiteOptions(n=8, seed=0, overwrite=True))
    sources = {item["source"] for item in key_of(reals / "study")["items"]}
    assert not any("study" in s for s in sources) and len(sources) == 8
