"""Color quantization of many images at once, and the 2018 tool's distance between two palettes.

The 2018 `img2dist.py` fitted one scikit-learn KMeans per image (k colors, RGB in [0, 1], on a 30%
random sample of the pixels) and defined the distance from image A to image B as the sum, over A's
centroids, of the Euclidean distance to the closest centroid of B. This module computes the same
quantity, but for all images together:

* Every image gets the 2018 tool's own random draws: its pixel sample is the first 30% of
  `sklearn.utils.shuffle(random_state=seed)` (`shuffle_order`), and its greedy k-means++ seeding
  (scikit-learn's: 2 + int(log k) candidates per center) is driven by the numbers
  `KMeans(random_state=seed)` draws (`seeding_uniforms`), with float64 cumulative sums, so it picks
  the reference's seed pixels. That is what makes the fast method agree with the 2018 definition on
  unseen images (Spearman >= 0.99 on held-out sets, docs/img2dist.md) rather than only on average:
  a k-means with other random numbers lands in another local minimum on many images.
* k-means runs batched over every image of a size bucket at once (numpy arrays of shape
  (channel, image, point)). Lloyd's iterations first run to convergence on the first
  `COARSE_POINTS` of each image's (randomly ordered) sample, then `FULL_ITERATIONS` on the whole
  sample: a fraction of the cost of converging on the whole sample, and the same local minimum on
  nearly every image. When an image's iterations stop is decided per image.
* The draws depend only on `seed` and the image's size, so an image's palette does not depend on
  which other images are in the run, and cached and freshly computed palettes are identical. The
  batching only decides what is computed together, never the result.
* `--method 2018` / `--features color-2018` (`palettes_2018`, `distances_2018`) run scikit-learn
  itself, exactly as the 2018 tool did, for reproducing published 2018 figures.
* Memory is bounded by sample points, not image count: the images of a chunk are quantized in
  groups of at most `CHUNK_POINTS` sample points (~2 MP of 30% samples: 256 images of 160x160, or
  one 6000x4000 original on its own), and large samples are scored in slices of `ASSIGN_POINTS`.
* The pairwise distance matrix is one blocked, vectorized computation (no loop over pairs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..images import ImageReadError, load_array
from ..resources import BLOCK_BYTES, cpu_count
from .cache import FeatureCache, file_digest

ALGORITHM = "v3"  # part of the cache namespace: palettes of an older algorithm are not reused
N_INIT = 1  # k-means++ seedings per image (scikit-learn >= 1.4 runs one); the lowest inertia wins
COARSE_POINTS = 2048  # Lloyd's iterations to convergence on this many sampled pixels first ...
FULL_ITERATIONS = 3  # ... then this many on the whole sample
MAX_ITERATIONS = 300  # scikit-learn's max_iter
TOLERANCE = 1e-4  # times the mean per-channel variance of the sample, as scikit-learn's KMeans
CHUNK_IMAGES = 256  # images handed to one worker at a time (10,000 images: 40 chunks) ...
CHUNK_POINTS = 2**21  # ... quantized together while their samples total at most this many points
ASSIGN_POINTS = 2**18  # points of one image scored against its centers at a time
EXACT_BELOW = 0.02  # palette distances below this are recomputed in float64


@dataclass
class Palettes:
    """The quantization result: `centroids[i]` (k, 3) RGB in [0, 1] belongs to `paths[i]`."""

    paths: list[Path]
    index: list[int]  # position of each kept image in the input list
    centroids: np.ndarray
    digests: list[str]
    skipped: list[str] = field(default_factory=list)
    cache_hits: int = 0


@lru_cache(maxsize=8)
def shuffle_order(n: int, seed: int) -> np.ndarray:
    """The order in which `sklearn.utils.shuffle(x, random_state=seed)` puts n rows.

    The 2018 tool sampled every image this way (the same permutation for every image of a size):
    drawing the same pixels as the reference removes the sampling noise from the comparison.
    """
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    order.flags.writeable = False
    return order


def sample_pixels(rgb: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """The 2018 tool's pixel sample of an (H, W, 3) uint8 image, as float32 RGB in [0, 1].

    The first int(fraction * H * W) pixels (at least one) in `shuffle_order`; a random order, so
    its first n rows are a random subset as well.
    """
    pixels = rgb.reshape(-1, 3)
    m = min(len(pixels), max(1, int(fraction * len(pixels))))
    out = pixels[shuffle_order(len(pixels), seed)[:m]].astype(np.float32)
    out *= np.float32(1 / 255)
    return out


def batched_kmeans(samples: Sequence[np.ndarray], uniforms: np.ndarray, k: int) -> np.ndarray:
    """k-means of many point sets at once; returns centroids (len(samples), k, 3) float32.

    `samples[i]` is an (n_i, 3) float32 array in random order, `uniforms[i]` (inits, k) numbers in
    [0, 1) that drive image i's k-means++ seedings. Sets of similar size are padded into one array and
    processed together; padding points carry zero weight.
    """
    uniforms = np.asarray(uniforms)
    if uniforms.ndim == 2:  # one seeding per image
        uniforms = uniforms[:, None, :]
    out = np.empty((len(samples), k, 3), np.float32)
    order = np.argsort([len(s) for s in samples], kind="stable")
    start = 0
    while start < len(order):
        # A bucket: sizes within 25% of its smallest member, so padding wastes little.
        smallest = len(samples[order[start]])
        stop = start + 1
        while stop < len(order) and len(samples[order[stop]]) <= 1.25 * smallest:
            stop += 1
        idx = order[start:stop]
        out[idx] = _kmeans_bucket([samples[i] for i in idx], uniforms[idx], k)
        start = stop
    return out


def _kmeans_bucket(samples: list[np.ndarray], uniforms: np.ndarray, k: int) -> np.ndarray:
    """Batched k-means for one size bucket: `uniforms` (sets, inits, k) drive the seedings.

    Points are stored channel-major, x[c, set, point], zero-padded to the longest set, so that one
    channel of all sets is a contiguous array (what `bincount` wants) and a set's points are a
    (3, n) matrix (what a matrix product wants). Each seeding runs to convergence on the coarse
    subset (the seedings of an image are extra sets in the batch); the one of lowest inertia there
    goes on to convergence on the whole sample. Several seedings avoid most of the poor local
    minima that a single k-means++ seeding falls into, which is what made us disagree with the
    2018 definition on images with few distinct colors.
    """
    counts = np.array([len(s) for s in samples])
    n_sets, inits = uniforms.shape[:2]
    if n_sets == 1:  # a view, not a copy (a large image is often alone in its bucket)
        x = np.asarray(samples[0], np.float32).T[:, None, :]
    else:
        x = np.zeros((3, n_sets, counts.max()), np.float32)
        for i, s in enumerate(samples):
            x[:, i, : len(s)] = s.T
    coarse = min(COARSE_POINTS, x.shape[2])
    cc = np.minimum(counts, coarse)
    # Convergence tolerance relative to each sample's color variance, as scikit-learn's.
    var = np.array([x[:, i, :n].var(axis=1, dtype=np.float64).mean() for i, n in enumerate(counts)])
    tol = TOLERANCE * np.maximum(var, 1e-12)
    # Seeded on the whole sample (the reference's draws pick the same pixels only there), then
    # Lloyd's iterations on the first `coarse` points of the (randomly ordered) sample.
    xs = np.repeat(x, inits, axis=1) if inits > 1 else x
    ci, ti = np.repeat(cc, inits), np.repeat(tol, inits)
    centers = _kmeans_plus_plus(xs, np.repeat(counts, inits), uniforms.reshape(n_sets * inits, -1), k)
    xc = np.ascontiguousarray(xs[:, :, :coarse])
    centers = _lloyd(xc, ci, centers, MAX_ITERATIONS, ti)
    if inits > 1:
        best = _inertia(xc, ci, centers).reshape(n_sets, inits).argmin(axis=1)
        centers = centers.reshape(n_sets, inits, k, 3)[np.arange(n_sets), best]
    # Then the whole sample, for the samples larger than the coarse subset (decided per image: a
    # sample of <= COARSE_POINTS points was fitted whole already, whatever its bucket-mates).
    full = counts > coarse
    if full.all():
        centers = _lloyd(x, counts, centers, FULL_ITERATIONS, tol)
    elif full.any():
        xp = np.ascontiguousarray(x[:, full, : counts[full].max()])
        centers[full] = _lloyd(xp, counts[full], centers[full], FULL_ITERATIONS, tol[full])
    return centers


def _inertia(x: np.ndarray, counts: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Sum of squared distances of each set's points to their nearest center (float64), (sets,)."""
    labels = _assign(x, counts, centers)
    padded = np.concatenate([centers, np.zeros((len(centers), 1, 3), centers.dtype)], axis=1)
    total = np.zeros(len(centers))
    for c in range(3):  # padding points are 0 and are assigned the extra zero center: they add 0
        diff = x[c] - np.take_along_axis(padded[:, :, c], labels, axis=1)
        total += np.square(diff, dtype=np.float64).sum(axis=1)
    return total


