"""dcgan.analysis.embed and report: embeddings, group statistics, and the embedding pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from dcgan.analysis import embed
from dcgan.analysis.color import image_palettes, palette_distances
from dcgan.analysis.embed import (
    EMBEDDINGS,
    EmbedOptions,
    classical_mds,
    group_statistics,
    one_nn_two_sample,
    silhouette,
    smacof,
)
from dcgan.analysis.features import FeatureOptions
from dcgan.analysis.report import EmbeddingOptions, embed_images
from tests.conftest import TRAINING_DATA, make_image

QUIET = EmbedOptions(progress=False)


def _pairwise(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x[:, None] - x[None], axis=-1)


def augment(src: Path, folder: Path, n: int, seed: int) -> None:
    """n small augmented copies of `src`: turns, flips, crops, slight brightness changes."""
    rng = np.random.default_rng(seed)
    base = Image.open(src).convert("RGB").resize((48, 48))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = base.rotate(90 * int(rng.integers(4)))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x, y = rng.integers(0, 5, size=2)
        img = img.crop((x, y, x + 40, y + 40))
        img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.97, 1.03)))
        img.save(folder / f"{src.stem[-6:]}_{i}.png")


def two_distinct_training_images() -> tuple[Path, Path]:
    """The two training images whose palettes are farthest apart."""
    paths = sorted(TRAINING_DATA.glob("*.jpg"))[:20]
    d = palette_distances(image_palettes(paths).centroids)
    i, j = np.unravel_index(np.argmax(d + d.T), d.shape)
    return paths[i], paths[j]


@pytest.fixture
def three_groups(tmp_path: Path) -> list[Path]:
    a, b = two_distinct_training_images()
    augment(a, tmp_path / "lesion_a", 8, 1)
    augment(b, tmp_path / "lesion_b", 8, 2)
    rng = np.random.default_rng(3)
    for i in range(8):
        make_image(tmp_path / "flat" / f"flat{i}.png", size=(24, 24),
                   color=tuple(int(v) for v in np.array([40, 90, 230]) + rng.integers(-6, 7, 3)))
    return [tmp_path / "lesion_a", tmp_path / "lesion_b", tmp_path / "flat"]


@pytest.mark.parametrize("method", ["mds", "tsne", "pca"])
def test_embedding_separates_clearly_different_groups(three_groups: list[Path], tmp_path: Path,
                                                      method: str) -> None:
    opts = EmbeddingOptions(method=method, group=True, embed=QUIET,
                            feature=FeatureOptions(cache_dir=tmp_path / "cache", progress=False))
    result = embed_images(tmp_path / "out" / "map.png", [str(p) for p in three_groups], opts)
    assert result.stats["silhouette"] > 0.5
    coords, labels = result.embedding.coords, result.labels
    centers = np.stack([coords[labels == g].mean(0) for g in range(3)])
    nearest = np.linalg.norm(coords[:, None] - centers[None], axis=-1).argmin(1)
    assert np.array_equal(nearest, labels)


def test_pixel_features_separate_groups_too(three_groups: list[Path], tmp_path: Path) -> None:
    opts = EmbeddingOptions(features="pixels", group=True, embed=QUIET,
                            feature=FeatureOptions(cache_dir=None, pixel_size=8, progress=False))
    result = embed_images(tmp_path / "map.svg", [str(p) for p in three_groups], opts)
    assert result.stats["silhouette"] > 0.5
    assert result.features.vectors.shape == (24, 8 * 8 * 3)


def test_classical_mds_recovers_a_planar_layout() -> None:
    x = np.random.default_rng(0).normal(size=(30, 2))
    d = _pairwise(x)
    np.testing.assert_allclose(_pairwise(classical_mds(d)), d, atol=1e-8)


def test_truncated_eigensolver_agrees_with_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(1).normal(size=(60, 3)) * [3, 2, 0.1]
    d = _pairwise(x)
    dense = classical_mds(d)
    monkeypatch.setattr(embed, "DENSE_EIGEN_LIMIT", 10)
    np.testing.assert_allclose(np.abs(classical_mds(d)), np.abs(dense), atol=1e-6)


def test_smacof_lowers_stress_on_non_euclidean_distances() -> None:
    rng = np.random.default_rng(2)
    d = _pairwise(rng.normal(size=(40, 5)))  # 5-D distances: no exact 2-D layout
    start = classical_mds(d)
    _, stress0, _ = smacof(d, start, 0)
    x, stress, done = smacof(d, start, 50)
    assert stress < stress0 and done > 0
    assert x.shape == (40, 2)


def test_every_method_is_registered_and_deterministic() -> None:
    rng = np.random.default_rng(3)
    v = rng.random((12, 6)).astype(np.float32)
    d = _pairwise(v.astype(np.float64))
    for name, method in EMBEDDINGS.items():
        a, b = method(d, v, QUIET), method(d, v, QUIET)
        assert a.coords.shape == (12, 2), name
        np.testing.assert_allclose(a.coords, b.coords)


def test_silhouette_matches_scikit_learn() -> None:
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, (10, 2)), rng.normal(3, 1, (7, 2)), rng.normal((0, 4), 1, (1, 2))])
    labels = np.array([0] * 10 + [1] * 7 + [2])
    d = _pairwise(x)
    assert silhouette(d, labels) == pytest.approx(silhouette_score(d, labels, metric="precomputed"))
    assert silhouette(d, np.zeros(18, int)) is None


def test_group_statistics_and_copy_detection() -> None:
    rng = np.random.default_rng(5)
    reals = rng.normal(0, 1, (20, 2))
    fakes = np.concatenate([reals[:2] + 1e-9, rng.normal(0, 1, (6, 2))])  # two near-copies
    far = rng.normal(20, 1, (8, 2))
    x = np.concatenate([reals, fakes, far])
    labels = np.array([0] * 20 + [1] * 8 + [2] * 8)
    d = _pairwise(x)
    paths = [f"img{i}" for i in range(len(x))]
    stats = group_statistics(d, x, labels, ["real", "fake", "far"], paths, real=0)
    assert [g["size"] for g in stats["groups"]] == [20, 8, 8]
    matrix = np.array(stats["mean_distance_between_groups"]["matrix"])
    assert matrix[0, 2] > 10 * matrix[0, 1]
    np.testing.assert_allclose(matrix, matrix.T)
    fake, far_group = stats["real_vs_fake"]["fakes"]
    assert fake["likely_copies"] == 2
    assert {p["fake"] for p in fake["closest_pairs"][:2]} == {"img20", "img21"}
    assert all(p["likely_copy"] for p in fake["closest_pairs"][:2])
    assert far_group["likely_copies"] == 0 and far_group["one_nn_accuracy"] == 1.0
    assert stats["groups"][0]["spread_embedding"] > 0


def test_one_nn_two_sample_accuracy() -> None:
    rng = np.random.default_rng(6)
    x = np.concatenate([rng.normal(0, 1, (30, 2)), rng.normal(10, 1, (30, 2))])
    d = _pairwise(x)
    assert one_nn_two_sample(d, np.arange(30), np.arange(30, 60))["one_nn_accuracy"] == 1.0
    mixed = one_nn_two_sample(d, np.arange(0, 60, 2), np.arange(1, 60, 2))["one_nn_accuracy"]
    assert 0.3 < mixed < 0.7
