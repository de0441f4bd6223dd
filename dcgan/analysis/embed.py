"""2-D embeddings of a distance matrix, and the statistics of groups of images in it.

`EMBEDDINGS` maps a name (the CLI's `--method`) to a function; a new method is one function and one
entry. Every function takes the symmetric distance matrix and the feature vectors and returns an
`Embedding`.

MDS is classical (Torgerson) MDS followed by SMACOF iterations. Why: the 2018 tool ran scikit-learn's
SMACOF from random starts, which costs O(n^2) per iteration for hundreds of iterations and four
starts and takes hours at 10,000 images; classical MDS (the top eigenvectors of the double-centred
squared distances) is one truncated eigendecomposition, already close to the stress optimum, so a few
SMACOF iterations from it reach what many random starts would.

The statistics answer the 2018 tool's open TODO "quantify cluster metrics": spread per group, mean
distances between groups, the silhouette of the grouping, and (with a real group) how close each
fake group comes to the reals, which fakes may be copies, and whether a 1-nearest-neighbour
classifier can tell fakes from reals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..resources import BLOCK_BYTES

DENSE_EIGEN_LIMIT = 1000  # up to this many points a full eigendecomposition is faster than ARPACK


@dataclass
class EmbedOptions:
    """Parameters of the embedding methods (each method reads the ones it needs)."""

    seed: int = 0
    mds_iterations: int | None = None  # SMACOF iterations after classical MDS; None = auto
    perplexity: float = 30.0  # t-SNE, lowered automatically for few images
    progress: bool = True


@dataclass
class Embedding:
    coords: np.ndarray  # (N, 2)
    axis_labels: tuple[str, str]
    note: str  # how it was computed, with its quality figure (stress, explained variance)


# ---------------------------------------------------------------------------------------------------
# Embedding methods


def auto_mds_iterations(n: int) -> int:
    """SMACOF iterations worth their time: 100 up to ~4,500 images, then a budget of ~2e9 pair updates.

    One iteration costs O(n^2): milliseconds at 500 images, about a second at 10,000 (20 iterations).
    """
    return int(min(100, max(10, 2e9 // max(n * n, 1))))


def mds(distances: np.ndarray, vectors: np.ndarray, opts: EmbedOptions) -> Embedding:
    """Metric MDS: classical MDS, then up to `opts.mds_iterations` SMACOF iterations."""
    from tqdm import tqdm

    iterations = auto_mds_iterations(len(distances)) if opts.mds_iterations is None else opts.mds_iterations
    with tqdm(total=iterations + 1, desc="MDS", leave=False, disable=None if opts.progress else True) as bar:
        x = classical_mds(distances)
        bar.update(1)
        x, stress, done = smacof(distances, x, iterations, bar.update)
    note = f"classical MDS + {done} SMACOF iterations, stress-1 {stress:.3f}"
    return Embedding(_orient(x), ("MDS 1", "MDS 2"), note)


def classical_mds(distances: np.ndarray, dims: int = 2) -> np.ndarray:
    """Torgerson's classical MDS: coordinates from the top eigenvectors of -1/2 J D^2 J.

    The eigenproblem is dense below `DENSE_EIGEN_LIMIT` points and ARPACK's Lanczos (`eigsh`, only
    the `dims` largest eigenpairs, a few dozen matrix-vector products) above it; below it LAPACK's
    MRRR driver computes only the `dims` largest eigenpairs too.
    """
    n = len(distances)
    b = np.square(distances, dtype=np.float64)
    row = b.mean(axis=1)
    b -= row[:, None]
    b -= row[None, :]
    b += row.mean()
    b *= -0.5
    if n <= DENSE_EIGEN_LIMIT:
        from scipy.linalg import eigh
        from threadpoolctl import threadpool_limits

        # One BLAS thread: on a busy machine OpenBLAS's spinning threads made this small decomposition
        # hundreds of times slower (docs/performance.md).
        with threadpool_limits(limits=1, user_api="blas"):
            values, vectors = eigh(b, subset_by_index=[max(0, n - dims), n - 1], driver="evr")
    else:
        from scipy.sparse.linalg import eigsh

        v0 = np.random.default_rng(0).standard_normal(n)
        values, vectors = eigsh(b, k=dims, which="LA", v0=v0)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    if len(values) < dims:  # fewer points than dimensions
        values = np.pad(values, (0, dims - len(values)))
        vectors = np.pad(vectors, ((0, 0), (0, dims - vectors.shape[1])))
    del b
    return vectors * np.sqrt(np.maximum(values, 0.0))[None, :]


def smacof(distances: np.ndarray, x: np.ndarray, iterations: int,
           progress: Callable[[int], None] | None = None, tol: float = 1e-5) -> tuple[np.ndarray, float, int]:
    """SMACOF (Guttman transform) iterations from `x`; returns (x, stress-1, iterations done).

    Unweighted metric stress, computed in row blocks so that 10,000 points need no more than the
    distance matrix plus a block. Stops early when stress-1 improves by less than `tol` (relative).
    """
    n = len(distances)
    norm = float(np.square(distances, dtype=np.float64).sum()) / 2 or 1.0
    rows = max(1, BLOCK_BYTES // (4 * 3 * max(n, 1)))
    stress = previous = np.inf
    done = 0
    for it in range(iterations + 1):
        x32 = x.astype(np.float32)
        sq = (x32**2).sum(1)
        new = np.empty_like(x)
        raw = 0.0
        for start in range(0, n, rows):  # float32 blocks: memory-bound work, half the bytes
            stop = min(n, start + rows)
            d_emb = x32[start:stop] @ x32.T
            d_emb *= -2
            d_emb += sq[start:stop, None]
            d_emb += sq[None, :]
            np.sqrt(np.maximum(d_emb, 0, out=d_emb), out=d_emb)
            target = distances[start:stop]
            raw += float(np.square(d_emb - target, dtype=np.float64).sum())
            ratio = np.divide(target, d_emb, out=np.zeros_like(d_emb), where=d_emb > 1e-6)
            ratio[np.arange(stop - start), np.arange(start, stop)] = 0
            new[start:stop] = (ratio.sum(1, dtype=np.float64)[:, None] * x[start:stop] - ratio @ x32) / n
        stress = float(np.sqrt(raw / 2 / norm))
        if it == iterations or previous - stress < tol * previous:
            break
        previous, x = stress, new
        done += 1
        if progress is not None:
            progress(1)
    return x, stress, done


def tsne(distances: np.ndarray, vectors: np.ndarray, opts: EmbedOptions) -> Embedding:
    """t-SNE (scikit-learn, Barnes-Hut) on the precomputed distances; perplexity at most (N - 1) / 3.

    Below 1,000 images it runs on one OpenMP thread: threads only pay off for more, and on a busy
    machine their spin-waiting made even 10 images take seconds. (The "exact" method would avoid
    OpenMP but is not reproducible for a fixed seed.)
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(distances)
    perplexity = float(min(opts.perplexity, max(1.0, (n - 1) / 3)))
    model = TSNE(n_components=2, metric="precomputed", init="random", perplexity=perplexity,
                 random_state=opts.seed)
    with threadpool_limits(limits=1 if n < 1000 else None, user_api="openmp"):
        x = model.fit_transform(distances)
    return Embedding(_orient(x - x.mean(0)), ("t-SNE 1", "t-SNE 2"),
                     f"t-SNE, perplexity {perplexity:g}, KL divergence {model.kl_divergence_:.3f}")


