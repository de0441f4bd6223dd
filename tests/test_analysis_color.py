"""dcgan.analysis.color: batched k-means palettes and the 2018 centroid distance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan.analysis.cache import FeatureCache
from dcgan.analysis.color import (
    batched_kmeans,
    canonical_vectors,
    image_distance,
    image_palettes,
    palette_distances,
)
from dcgan.errors import UserError
from tests.conftest import make_image


def _brute_force(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = sum(min(np.linalg.norm(ca - cb) for cb in b[j]) for ca in a[i])
    return out


def test_palette_distances_match_the_2018_definition() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((6, 5, 3)), rng.random((4, 3, 3))
    np.testing.assert_allclose(palette_distances(a, b), _brute_force(a, b), atol=2e-5)
    d = palette_distances(a)
    assert np.all(np.diag(d) == 0)
    assert np.all(d[~np.eye(6, dtype=bool)] > 0)
    assert not np.allclose(d, d.T)  # the 2018 distance is not symmetric


def test_batched_kmeans_finds_planted_colors() -> None:
    rng = np.random.default_rng(1)
    colors = np.array([[0.1, 0.1, 0.1], [0.9, 0.2, 0.2], [0.2, 0.8, 0.9]], np.float32)
    samples = []
    for n in (3000, 500, 4000):  # different sizes share one call
        pts = colors[rng.integers(0, 3, n)] + rng.normal(0, 0.02, (n, 3)).astype(np.float32)
        samples.append(pts[rng.permutation(n)].astype(np.float32))
    centers = batched_kmeans(samples, rng.random((3, 3)), 3)
    for c in centers:
        found = np.sort(canonical_vectors(c[None])[0].reshape(3, 3), axis=0)
        np.testing.assert_allclose(found, np.sort(colors, axis=0), atol=0.02)


def test_flat_image_gets_its_color(tmp_path: Path) -> None:
    path = make_image(tmp_path / "flat.png", color=(255, 0, 0))
    pal = image_palettes([path], k=5)
    np.testing.assert_allclose(pal.centroids[0], np.tile([1.0, 0.0, 0.0], (5, 1)), atol=1e-6)


def test_palette_does_not_depend_on_the_other_images(tmp_path: Path) -> None:
    paths = [make_image(tmp_path / f"n{i}.png", size=(40 + 7 * i, 30), seed=i) for i in range(5)]
    alone = image_palettes(paths[2:3]).centroids[0]
    together = image_palettes(paths).centroids[2]
    assert np.array_equal(alone, together)


def test_identical_files_share_one_palette(tmp_path: Path) -> None:
    a = make_image(tmp_path / "a" / "x.png", seed=3)
    b = tmp_path / "b" / "copy.png"
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    other = make_image(tmp_path / "c.png", seed=4)
    pal = image_palettes([a, other, b])
    assert np.array_equal(pal.centroids[0], pal.centroids[2])
    assert palette_distances(pal.centroids)[0, 2] == 0


def test_modes_sizes_and_unreadable_files(tmp_path: Path) -> None:
    paths = [make_image(tmp_path / "rgb.png", size=(50, 20), seed=1),
             make_image(tmp_path / "gray.png", size=(9, 31), seed=2, mode="L"),
             make_image(tmp_path / "rgba.png", seed=3, mode="RGBA"),
             make_image(tmp_path / "pal.png", seed=4, mode="P"),
             make_image(tmp_path / "tiny.png", size=(2, 1), seed=5)]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    pal = image_palettes([*paths, tmp_path / "broken.jpg", tmp_path / "empty.png"], k=4)
    assert [p.name for p in pal.paths] == [p.name for p in paths]
    assert pal.centroids.shape == (5, 4, 3)
    assert np.isfinite(pal.centroids).all()
    assert len(pal.skipped) == 2
    assert any("broken.jpg" in s for s in pal.skipped) and any("empty.png" in s for s in pal.skipped)


def test_image_distance_properties(tmp_path: Path) -> None:
    a = make_image(tmp_path / "a.png", seed=1)
    b = make_image(tmp_path / "b.png", color=(10, 200, 30))
    assert image_distance(a, a) == 0
    assert image_distance(a, b) > 0
    assert image_distance(a, b, symmetric=True) == pytest.approx(image_distance(b, a, symmetric=True))
    assert image_distance(a, b, symmetric=True) == pytest.approx((image_distance(a, b)
                                                                  + image_distance(b, a)) / 2)
    with pytest.raises(UserError, match="centroids"):
        image_distance(a, b, k=0)
    (tmp_path / "bad.png").write_bytes(b"xx")
    with pytest.raises(UserError, match=r"bad\.png"):
        image_distance(a, tmp_path / "bad.png")


def test_canonical_vectors_ignore_centroid_order() -> None:
    c = np.random.default_rng(2).random((1, 5, 3)).astype(np.float32)
    assert np.array_equal(canonical_vectors(c), canonical_vectors(c[:, ::-1]))


def test_cached_palettes_equal_fresh_ones(tmp_path: Path) -> None:
    paths = [make_image(tmp_path / f"i{i}.png", seed=i) for i in range(3)]
    cache = FeatureCache(tmp_path / "cache", "color-test")
    fresh = image_palettes(paths, cache=cache)
    assert fresh.cache_hits == 0
    again = image_palettes(paths, cache=FeatureCache(tmp_path / "cache", "color-test"))
    assert again.cache_hits == 3
    assert np.array_equal(fresh.centroids, again.centroids)


def test_gray_image_is_gray(tmp_path: Path) -> None:
    path = tmp_path / "g.png"
    Image.fromarray(np.full((10, 10), 128, np.uint8), mode="L").save(path)
    c = image_palettes([path], k=2).centroids[0]
    np.testing.assert_allclose(c, 128 / 255, atol=1e-6)


def _noisy_samples(sizes: list[int], seed: int) -> list[np.ndarray]:
    """Point sets in random order: a few colors plus noise, slow enough to converge to tell apart."""
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        colors = rng.random((6, 3)).astype(np.float32)
        pts = colors[rng.integers(0, 6, n)] + rng.normal(0, 0.08, (n, 3)).astype(np.float32)
        out.append(np.clip(pts, 0, 1).astype(np.float32))
    return out


def test_batched_palette_equals_the_palette_alone_on_both_sides_of_coarse_points() -> None:
    # Sizes around COARSE_POINTS (2048) share buckets: one of <= 2048 points must not be polished
    # because a bucket-mate has more, and a set must stop at its own convergence, not its mates'.
    sizes = [1500, 1700, 1800, 1900, 2000, 2048, 2049, 2100, 2300, 2500, 4000, 5000, 6000, 7680, 9000]
    samples = _noisy_samples(sizes * 2, seed=5)
    uniforms = np.random.default_rng(6).random((len(samples), 5))
    together = batched_kmeans(samples, uniforms, 5)
    for i, s in enumerate(samples):
        assert np.array_equal(batched_kmeans([s], uniforms[i: i + 1], 5)[0], together[i]), len(s)


def test_image_palette_alone_equals_together_across_2048_sample_points(tmp_path: Path) -> None:
    # 30% samples of 1728 .. 2592 points: both sides of COARSE_POINTS, within one size bucket.
    sides = [(80, 72), (80, 76), (80, 80), (80, 84), (80, 88), (90, 90), (96, 90)]
    paths = [make_image(tmp_path / f"s{i}.png", size=size, seed=20 + i) for i, size in enumerate(sides)]
    together = image_palettes(paths).centroids
    for i, path in enumerate(paths):
        assert np.array_equal(image_palettes([path]).centroids[0], together[i]), path.name


def test_chunks_are_bounded_by_sample_points_not_image_count(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from dcgan.analysis import color

    sizes = [(40, 30), (200, 150), (64, 64), (30, 90), (160, 160), (300, 200), (12, 9), (100, 100)]
    paths = [make_image(tmp_path / f"m{i}.png", size=size, seed=40 + i) for i, size in enumerate(sizes)]
    reference = image_palettes(paths).centroids  # all in one group: 7,000 .. 18,000 points each
    calls: list[list[int]] = []
    real = color.batched_kmeans

    def recording(samples: list[np.ndarray], uniforms: np.ndarray, k: int) -> np.ndarray:
        calls.append([len(s) for s in samples])
        return real(samples, uniforms, k)

    monkeypatch.setattr(color, "batched_kmeans", recording)
    monkeypatch.setattr(color, "CHUNK_POINTS", 20_000)
    chunked = image_palettes(paths).centroids
    assert len(calls) > 1
    assert all(sum(c) <= 20_000 or len(c) == 1 for c in calls)  # a larger sample goes on its own
    assert sorted(n for c in calls for n in c) == sorted(int(0.3 * w * h) for w, h in sizes)
    assert np.array_equal(chunked, reference)


# ---------------------------------------------------------------------------------------------------
# The 2018 computation and the fast method's agreement with it

TRAINING = Path(__file__).resolve().parents[1] / "training_data"


def _quantization_2018(path: Path, ncolors: int = 5, sample_points: float = 0.3) -> np.ndarray:
    """A straight transcription of the 2018 tool's `color_quantization` (mapa17/DCGAN img2dist.py)."""
    import sklearn.cluster
    import sklearn.utils

    img = np.array(Image.open(path), dtype=np.float64) / 255
    w, h, d = img.shape
    image_array = np.reshape(img, (w * h, d))
    nsample_points = int(w * h * sample_points)
    image_array_sample = sklearn.utils.shuffle(image_array, random_state=0)[:nsample_points]
    return sklearn.cluster.KMeans(n_clusters=ncolors, random_state=0).fit(image_array_sample).cluster_centers_