def _assign(x: np.ndarray, counts: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest center of every point, (sets, points); padding points get index k.

    Per set, |c|^2 - 2 c.x for the k centers (the |x|^2 term does not change the nearest center)
    and a running minimum over them, for many small sets at once (blocks of about `ASSIGN_POINTS`
    points: per-set numpy calls cost more than the arithmetic for 160x160 images). Elementwise
    numpy arithmetic rather than a matrix product: BLAS rounds differently depending on memory
    layout, and an image's palette must not depend on which other images share its batch (cached
    and fresh palettes must agree, duplicates must match).
    """
    n_sets, k = len(centers), centers.shape[1]
    n_points = x.shape[2]
    labels = np.zeros((n_sets, n_points), np.int64)
    minus_2c = centers * np.float32(-2)
    c_sq = (centers**2).sum(-1)
    sets_per_block = max(1, ASSIGN_POINTS // max(n_points, 1))
    points_per_block = n_points if sets_per_block > 1 else ASSIGN_POINTS
    for s0 in range(0, n_sets, sets_per_block):
        s1 = min(n_sets, s0 + sets_per_block)
        m, m_sq = minus_2c[s0:s1], c_sq[s0:s1]
        for p0 in range(0, n_points, points_per_block):  # slices bound the (sets, points) scores
            p1 = min(n_points, p0 + points_per_block)
            xb = x[:, s0:s1, p0:p1]
            lab = labels[s0:s1, p0:p1]
            best = None
            for j in range(k):
                scores = m[:, j, 0:1] * xb[0]
                scores += m[:, j, 1:2] * xb[1]
                scores += m[:, j, 2:3] * xb[2]
                scores += m_sq[:, j: j + 1]
                if best is None:
                    best = scores
                    continue
                closer = scores < best
                np.minimum(best, scores, out=best)
                np.putmask(lab, closer, j)
    labels[np.arange(n_points)[None, :] >= counts[:, None]] = k
    return labels


def seed_trials(k: int) -> int:
    """Candidates per greedy k-means++ step: scikit-learn's 2 + int(log k)."""
    return 2 + int(np.log(k))