def pca(distances: np.ndarray, vectors: np.ndarray, opts: EmbedOptions) -> Embedding:
    """PCA of the feature vectors (not the distances): the 2 directions of largest variance."""
    v = vectors.astype(np.float64)
    v -= v.mean(axis=0)
    total = float((v**2).sum()) or 1.0
    if v.shape[1] <= v.shape[0]:
        values, axes = np.linalg.eigh(v.T @ v)
        axes = axes[:, ::-1][:, :2]
        x = v @ axes
    else:  # more dimensions than images: work with the smaller Gram matrix
        values, u = np.linalg.eigh(v @ v.T)
        x = u[:, ::-1][:, :2] * np.sqrt(np.maximum(values[::-1][:2], 0.0))
    x = np.pad(x, ((0, 0), (0, 2 - x.shape[1])))
    share = (x**2).sum(0) / total
    return Embedding(_orient(x), (f"PC1 ({share[0]:.0%} of variance)", f"PC2 ({share[1]:.0%})"),
                     f"PCA, {share.sum():.0%} of the variance in 2 components")


def _orient(x: np.ndarray) -> np.ndarray:
    """Flip each axis so that its largest coordinate is positive: the same data, the same picture."""
    signs = np.sign(x[np.abs(x).argmax(axis=0), np.arange(x.shape[1])])
    return x * np.where(signs == 0, 1.0, signs)[None, :]


EMBEDDINGS: dict[str, Callable[[np.ndarray, np.ndarray, EmbedOptions], Embedding]] = {
    "mds": mds,
    "tsne": tsne,
    "pca": pca,
}


# ---------------------------------------------------------------------------------------------------
# Statistics


