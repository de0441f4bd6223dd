"""Feature kinds for the embedding: paths -> one vector per image and a pairwise distance matrix.

`FEATURES` maps a name (the CLI's `--features`) to a function; a new kind is one function and one
entry. Each function decodes every image at most once, caches its per-image features on disk (see
`cache.py`), and computes the distance matrix as one vectorized operation.

* color:  the 2018 tool's k-means palette and its sum-of-nearest-centroid distance, symmetrized
          (the mean of both directions) because MDS, t-SNE and the statistics need d(a,b) = d(b,a).
          Vectors (for PCA) are the centroids sorted by luminance.
* color-2018: the same definition computed exactly as the 2018 tool did (scikit-learn's shuffle and
          KMeans per image, each pair's distance taken in input order and mirrored): slow, for
          reproducing published 2018 figures.
* pixels: each image center-cropped and downscaled to `pixel_size` squared, flattened; distance is
          the root-mean-square pixel difference in [0, 1]. This is the space in which the
          GAN_human_tissue project compared fakes with reals (t-SNE and PCA on pixels): it sees
          layout and shape, which a palette ignores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..images import decode_images
from ..resources import BLOCK_BYTES, cpu_count
from .cache import FeatureCache, file_digest
from .color import (
    cache_namespace,
    canonical_vectors,
    distances_2018,
    image_palettes,
    palette_distances,
    palettes_2018,
)

if TYPE_CHECKING:
    from tqdm import tqdm


@dataclass
class FeatureOptions:
    """Parameters of every feature kind (each kind reads the ones it needs)."""

    centroids: int = 5
    sample_points: float = 0.3
    seed: int = 0
    pixel_size: int = 32
    cache_dir: Path | None = None
    progress: bool = True


@dataclass
class FeatureSet:
    """Features of the images that could be read, in the order of `paths`."""

    paths: list[Path]
    index: list[int]  # position of each kept image in the input list
    vectors: np.ndarray  # (N, D) float32, the input of PCA
    distances: np.ndarray  # (N, N) float32 (10,000 images: 400 MB; color-2018: float64), symmetric
    description: str  # one line for plot titles and the JSON
    skipped: list[str] = field(default_factory=list)
    cache_hits: int = 0


def _progress_bar(total: int, desc: str, enabled: bool) -> tqdm:
    from tqdm import tqdm

    # disable=None: show the bar on a terminal only, never in a log file or a test.
    return tqdm(total=total, desc=desc, unit="img", disable=None if enabled else True, leave=False)


def color_features(paths: Sequence[Path], opts: FeatureOptions) -> FeatureSet:
    """k-means palettes (`opts.centroids` colors) and the symmetrized 2018 distance."""
    namespace = cache_namespace(opts.centroids, opts.sample_points, opts.seed)
    cache = FeatureCache(opts.cache_dir, namespace, row_shape=(opts.centroids, 3))
    with _progress_bar(len(paths), "color features", opts.progress) as bar:
        palettes = image_palettes(paths, opts.centroids, opts.sample_points, opts.seed, cache, bar.update)
    d = palette_distances(palettes.centroids)
    d += d.T
    d *= np.float32(0.5)
    return FeatureSet(palettes.paths, palettes.index, canonical_vectors(palettes.centroids), d,
                      f"color: {opts.centroids} k-means colors on {opts.sample_points:.0%} of the pixels",
                      palettes.skipped, palettes.cache_hits)


def color_2018_features(paths: Sequence[Path], opts: FeatureOptions) -> FeatureSet:
    """The 2018 tool's palettes and distance matrix, computed exactly as it did (scikit-learn; slow).

    For reproducing published 2018 figures: one scikit-learn KMeans per image, and the 2018
    `mds_embedding` matrix (each pair's distance FROM the earlier image TO the later one, mirrored),
    float64. Its cache namespace carries the scikit-learn version, whose KMeans defaults decide it.
    """
    namespace = cache_namespace(opts.centroids, opts.sample_points, opts.seed, "2018")
    cache = FeatureCache(opts.cache_dir, namespace, row_shape=(opts.centroids, 3))
    with _progress_bar(len(paths), "color features (2018, scikit-learn)", opts.progress) as bar:
        palettes = palettes_2018(paths, opts.centroids, opts.sample_points, opts.seed, cache, bar.update)
    vectors = canonical_vectors(palettes.centroids.astype(np.float32))
    return FeatureSet(palettes.paths, palettes.index, vectors, distances_2018(palettes.centroids),
                      f"color (2018 computation): {opts.centroids} scikit-learn KMeans colors on "
                      f"{opts.sample_points:.0%} of the pixels", palettes.skipped, palettes.cache_hits)


def pixel_features(paths: Sequence[Path], opts: FeatureOptions) -> FeatureSet:
    """Center-cropped images downscaled to `opts.pixel_size` squared; RMS pixel distance."""
    size = opts.pixel_size
    cache = FeatureCache(opts.cache_dir, f"pixels-{size}", row_shape=(size * size * 3,))
    rows: list[np.ndarray | None] = [None] * len(paths)
    skipped: list[str] = []
    bar = _progress_bar(len(paths), "pixel features", opts.progress)
    with ThreadPoolExecutor(cpu_count()) as pool, bar:
        digests = list(pool.map(_digest_or_none, paths))
        readable = [i for i, d in enumerate(digests) if d is not None]
        skipped += [f"{paths[i]}: cannot read" for i, d in enumerate(digests) if d is None]
        for i, row in zip(readable, cache.get([digests[i] for i in readable]), strict=True):
            rows[i] = row
        todo = [i for i in readable if rows[i] is None]
        bar.update(len(readable) - len(todo) + len(paths) - len(readable))

        decoded = decode_images([paths[i] for i in todo], (size, size), workers=cpu_count())
        for i, (_, pixels, error) in zip(todo, decoded, strict=True):
            bar.update(1)
            if error is not None:
                skipped.append(error)
                continue
            rows[i] = pixels.reshape(-1)
            cache.put([digests[i]], [rows[i]])
    cache.save()
    kept = [i for i in range(len(paths)) if rows[i] is not None]
    vectors = (np.stack([rows[i] for i in kept]).astype(np.float32) / 255 if kept
               else np.empty((0, size * size * 3), np.float32))
    return FeatureSet([Path(paths[i]) for i in kept], kept, vectors, rms_distances(vectors),
                      f"pixels: {size}x{size} downscaled images, RMS difference", skipped,
                      len(readable) - len(todo))


def _digest_or_none(path: Path) -> str | None:
    try:
        return file_digest(path)
    except OSError:
        return None


def rms_distances(vectors: np.ndarray) -> np.ndarray:
    """Root-mean-square difference between all pairs of rows, (N, N) float32, zero diagonal.

    One Gram-matrix product in float64 (|a|^2 + |b|^2 - 2 a.b), blocked by rows to bound memory.
    """
    v = vectors.astype(np.float64)
    n, dim = v.shape
    sq = (v**2).sum(1)
    out = np.empty((n, n), np.float32)
    rows = max(1, BLOCK_BYTES // (8 * max(n, 1)))
    for start in range(0, n, rows):
        block = sq[start: start + rows, None] + sq[None, :] - 2.0 * (v[start: start + rows] @ v.T)
        out[start: start + rows] = np.sqrt(np.maximum(block, 0.0) / max(dim, 1))
    np.fill_diagonal(out, 0.0)
    return out


FEATURES: dict[str, Callable[[Sequence[Path], FeatureOptions], FeatureSet]] = {
    "color": color_features,
    "color-2018": color_2018_features,
    "pixels": pixel_features,
}