def _centroid_distance_2018(c1: np.ndarray, c2: np.ndarray) -> float:
    from sklearn.metrics import pairwise_distances_argmin_min

    return float(pairwise_distances_argmin_min(c1, c2)[1].sum())


def _mds_distances_2018(centroids: list[np.ndarray]) -> np.ndarray:
    """The 2018 `mds_embedding` distance matrix: each pair once, in input order, mirrored."""
    n = len(centroids)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = _centroid_distance_2018(centroids[i], centroids[j])
    return out


def _heldout_like(folder: Path) -> list[Path]:
    """The 2018 validation layout in small: 3 lesions x 4 `augment` copies + 2 unrelated scenes."""
    from dcgan.data.augment import augment_folder

    lesions = sorted(TRAINING.glob("*.jpg"))[:3]
    for g, src in enumerate(lesions):
        (folder / f"src{g}").mkdir(parents=True)
        (folder / f"src{g}" / src.name).write_bytes(src.read_bytes())
        augment_folder(folder / f"src{g}", 4, output=folder / "sets" / f"S{g}", seed=g)
    yy, xx = np.mgrid[0:96, 0:128] / 96
    for i, (a, b) in enumerate([((20, 120, 230), (240, 220, 90)), ((10, 90, 20), (200, 40, 40))]):
        img = np.array(a) * (1 - yy[..., None]) + np.array(b) * yy[..., None]
        img[(yy - 0.5) ** 2 + (xx - 0.6 - 0.2 * i) ** 2 < 0.05] = (250, 250, 250)
        Image.fromarray(img.astype(np.uint8)).save(folder / "sets" / f"scene{i}.png")
    # Images only: augment also leaves its AUGMENTED.txt marker in each output folder.
    return sorted(p for p in (folder / "sets").rglob("*") if p.suffix in {".jpg", ".png"})


