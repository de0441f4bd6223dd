"""dcgan.analysis.c2st: the classifier two-sample test on tiny synthetic image sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dcgan.analysis.c2st import BAND_VIEWS, C2STOptions, _tensor, c2st_report, surest_grid, two_sample_test
from dcgan.errors import UserError
from tests.conftest import lesion_images

FAST = C2STOptions(folds=3, epochs=15, batch_size=16, seed=0, width=8)


def blobs(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Smooth random color fields with mild noise: one distribution, many different images."""
    return lesion_images(n, size, seed)


def with_checkerboard(images: np.ndarray, amplitude: int = 20) -> np.ndarray:
    size = images.shape[1]
    board = ((np.indices((size, size)).sum(0) % 2) * 2 - 1)[None, :, :, None] * amplitude
    return np.clip(images.astype(int) + board, 0, 255).astype(np.uint8)


def test_same_distribution_is_near_chance_and_a_texture_is_caught() -> None:
    reals, more_reals = blobs(45, seed=1), blobs(45, seed=2)
    same = two_sample_test(reals, more_reals, FAST)
    assert same["images_per_set"] == 45 and len(same["prob_b"]) == 45
    assert abs(same["accuracy"] - 0.5) < 0.15
    assert same["p_value"] > 0.01
    different = two_sample_test(reals, with_checkerboard(blobs(45, seed=3)), FAST)
    assert different["accuracy"] > 0.9 and different["p_value"] < 1e-6
    low, high = different["ci"]
    assert low < different["accuracy"] <= high and high - low < 0.2


def test_same_seed_same_result_and_larger_set_is_subsampled() -> None:
    a, b = blobs(20, seed=4), blobs(30, seed=5)
    opts = C2STOptions(folds=3, epochs=3, batch_size=16, seed=0, width=8)
    first, again = two_sample_test(a, b, opts), two_sample_test(a, b, opts)
    assert first == again
    assert first["images_per_set"] == 20 and len(set(first["index_b"])) == 20 and max(first["index_b"]) < 30
    other = two_sample_test(a, b, C2STOptions(folds=3, epochs=3, batch_size=16, seed=1, width=8))
    assert other["prob_b"] != first["prob_b"]


def test_report_reference_and_surest_grid(tmp_path: Path) -> None:
    reals, fakes = blobs(30, seed=6), blobs(30, seed=7)
    fakes[:5] = with_checkerboard(fakes[:5], 60)  # five obvious fakes among plausible ones
    opts = C2STOptions(folds=3, epochs=15, batch_size=16, seed=0, width=8, surest=6)
    report = c2st_report(reals, fakes, opts, [f"f{i}.png" for i in range(30)])
    assert set(report) >= {"fake_vs_real", "real_vs_real", "surest_fakes", "method"}
    assert report["real_vs_real"]["images_per_set"] == 15
    surest = report["surest_fakes"]
    assert len(surest) == 6 and surest[0]["prob_fake"] >= surest[-1]["prob_fake"]
    assert {s["index"] for s in surest[:5]} == set(range(5))  # the planted ones come first
    assert surest[0]["file"] == f"f{surest[0]['index']}.png"
    grid = np.asarray(Image.open(surest_grid(fakes, report, tmp_path / "grid.png")))
    assert grid.shape == (2 + 2 * 18, 2 + 3 * 18, 3)  # 6 images of 16 px, 3 per row, 2 px padding
    assert np.array_equal(grid[2:18, 2:18], fakes[surest[0]["index"]])


def test_band_views_split_texture_from_colour() -> None:
    """A 2-pixel checkerboard lives in the fine view only; a colour cast in the coarse view too."""
    opts = C2STOptions(folds=3, epochs=15, batch_size=16, seed=0, width=8, bands=True)
    reals, fakes = blobs(45, seed=1), blobs(45, seed=3)
    x = _tensor(reals[:4])
    views = {name: two_sample_test(reals, with_checkerboard(fakes), opts, view=name)["accuracy"]
             for name in ("coarse", "fine")}
    assert views["fine"] > 0.9 and abs(views["coarse"] - 0.5) < 0.15, views
    cast = np.clip(fakes.astype(int) + np.array([40, -20, -20]), 0, 255).astype(np.uint8)  # redder everywhere
    assert two_sample_test(reals, cast, opts, view="coarse")["accuracy"] > 0.9
    whole = BAND_VIEWS["coarse"](x, opts.band_sigma) + BAND_VIEWS["fine"](x, opts.band_sigma)
    assert np.allclose(whole.numpy(), x.numpy(), atol=1e-5)  # the two views add up to the image


def test_too_few_images_is_a_user_error() -> None:
    with pytest.raises(UserError, match="at least 3 images per set"):
        two_sample_test(blobs(2), blobs(5), FAST)


def write_sets(folder: Path) -> None:
    """reals/ and fakes/ (12 PNGs each; the fakes carry a checkerboard) for the CLI tests."""
    for name, images in (("reals", blobs(12, seed=8)), ("fakes", with_checkerboard(blobs(12, seed=9)))):
        (folder / name).mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img).save(folder / name / f"{i}.png")


def test_quality_command_with_c2st_writes_json_and_figures(tmp_path: Path) -> None:
    import img2dist

    write_sets(tmp_path)
    out = CliRunner().invoke(img2dist.cli, [
        "quality", str(tmp_path / "reals"), str(tmp_path / "fakes"), "--metrics", "swd,spectrum", "--c2st",
        "--c2st-folds", "3", "--c2st-epochs", "2", "--figures", str(tmp_path / "fig"),
        "--json", str(tmp_path / "q.json")])
    assert out.exit_code == 0, out.output
    assert "classifier two-sample test" in out.output and "reals vs reals" in out.output
    assert "top-band power ratio" in out.output
    report = json.loads((tmp_path / "q.json").read_text())
    assert report["c2st"]["fake_vs_real"]["images_per_set"] == 12
    assert Path(report["c2st"]["grid"]).is_file() and Path(report["spectrum"]["plot"]).is_file()
    assert report["spectrum"]["top_band_ratio"] > 2
    assert "bands" not in report["c2st"] and "fine view" not in out.output


def test_quality_command_c2st_bands(tmp_path: Path) -> None:
    import img2dist

    write_sets(tmp_path)
    out = CliRunner().invoke(img2dist.cli, [
        "quality", str(tmp_path / "reals"), str(tmp_path / "fakes"), "--metrics", "spectrum", "--c2st",
        "--c2st-bands", "--c2st-folds", "3", "--c2st-epochs", "2", "--json", str(tmp_path / "q.json")])
    assert out.exit_code == 0, out.output
    assert "coarse view" in out.output and "fine view" in out.output
    bands = json.loads((tmp_path / "q.json").read_text())["c2st"]["bands"]
    assert bands["sigma"] == 1.5 and set(bands) == {"sigma", "coarse", "fine"}
    assert bands["fine"]["images_per_set"] == 12 and 0 <= bands["coarse"]["accuracy"] <= 1
    alone = CliRunner().invoke(img2dist.cli, ["quality", str(tmp_path / "reals"), str(tmp_path / "fakes"),
                                              "--c2st-bands", "--json", str(tmp_path / "alone.json")])
    assert alone.exit_code != 0 and not (tmp_path / "alone.json").exists()
    assert alone.output.strip().splitlines() == ["Error: --c2st-bands splits the classifier two-sample test: "
                                                 "add --c2st"]