def silhouette(distances: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean silhouette of the grouping on the precomputed distances (scikit-learn's definition).

    +1: every image is much closer to its own group than to the nearest other group; 0: overlap.
    None when it is undefined (one group, or as many groups as images).
    """
    groups = np.unique(labels)
    n = len(labels)
    if not 2 <= len(groups) <= n - 1:
        return None
    onehot = (labels[:, None] == groups[None, :]).astype(distances.dtype)
    sums = (distances @ onehot).astype(np.float64)
    sizes = onehot.sum(0).astype(np.float64)
    own = np.searchsorted(groups, labels)
    own_size = sizes[own]
    a = sums[np.arange(n), own] / np.maximum(own_size - 1, 1)
    other = sums / sizes[None, :]
    other[np.arange(n), own] = np.inf
    b = other.min(axis=1)
    s = np.where(own_size > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-300), 0.0)
    return float(s.mean())


def _summary(values: np.ndarray) -> dict[str, float]:
    q = np.percentile(values, [5, 50, 95])
    return {"mean": float(values.mean()), "min": float(values.min()), "p5": float(q[0]),
            "median": float(q[1]), "p95": float(q[2]), "max": float(values.max())}


def group_statistics(distances: np.ndarray, coords: np.ndarray, labels: np.ndarray,
                     names: Sequence[str], paths: Sequence[str], real: int | None = None,
                     closest_pairs: int = 10) -> dict:
    """Per-group and between-group statistics; with `real` (a group index), fakes vs reals.

    `labels[i]` is image i's group index into `names`. Spreads are mean distances: in the embedding,
    of a group's points to their 2-D centroid; in distance space, between a group's members.
    """
    groups = []
    for g, name in enumerate(names):
        members = np.flatnonzero(labels == g)
        pts = coords[members]
        within = distances[np.ix_(members, members)]
        m = len(members)
        groups.append({
            "name": name,
            "size": m,
            "spread_embedding": float(np.linalg.norm(pts - pts.mean(0), axis=1).mean()) if m else None,
            "spread_distance": float(within.sum() / (m * (m - 1))) if m > 1 else None,
        })
    between = [[_mean_between(distances, labels, a, b) for b in range(len(names))] for a in range(len(names))]
    stats: dict = {
        "groups": groups,
        "mean_distance_between_groups": {"names": list(names), "matrix": between},
        "silhouette": silhouette(distances, labels),
    }
    if real is not None:
        stats["real_vs_fake"] = real_vs_fake(distances, labels, names, paths, real, closest_pairs)
    return stats


def _mean_between(distances: np.ndarray, labels: np.ndarray, a: int, b: int) -> float | None:
    ia, ib = np.flatnonzero(labels == a), np.flatnonzero(labels == b)
    block = distances[np.ix_(ia, ib)]
    if a == b:
        pairs = len(ia) * (len(ia) - 1)
        return float(block.sum() / pairs) if pairs else None
    return float(block.mean()) if block.size else None


def real_vs_fake(distances: np.ndarray, labels: np.ndarray, names: Sequence[str], paths: Sequence[str],
                 real: int, closest_pairs: int = 10) -> dict:
    """How each fake group relates to the real group.

    Memorization shows in the distance from each fake to its nearest real, compared with the
    distance from each real to its nearest other real. Two figures per fake group:
    `below_real_p5`, the fakes closer to a real than 95% of the reals are to theirs (about 5% for
    fakes drawn from the real distribution, more when the generator reproduces training images);
    and `likely_copies`, the fakes closer to a real than any two distinct reals are to each other
    (the copy threshold: the smallest non-zero real-to-real distance, as real folders often hold
    exact duplicates). The closest pairs are listed for a look.

    The 1-NN two-sample test (Lopez-Paz and Oquab 2017) classifies every image of reals + fakes by
    its nearest other image, leaving itself out. The balanced accuracy (mean of the per-class
    accuracies, so unequal group sizes do not bias it) is 0.5 when fakes and reals are
    indistinguishable and 1.0 when they are separable.
    """
    r = np.flatnonzero(labels == real)
    if len(r) < 2:
        raise UserError(f"the real group {names[real]!r} needs at least 2 images, has {len(r)}")
    rr = distances[np.ix_(r, r)].copy()
    np.fill_diagonal(rr, np.inf)
    real_nn = rr.min(axis=1)
    p5 = float(np.percentile(real_nn, 5))
    distinct = rr[np.isfinite(rr) & (rr > 0)]
    threshold = float(distinct.min()) if distinct.size else 0.0
    out: dict = {"real": names[real], "real_to_real_nn": _summary(real_nn), "real_nn_p5": p5,
                 "copy_threshold": threshold, "fakes": []}
    for g, name in enumerate(names):
        f = np.flatnonzero(labels == g)
        if g == real or len(f) == 0:
            continue
        fr = distances[np.ix_(f, r)]
        nearest = fr.argmin(axis=1)
        nn = fr[np.arange(len(f)), nearest]
        order = np.argsort(nn, kind="stable")[:closest_pairs]
        pairs = [{"fake": str(paths[f[i]]), "real": str(paths[r[nearest[i]]]), "distance": float(nn[i]),
                  "likely_copy": bool(nn[i] < threshold)} for i in order]
        out["fakes"].append({
            "group": name,
            "fake_to_real_nn": _summary(nn),
            "below_real_p5": int((nn < p5).sum()),
            "likely_copies": int((nn < threshold).sum()),
            "closest_pairs": pairs,
            **one_nn_two_sample(distances, r, f),
        })
    return out


def one_nn_two_sample(distances: np.ndarray, real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    """Leave-one-out 1-nearest-neighbour accuracy of telling `fake` indices from `real` indices."""
    idx = np.concatenate([real, fake])
    is_fake = np.r_[np.zeros(len(real), bool), np.ones(len(fake), bool)]
    sub = distances[np.ix_(idx, idx)].copy()
    np.fill_diagonal(sub, np.inf)
    correct = is_fake[sub.argmin(axis=1)] == is_fake
    acc_real, acc_fake = float(correct[~is_fake].mean()), float(correct[is_fake].mean())
    return {"one_nn_accuracy": (acc_real + acc_fake) / 2, "one_nn_accuracy_real": acc_real,
            "one_nn_accuracy_fake": acc_fake, "one_nn_accuracy_unbalanced": float(correct.mean())}


def format_statistics(stats: dict) -> str:
    """The statistics as a plain-text table for the terminal."""
    names = [g["name"] for g in stats["groups"]]
    width = max(12, *(len(n) for n in names)) + 2
    lines = [f"{'group':<{width}}{'images':>8}{'spread (2-D)':>14}{'spread (dist)':>15}"]
    for g in stats["groups"]:
        lines.append(f"{g['name']:<{width}}{g['size']:>8}{_num(g['spread_embedding']):>14}"
                     f"{_num(g['spread_distance']):>15}")
    if len(names) > 1:
        lines += ["", "mean distance between groups (diagonal: within)"]
        col = max(10, *(len(n) for n in names)) + 2
        lines.append(" " * width + "".join(f"{n:>{col}}" for n in names))
        for name, row in zip(names, stats["mean_distance_between_groups"]["matrix"], strict=True):
            lines.append(f"{name:<{width}}" + "".join(f"{_num(v):>{col}}" for v in row))
    sil = stats.get("silhouette")
    lines += ["", "silhouette of the grouping: "
              + ("n/a (needs 2 or more groups)" if sil is None else
                 f"{sil:.3f}  (1 = well separated, 0 = overlapping, < 0 = mixed up)")]
    rvf = stats.get("real_vs_fake")
    if rvf:
        rn = rvf["real_to_real_nn"]
        lines += ["", f"fakes vs reals ({rvf['real']}): distance to the nearest real image",
                  f"  reals to their nearest other real: median {rn['median']:.4g}, 5th percentile "
                  f"{rvf['real_nn_p5']:.4g}, smallest non-zero (copy threshold) {rvf['copy_threshold']:.4g}",
                  f"{'group':<{width}}{'median':>10}{'min':>10}{'< real p5':>12}{'copies':>10}"
                  f"{'1-NN acc.':>11}"]
        for f in rvf["fakes"]:
            nn = f["fake_to_real_nn"]
            n_fake = next(g["size"] for g in stats["groups"] if g["name"] == f["group"])
            below, copies = f"{f['below_real_p5']}/{n_fake}", f"{f['likely_copies']}/{n_fake}"
            lines.append(f"{f['group']:<{width}}{nn['median']:>10.4g}{nn['min']:>10.4g}{below:>12}{copies:>10}"
                         f"{f['one_nn_accuracy']:>11.3f}")
        lines += ["< real p5: fakes closer to a real than 95% of reals are to theirs (expect ~5%)",
                  "copies: fakes closer to a real than any two distinct reals are (likely copies)",
                  "1-NN acc.: balanced leave-one-out, 0.5 = indistinguishable, 1.0 = separable"]
        for f in rvf["fakes"]:
            lines.append(f"closest pairs, {f['group']}:")
            for p in f["closest_pairs"][:5]:
                flag = "  likely copy" if p["likely_copy"] else ""
                lines.append(f"  {p['distance']:.4g}  {p['fake']}  ~  {p['real']}{flag}")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