def seeding_uniforms(k: int, seed: int = 0, n_init: int = 1) -> np.ndarray:
    """The uniform numbers `KMeans(random_state=seed)` draws for its k-means++ seedings, (n_init, m).

    scikit-learn's greedy k-means++ draws, from `RandomState(seed)`, one number for the first
    center (`choice`) and `seed_trials(k)` for each next one (`uniform`), and Lloyd's iterations
    draw none: feeding our seeding the same numbers picks the same pixels as the reference.
    """
    m = 1 + (k - 1) * seed_trials(k)
    return np.random.RandomState(seed).random_sample((n_init, m))


@lru_cache(maxsize=8)
def _uniform_cdf(n: int) -> np.ndarray:
    """numpy's `RandomState.choice(n, p=ones(n) / n)` cdf, to pick the first center as it does."""
    cdf = np.full(n, 1.0 / n).cumsum()
    cdf /= cdf[-1]
    return cdf


def _kmeans_plus_plus(x: np.ndarray, counts: np.ndarray, uniforms: np.ndarray, k: int) -> np.ndarray:
    """Greedy k-means++ seeding for every point set at once, as scikit-learn's `_kmeans_plusplus`.

    The first center is a uniformly drawn point; for each next one, `trials` candidates are drawn
    with probability proportional to their squared distance to the nearest center so far, and the
    one that lowers the potential (sum of those squared distances) most is kept (Arthur and
    Vassilvitskii 2007). `uniforms` (sets, 1 + (k - 1) * trials) drives the draws; with
    `seeding_uniforms` they are the reference's own, and the cumulative sums are float64 like its,
    so that the candidates are the same pixels. A set with fewer distinct colors than k gets
    repeated centers (a flat image has one color, repeated k times).
    """
    b = np.arange(x.shape[1])
    trials = max(1, (uniforms.shape[1] - 1) // max(k - 1, 1))
    valid = np.arange(x.shape[2])[None, :] < counts[:, None]
    centers = np.empty((x.shape[1], k, 3), np.float32)
    first = np.array([min(int(np.searchsorted(_uniform_cdf(int(n)), u, side="right")), int(n) - 1)
                      for n, u in zip(counts, uniforms[:, 0], strict=True)])
    centers[:, 0] = x[:, b, first].T

    def sq_dist(c: np.ndarray) -> np.ndarray:
        # float32 distances (relative error ~1e-7 each, which moves a draw only when it falls that
        # close to an interval boundary), float64 sums: float32 running sums would drift by ~1e-5
        # of the total over 7,680 points, enough to pick a neighbouring pixel on a few % of draws.
        d = np.square(x[0] - c[:, 0, None])
        d += np.square(x[1] - c[:, 1, None])
        d += np.square(x[2] - c[:, 2, None])
        d *= valid
        return d

    closest = sq_dist(centers[:, 0]).astype(np.float64)
    for j in range(1, k):
        cum = np.cumsum(closest, axis=1)
        total = cum[:, -1]
        best_potential = np.full(len(b), np.inf)
        best_closest, best_center = closest, centers[:, 0]
        for t in range(trials):
            u = uniforms[:, 1 + (j - 1) * trials + t]
            pick = (cum < (u * total)[:, None]).sum(1)
            pick = np.where(total > 0, np.minimum(pick, counts - 1), first)
            candidate = x[:, b, pick].T
            trial = np.minimum(closest, sq_dist(candidate), dtype=np.float64)
            potential = trial.sum(axis=1)
            better = potential < best_potential
            best_potential = np.where(better, potential, best_potential)
            best_closest = np.where(better[:, None], trial, best_closest)
            best_center = np.where(better[:, None], candidate, best_center)
        centers[:, j] = best_center
        closest = best_closest
    return centers


def _lloyd(x: np.ndarray, counts: np.ndarray, centers: np.ndarray, max_iter: int,
           tol: np.ndarray) -> np.ndarray:
    """Lloyd's iterations until every set's squared center shift is below its `tol`.

    A set stops at its own convergence, exactly as it would alone: its centers are frozen from then
    on, however long its bucket-mates go on. Converged sets leave the arrays when a third of them are
    done (compaction), so one slow image does not keep the whole bucket computing. Centroid sums
    are one `bincount` per channel over (set, label) bins; padding points fall in a discarded extra
    bin per set. An empty cluster keeps its previous center.
    """
    centers = centers.copy()
    active = np.arange(len(centers))
    running = np.ones(len(centers), bool)  # per set in the arrays: not converged yet
    xa, na, ca, tola = x, counts, centers, tol
    k = centers.shape[1]
    for _ in range(max_iter):
        n_sets = len(ca)
        bins = _assign(xa, na, ca)
        bins += (np.arange(n_sets) * (k + 1))[:, None]  # in place: one (sets, points) int64 array
        bins = bins.ravel()
        size = n_sets * (k + 1)
        members = np.bincount(bins, minlength=size).reshape(n_sets, k + 1)[:, :k]
        sums = np.stack([np.bincount(bins, weights=xa[c].ravel(), minlength=size) for c in range(3)], -1)
        sums = sums.reshape(n_sets, k + 1, 3)[:, :k]
        new = np.where(members[..., None] > 0, sums / np.maximum(members, 1)[..., None], ca)
        new = new.astype(np.float32)
        moving = running & (((new - ca) ** 2).sum(axis=(1, 2)) > tola)
        centers[active[running]] = new[running]
        if not moving.any():
            break
        running, ca = moving, new
        if moving.sum() < 0.67 * n_sets:
            active, na, ca, tola = active[moving], na[moving], ca[moving], tola[moving]
            running = running[moving]
            xa = np.ascontiguousarray(xa[:, moving])
    return centers


def image_palettes(paths: Sequence[Path], k: int = 5, sample_points: float = 0.3, seed: int = 0,
                   cache: FeatureCache | None = None,
                   progress: Callable[[int], None] | None = None) -> Palettes:
    """Quantize every image in `paths` to `k` colors; unreadable files are skipped and named.

    Chunks of images are decoded and quantized in a thread per core (decoding and numpy's large
    elementwise operations release the GIL). `progress(n)` is called as n more images are done.
    """
    if k < 1:
        raise UserError(f"--centroids must be at least 1, got {k}")
    if not 0 < sample_points <= 1:
        raise UserError(f"--sample-points must be in (0, 1], got {sample_points}")
    workers = cpu_count()
    with ThreadPoolExecutor(workers) as pool:
        digests = list(pool.map(_digest_or_error, paths))
    skipped = [err for digest, err in digests if digest is None]
    ok = [i for i, (digest, _) in enumerate(digests) if digest is not None]
    digest_of = {i: digests[i][0] for i in ok}
    cached = cache.get([digest_of[i] for i in ok]) if cache is not None else [None] * len(ok)
    rows: dict[int, np.ndarray] = {i: c for i, c in zip(ok, cached, strict=True) if c is not None}
    if progress is not None and rows:
        progress(len(rows))
    # Identical files (the same image in two folders) are quantized once and share one palette.
    first_of: dict[str, int] = {}
    for i in ok:
        if i not in rows:
            first_of.setdefault(digest_of[i], i)
    todo = sorted(first_of.values())
    size = max(8, min(CHUNK_IMAGES, -(-len(todo) // (2 * workers))))
    chunks = [todo[s: s + size] for s in range(0, len(todo), size)]

    def quantize(chunk: list[int]) -> tuple[list[int], np.ndarray, list[str]]:
        # Decoded one by one and quantized in groups of at most CHUNK_POINTS sample points (a
        # larger sample on its own), so memory does not grow with the images' size.
        good: list[int] = []
        errors: list[str] = []
        results = [np.empty((0, k, 3), np.float32)]
        samples: list[np.ndarray] = []
        uniforms: list[np.ndarray] = []
        for i in chunk:
            sample, uniform, err = _load_sample(paths[i], k, sample_points, seed)
            if sample is None or uniform is None:
                errors.append(str(err))
                continue
            if samples and sum(map(len, samples)) + len(sample) > CHUNK_POINTS:
                results.append(batched_kmeans(samples, np.stack(uniforms), k))
                samples, uniforms = [], []
            samples.append(sample)
            uniforms.append(uniform)
            good.append(i)
        if samples:
            results.append(batched_kmeans(samples, np.stack(uniforms), k))
        return good, np.concatenate(results), errors

    with ThreadPoolExecutor(workers) as pool:
        for chunk, (good, centers, errors) in zip(chunks, pool.map(quantize, chunks), strict=True):
            rows.update(zip(good, centers, strict=True))
            skipped += errors
            if cache is not None:
                cache.put([digest_of[i] for i in good], centers)
            if progress is not None:
                progress(len(chunk))
    computed = set(todo)
    duplicates = [i for i in ok if i not in rows and i not in computed]
    for i in duplicates:
        first = first_of[digest_of[i]]
        if first in rows:
            rows[i] = rows[first]
        else:
            skipped.append(f"{paths[i]}: unreadable (same content as {paths[first]})")
    if progress is not None and duplicates:
        progress(len(duplicates))
    if cache is not None:
        cache.save()
    kept = sorted(rows)
    centroids = np.stack([rows[i] for i in kept]) if kept else np.empty((0, k, 3), np.float32)
    return Palettes([Path(paths[i]) for i in kept], kept, centroids.astype(np.float32),
                    [digest_of[i] for i in kept], skipped, len(ok) - len(first_of))


def _digest_or_error(path: Path) -> tuple[str | None, str]:
    try:
        return file_digest(path), ""
    except OSError as err:
        return None, f"{path}: cannot read ({err.strerror or err})"


def _load_sample(path: Path, k: int, fraction: float,
                 seed: int) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """Decode one image and draw its pixel sample and seeding numbers (runs in a worker thread)."""
    try:
        rgb = load_array(path)
    except ImageReadError as err:
        return None, None, str(err)
    return sample_pixels(rgb, fraction, seed), seeding_uniforms(k, seed, N_INIT), None


def palette_distances(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """The 2018 distance from every palette in `a` (Na, k, 3) to every palette in `b` (Nb, k, 3).

    `d[i, j] = sum over a[i]'s centroids of the distance to the nearest centroid of b[j]`; this is
    not symmetric. `b=None` means `b = a`, and then the diagonal is exactly zero. Returns float32.

    Speed: for each centroid j of the destination palettes, |u|^2 + |v_j|^2 - 2 u.v_j for all source
    centroids u at once (one matrix product), with a running minimum over j: contiguous float32
    operations, in row blocks of bounded memory (10,000 images are 2.5e9 centroid pairs; timing in
    docs/performance.md).
    Precision: float32 cancellation leaves ~1e-5 of noise, which matters only for (near-)identical
    palettes, so distances below `EXACT_BELOW` are recomputed exactly in float64 (copies get 0).
    """
    same = b is None
    b = a if b is None else b
    na, k, _ = a.shape
    nb, kb, _ = b.shape
    u = (a.astype(np.float32) - np.float32(0.5)).reshape(-1, 3)  # centered: smaller |u|^2, less rounding
    v = b.astype(np.float32) - np.float32(0.5)
    v_cols = [np.ascontiguousarray(v[:, j].T) for j in range(kb)]  # (3, Nb) each
    v_sq = [(v[:, j] ** 2).sum(1) for j in range(kb)]
    u_sq = (u**2).sum(1)[:, None]
    out = np.empty((na, nb), np.float32)
    rows = max(1, BLOCK_BYTES // (4 * k * max(nb, 1)))
    for start in range(0, na, rows):
        stop = min(na, start + rows)
        ub = u[start * k: stop * k]
        nearest = None
        for j in range(kb):
            d2 = ub @ v_cols[j]
            d2 *= np.float32(-2)
            d2 += v_sq[j][None, :]
            nearest = d2 if nearest is None else np.minimum(nearest, d2, out=nearest)
        nearest += u_sq[start * k: stop * k]
        np.maximum(nearest, 0, out=nearest)
        np.sqrt(nearest, out=nearest)
        out[start:stop] = nearest.reshape(stop - start, k, nb).sum(axis=1)
    close = np.argwhere(out < EXACT_BELOW)
    if len(close):
        diff = a[close[:, 0], :, None, :].astype(np.float64) - b[close[:, 1], None, :, :]
        out[close[:, 0], close[:, 1]] = np.sqrt((diff**2).sum(-1)).min(axis=2).sum(axis=1)
    if same:
        np.fill_diagonal(out, 0.0)
    return out


def canonical_vectors(centroids: np.ndarray) -> np.ndarray:
    """Palettes as comparable vectors (N, 3k): centroids sorted by luminance, then flattened.

    k-means returns the centroids in an arbitrary order, so PCA needs a canonical one; luminance
    (Rec. 601 weights) orders dark lesion colors before light skin colors.
    """
    luminance = centroids @ np.array([0.299, 0.587, 0.114], np.float32)
    order = np.argsort(luminance, axis=1, kind="stable")
    ordered = np.take_along_axis(centroids, order[..., None], axis=1)
    return ordered.reshape(len(centroids), centroids.shape[1] * 3)


def image_distance(src: Path, dest: Path, k: int = 5, sample_points: float = 0.3, seed: int = 0,
                   symmetric: bool = False, cache: FeatureCache | None = None, method: str = "fast") -> float:
    """The 2018 distance from image `src` to image `dest` (or the mean of both directions).

    `method` names an entry of `PALETTE_METHODS`: "fast" (batched k-means) or "2018" (scikit-learn).
    """
    if method not in PALETTE_METHODS:
        raise UserError(f"unknown --method {method!r}; choose from {', '.join(PALETTE_METHODS)}")
    quantize, distances = PALETTE_METHODS[method]
    palettes = quantize([src, dest], k, sample_points, seed, cache)
    if palettes.skipped:
        raise UserError(palettes.skipped[0])
    d = distances(palettes.centroids)
    return float((d[0, 1] + d[1, 0]) / 2 if symmetric else d[0, 1])


# ---------------------------------------------------------------------------------------------------
# The 2018 computation, exactly (for reproducing published 2018 figures; slow)


def read_pixels_2018(path: Path) -> np.ndarray:
    """An image's pixels as the 2018 tool read them: Pillow, no EXIF rotation, float64 in [0, 1].

    Modes other than RGB (which the 2018 tool refused) are converted to RGB.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            rgb = np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.float64)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: not a readable image ({err})") from None
    return rgb.reshape(-1, 3) / 255


def palette_2018(pixels: np.ndarray, k: int = 5, sample_points: float = 0.3, seed: int = 0) -> np.ndarray:
    """The 2018 `color_quantization`: scikit-learn's shuffle and KMeans, both with random_state=seed.

    The first int(sample_points * pixels) pixels of `sklearn.utils.shuffle`, then
    `KMeans(n_clusters=k, random_state=seed)` with this scikit-learn's defaults (the 2018 tool ran
    0.19, whose n_init was 10; 1.4 and later run one k-means++ seeding). Returns (k, 3) float64.
    """
    from sklearn.cluster import KMeans
    from sklearn.utils import shuffle
    from threadpoolctl import threadpool_limits

    n = int(len(pixels) * sample_points)
    if n < k:
        raise ValueError(f"{n} sampled pixels are fewer than {k} colors")
    sample = shuffle(pixels, random_state=seed)[:n]
    # One OpenMP thread: a few thousand points gain nothing from more, and on a busy machine the
    # spinning threads made 506 images take minutes. The result differs only in the last bits.
    with threadpool_limits(limits=1, user_api="openmp"):
        return KMeans(n_clusters=k, random_state=seed).fit(sample).cluster_centers_


def palettes_2018(paths: Sequence[Path], k: int = 5, sample_points: float = 0.3, seed: int = 0,
                  cache: FeatureCache | None = None,
                  progress: Callable[[int], None] | None = None) -> Palettes:
    """`palette_2018` of every image, one scikit-learn KMeans after the other; float64 centroids.

    Unreadable files, and images with fewer sampled pixels than colors, are skipped and named.
    The cache namespace must include the scikit-learn version (see `cache_namespace`).
    """
    if k < 1:
        raise UserError(f"--centroids must be at least 1, got {k}")
    if not 0 < sample_points <= 1:
        raise UserError(f"--sample-points must be in (0, 1], got {sample_points}")
    kept: list[int] = []
    rows: list[np.ndarray] = []
    digests: list[str] = []
    skipped: list[str] = []
    hits = 0
    for i, path in enumerate(paths):
        digest, err = _digest_or_error(Path(path))
        if digest is None:
            skipped.append(err)
        else:
            cached = cache.get([digest])[0] if cache is not None else None
            hits += cached is not None
            try:
                row = cached if cached is not None else palette_2018(read_pixels_2018(Path(path)), k,
                                                                    sample_points, seed)
            except ImageReadError as e:
                skipped.append(str(e))
            except ValueError as e:
                skipped.append(f"{path}: {e}")
            else:
                if cache is not None and cached is None:
                    cache.put([digest], [row])
                kept.append(i)
                rows.append(np.asarray(row, np.float64))
                digests.append(digest)
        if progress is not None:
            progress(1)
    if cache is not None:
        cache.save()
    centroids = np.stack(rows) if rows else np.empty((0, k, 3))
    return Palettes([Path(paths[i]) for i in kept], kept, centroids, digests, skipped, hits)


def palette_distances_exact(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """`palette_distances` in float64 from coordinate differences (no |u|^2 + |v|^2 - 2 u.v), blocked."""
    b = a if b is None else b
    na, k, _ = a.shape
    nb, kb, _ = b.shape
    out = np.empty((na, nb))
    rows = max(1, BLOCK_BYTES // (8 * 3 * k * kb * max(nb, 1)))
    for start in range(0, na, rows):
        diff = a[start: start + rows, None, :, None, :].astype(np.float64) - b[None, :, None, :, :]
        out[start: start + rows] = np.sqrt((diff**2).sum(-1)).min(axis=3).sum(axis=2)
    return out


def distances_2018(centroids: np.ndarray) -> np.ndarray:
    """The 2018 `mds_embedding` matrix: for i < j, d[i, j] = d[j, i] = the distance FROM i TO j.

    Not the mean of both directions: the 2018 tool computed each pair once, in input order, and
    mirrored it. Zero diagonal, float64.
    """
    upper = np.triu(palette_distances_exact(centroids), 1)
    return upper + upper.T


def cache_namespace(k: int, sample_points: float, seed: int, method: str = "fast") -> str:
    """The feature-cache namespace of one palette computation (algorithm, parameters, library)."""
    if method == "2018":
        import sklearn

        return f"color-2018-sklearn{sklearn.__version__}-k{k}-s{sample_points:g}-seed{seed}"
    return f"color-{ALGORITHM}-k{k}-s{sample_points:g}-seed{seed}"


# name -> (palettes of many images, directed distance matrix of the palettes)
PALETTE_METHODS: dict[str, tuple[Callable[..., Palettes], Callable[[np.ndarray], np.ndarray]]] = {
    "fast": (image_palettes, palette_distances),
    "2018": (palettes_2018, palette_distances_exact),
}
