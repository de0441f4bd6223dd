"""img2dist.py through click's CliRunner: distance, embedding, quality, and one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from dcgan.analysis.embed import EMBEDDINGS
from dcgan.analysis.features import FEATURES
from img2dist import cli
from tests.conftest import REPO, make_image


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never touch the user's ~/.cache: the default cache folder lives in the test's tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "isic-gan"


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def groups(tmp_path: Path) -> list[Path]:
    for i in range(4):
        make_image(tmp_path / "reals" / f"r{i}.png", size=(20, 20), seed=i)
        make_image(tmp_path / "fakes" / "sub" / f"f{i}.jpg", size=(24, 18), color=(200, 30 + 10 * i, 40))
    return [tmp_path / "reals", tmp_path / "fakes"]


def test_distance_command(tmp_path: Path, private_cache: Path) -> None:
    a = make_image(tmp_path / "a.png", seed=1)
    b = make_image(tmp_path / "b.png", color=(0, 0, 255))
    assert float(run("distance", a, a).output) == 0
    ab, ba = float(run("distance", a, b).output), float(run("distance", b, a).output)
    assert ab > 0 and ba > 0 and ab != ba
    sym_ab = float(run("distance", a, b, "--symmetric").output)
    sym_ba = float(run("distance", b, a, "--symmetric").output)
    assert sym_ab == sym_ba == pytest.approx((ab + ba) / 2, abs=2e-6)
    assert float(run("distance", a, b, "--centroids", "2", "--no-cache").output) > 0
    assert list(private_cache.glob("color-v3-k5-*.npz"))


def test_method_2018_on_the_command_line(tmp_path: Path, groups: list[Path], private_cache: Path) -> None:
    from dcgan.analysis.color import palette_2018, palette_distances_exact, read_pixels_2018

    a, b = sorted(groups[0].glob("*.png"))[:2]
    expected = palette_distances_exact(np.stack([palette_2018(read_pixels_2018(p)) for p in (a, b)]))
    assert float(run("distance", a, b, "--method", "2018").output) == pytest.approx(expected[0, 1], abs=1e-6)
    assert list(private_cache.glob("color-2018-sklearn*-k5-*.npz"))
    out = tmp_path / "map2018.png"
    result = run("embedding", out, *groups, "--features", "color-2018", "--group", "-q")
    assert result.exit_code == 0, result.output
    d = np.load(out.with_suffix(".npy"))
    assert d.dtype == np.float64 and d[0, 1] == pytest.approx(expected[0, 1], rel=1e-12)


def test_embedding_writes_plot_csv_npy_json(tmp_path: Path, groups: list[Path]) -> None:
    out = tmp_path / "out" / "map.png"
    result = run("embedding", out, *groups, "--group", "--real", groups[0], "--cache", tmp_path / "c")
    assert result.exit_code == 0, result.output
    assert "silhouette" in result.output and "1-NN" in result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert [r["group"] for r in rows] == ["reals"] * 4 + ["fakes"] * 4
    assert rows[4]["path"].endswith("f0.jpg")
    d = np.load(out.with_suffix(".npy"))
    assert d.shape == (8, 8) and np.allclose(d, d.T) and np.all(np.diag(d) == 0)
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["images"] == 8 and info["groups"] == ["reals", "fakes"] and info["method"] == "mds"
    stats = info["statistics"]
    assert [g["size"] for g in stats["groups"]] == [4, 4]
    assert stats["real_vs_fake"]["real"] == "reals"
    fake = stats["real_vs_fake"]["fakes"][0]
    assert fake["group"] == "fakes" and 0 <= fake["one_nn_accuracy"] <= 1
    assert len(fake["closest_pairs"]) == 4
    coords = np.array([[float(r["x"]), float(r["y"])] for r in rows])
    for g, group in enumerate(stats["groups"]):
        pts = coords[g * 4:(g + 1) * 4]
        assert group["spread_embedding"] == pytest.approx(np.linalg.norm(pts - pts.mean(0), axis=1).mean(),
                                                          rel=1e-4)
        within = d[g * 4:(g + 1) * 4, g * 4:(g + 1) * 4]
        assert group["spread_distance"] == pytest.approx(within.sum() / 12, rel=1e-5)
    # The two groups are far apart (noise vs flat red): a clear grouping.
    between = stats["mean_distance_between_groups"]
    assert between["names"] == ["reals", "fakes"]
    matrix = np.array(between["matrix"], dtype=float)
    assert matrix.shape == (2, 2) and np.allclose(matrix, matrix.T, rtol=1e-5)
    assert matrix[0, 1] == pytest.approx(d[:4, 4:].mean(), rel=1e-5)
    assert matrix[0, 0] == pytest.approx(stats["groups"][0]["spread_distance"], rel=1e-6)
    assert matrix[0, 1] > max(matrix[0, 0], matrix[1, 1]) > 0
    assert 0.5 < stats["silhouette"] <= 1
    nn = fake["fake_to_real_nn"]
    assert set(nn) == {"mean", "min", "p5", "median", "p95", "max"}
    assert 0 < nn["min"] <= nn["p5"] <= nn["median"] <= nn["p95"] <= nn["max"]
    assert nn["min"] == pytest.approx(d[4:, :4].min(axis=1).min(), rel=1e-5)
    assert nn["mean"] == pytest.approx(d[4:, :4].min(axis=1).mean(), rel=1e-5)
    closest = [p["distance"] for p in fake["closest_pairs"]]
    assert closest == sorted(closest) and closest[0] == pytest.approx(nn["min"], rel=1e-6)
    assert 0 <= fake["below_real_p5"] <= 4 and 0 <= fake["likely_copies"] <= 4


@pytest.mark.parametrize("method", list(EMBEDDINGS))
@pytest.mark.parametrize("features", list(FEATURES))
def test_every_method_and_feature_kind(tmp_path: Path, groups: list[Path], method: str,
                                       features: str) -> None:
    result = run("embedding", tmp_path / "m.pdf", *groups, "--method", method, "--features", features,
                 "--group-labels", "--no-cache", "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.pdf").read_bytes()[:4] == b"%PDF"


def test_second_run_hits_the_cache(tmp_path: Path, groups: list[Path], private_cache: Path) -> None:
    from dcgan.analysis.features import FeatureOptions
    from dcgan.analysis.report import EmbeddingOptions, embed_images

    assert run("embedding", tmp_path / "a.png", *groups, "-q").exit_code == 0
    assert list(private_cache.glob("color-*.npz"))
    opts = EmbeddingOptions(feature=FeatureOptions(cache_dir=private_cache, progress=False))
    result = embed_images(tmp_path / "b.png", [str(g) for g in groups], opts)
    assert result.features.cache_hits == 8
    first = np.load(tmp_path / "a.npy")
    np.testing.assert_array_equal(first, result.features.distances)


def test_unreadable_files_are_skipped_and_named(tmp_path: Path, groups: list[Path]) -> None:
    (groups[0] / "broken.png").write_bytes(b"\x89PNG broken")
    result = CliRunner().invoke(cli, ["embedding", str(tmp_path / "m.png"), *map(str, groups), "-q"])
    assert result.exit_code == 0
    assert "skipped" in result.output and "broken.png" in result.output
    assert json.loads((tmp_path / "m.json").read_text())["images"] == 8


@pytest.mark.parametrize(("args", "message"), [
    (["embedding", "m.png", "{one}"], "at least 3 readable images"),
    (["embedding", "m.png", "{bad}"], "found 0 (1 unreadable)"),
    (["embedding", "m.png", "{reals}", "--features", "pixels", "{bad}", "--group"],
     "no readable images in bad.png"),
    (["embedding", "m.txt", "{reals}"], "the plot must end in one of"),
    (["embedding", "m.png", "{reals}", "--real", "{fakes}"], "must be one of the IMAGE_PATH"),
    (["embedding", "m.png", "{empty}"], "no images found"),
    (["distance", "{bad}", "{one}"], "not a readable image"),
    (["quality", "{reals}", "{empty}"], "no images found"),
    (["quality", "{reals}", "{fakes}", "--metrics", "fid,nope"], "unknown metric"),
    (["quality", "{reals}", "{fakes}", "--metrics", "fid-kid", "--inception-weights", "{bad}"],
     "not a loadable state_dict"),
])
def test_bad_input_is_a_one_line_error(tmp_path: Path, groups: list[Path], args: list[str],
                                       message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.png").write_bytes(b"nope")
    places = {"one": make_image(tmp_path / "one" / "x.png"), "reals": groups[0], "fakes": groups[1],
              "empty": tmp_path / "empty", "bad": tmp_path / "bad.png"}
    args = [a.format(**places) if a.startswith("{") else a for a in args]
    args = [str(tmp_path / a) if a.startswith("m.") else a for a in args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1


def test_help_lists_the_registries() -> None:
    out = run("embedding", "--help").output
    assert all(name in out for name in EMBEDDINGS) and all(name in out for name in FEATURES)
    out = "".join(run("quality", "--help").output.split())  # help text wraps at hyphens
    assert all(name in out for name in ("psnr", "ssim", "ms-gmsd", "mdsi", "haarpsi", "swd", "fid-kid"))


def test_cli_start_does_not_import_heavy_modules() -> None:
    code = ("import sys, img2dist; heavy = {'torch', 'piqa', 'matplotlib', 'sklearn', 'scipy'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_quality_command_on_one_folder_of_distinct_images_given_twice(tmp_path: Path) -> None:
    import piqa
    import torch

    n = 6
    arrays = [np.random.default_rng(20 + i).integers(0, 256, (48, 48, 3), dtype=np.uint8) for i in range(n)]
    for i, arr in enumerate(arrays):
        make_image(tmp_path / "set" / f"s{i}.png", size=(48, 48), seed=20 + i)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "set" / f"s{i}.png")), arr)

    def quality(seed: int, name: str) -> dict:
        out = tmp_path / name
        result = run("quality", tmp_path / "set", tmp_path / "set", "--seed", seed, "--json", out)
        assert result.exit_code == 0, result.output
        assert "FID/KID skipped" in result.output and "ssim" in result.output
        return json.loads(out.read_text())

    first, again, other = quality(0, "a.json"), quality(0, "b.json"), quality(1, "c.json")
    assert first == again  # the same seed: the same pairs, patches and projections
    # Identical distributions: SWD 0 at every level, every fake inside the reals' manifold and back.
    levels = first["swd"]["levels"]
    assert levels and all(v == pytest.approx(0, abs=1e-9) for v in levels.values())
    assert first["swd"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert first["precision_recall"]["precision"] == 1.0 == first["precision_recall"]["recall"]
    # Each fake against a random real drawn with the seed (sorted file order): SSIM 1 only for the
    # fakes that drew themselves, so the mean is below 1 and changes with the seed.
    ssim = {}
    for seed, report in ((0, first), (1, other)):
        partner = np.random.default_rng(seed).integers(0, n, size=n)
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
        expected = piqa.SSIM(reduction="none")(x, x[torch.from_numpy(partner)]).double()
        assert report["paired"]["pairs"] == n and report["paired"]["seed"] == seed
        ssim[seed] = report["paired"]["metrics"]["ssim"]["mean"]
        assert ssim[seed] == pytest.approx(float(expected.mean()), abs=1e-6)
        assert (partner != np.arange(n)).any() and ssim[seed] < 0.99
    assert ssim[0] != pytest.approx(ssim[1], abs=1e-6)


def test_embedding_of_several_folders_groups_them_by_default(tmp_path: Path, groups: list[Path]) -> None:
    """`embedding map.png reals fakes` colours and counts each folder apart; --no-group pools them."""
    def groups_of(out: Path, *flags: str) -> list[str]:
        result = run("embedding", out, *groups, "--features", "pixels", "-q", *flags)
        assert result.exit_code == 0, result.output
        return json.loads(out.with_suffix(".json").read_text())["groups"]

    assert groups_of(tmp_path / "a.png") == ["reals", "fakes"]
    assert groups_of(tmp_path / "b.png", "--no-group") == ["images"]
    result = run("embedding", tmp_path / "c.png", *groups, "--no-group", "--real", groups[0])
    assert result.exit_code == 1
    assert result.output == "Error: --no-group: --real needs a group per IMAGE_PATH\n"