def test_sample_is_the_2018_shuffle() -> None:
    from sklearn.utils import shuffle

    from dcgan.analysis.color import sample_pixels

    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for seed in (0, 3):
        expected = shuffle(rgb.reshape(-1, 3).astype(np.float64) / 255, random_state=seed)[: int(0.3 * 600)]
        np.testing.assert_allclose(sample_pixels(rgb, 0.3, seed), expected, rtol=1e-6)


def test_method_2018_equals_a_transcription_of_the_2018_tool(tmp_path: Path) -> None:
    from dcgan.analysis.features import FEATURES, FeatureOptions

    paths = [*sorted(TRAINING.glob("*.jpg"))[:4], make_image(tmp_path / "noise.png", (40, 30), seed=1)]
    palettes = [_quantization_2018(p) for p in paths]
    expected = _mds_distances_2018(palettes)
    fs = FEATURES["color-2018"](paths, FeatureOptions(cache_dir=tmp_path / "cache", progress=False))
    assert fs.distances.dtype == np.float64
    np.testing.assert_allclose(fs.distances, expected, rtol=1e-12, atol=1e-12)
    # Not the mean of both directions: the 2018 matrix takes each pair FROM the earlier image.
    directed = np.array([[_centroid_distance_2018(a, b) for b in palettes] for a in palettes])
    assert np.abs(directed - directed.T).max() > 1e-3
    assert np.abs(fs.distances - (directed + directed.T) / 2).max() > 1e-4
    i, j = np.unravel_index(np.abs(directed - directed.T).argmax(), directed.shape)
    assert image_distance(paths[i], paths[j], method="2018") == pytest.approx(directed[i, j], rel=1e-12)
    cached = FEATURES["color-2018"](paths, FeatureOptions(cache_dir=tmp_path / "cache", progress=False))
    assert cached.cache_hits == len(paths) and np.array_equal(cached.distances, fs.distances)


def test_fast_method_ranks_pairs_as_the_2018_definition(tmp_path: Path) -> None:
    """On a small set laid out like the 2018 validation set, the fast palettes are the reference's.

    The fast method draws the reference's pixels and its k-means++ candidates (scikit-learn's
    random stream), so most palettes are within sampling noise of it; the few that its shortened
    Lloyd's iterations send to another local minimum move the rank correlation on 14 images (the
    bench measures >= 0.99 on 54-image sets).
    """
    from scipy.stats import spearmanr

    from dcgan.analysis.color import palette_distances_exact, palettes_2018

    paths = _heldout_like(tmp_path)
    assert len(paths) == 14
    fast = image_palettes(paths).centroids
    reference = palettes_2018(paths).centroids
    pairs = np.stack([fast.astype(np.float64), reference], axis=1)
    error = [palette_distances_exact(pair)[0, 1] for pair in pairs]
    assert np.median(error) < 0.03 and sum(e < 0.07 for e in error) >= 12
    ours, ref = palette_distances(fast), palette_distances_exact(reference)
    off = ~np.eye(len(paths), dtype=bool)
    assert spearmanr(ours[off], ref[off])[0] >= 0.95
