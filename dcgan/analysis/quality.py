"""Do the fakes look like the reals? Paired image measures and distribution distances.

Three kinds of measures, each in a registry (a new one is one function and one entry):

* `PAIRED_METRICS` (piqa): PSNR, SSIM, MS-GMSD, MDSI, HaarPSI between every fake and a random real of
  the same size, mean and standard deviation, as the MedImageGAN project reported them. They compare
  two unrelated images, so they measure similarity of texture and contrast statistics, not realism.
* Distribution distances that need no pretrained network: the sliced Wasserstein distance between
  Laplacian-pyramid patch descriptors (Karras et al. 2018) and k-NN precision/recall (Kynkäänniemi
  et al. 2019) on a feature from `PR_FEATURES` (by default 16x16 downscaled pixels).
* FID/KID, only with a local Inception-v3 state_dict (see `inception.py`).

`sliced_wasserstein`, `pr_features` and `precision_recall` take uint8 numpy arrays (N, H, W, C) and
import nothing but numpy and Pillow, so training code can call them on EMA-generator samples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..compression import common_compression
from ..errors import UserError
from ..images import crop_resize, decode_images, find_images, to_pil
from ..resources import cpu_count

if TYPE_CHECKING:
    import torch

# ---------------------------------------------------------------------------------------------------
# Features for precision/recall


def downscaled_pixels(images: np.ndarray, size: int = 16) -> np.ndarray:
    """Each image box-averaged to `size` x `size`, flattened, in [0, 1]: (N, size*size*C) float32.

    A feature that needs no download and no training: it sees the layout and colors of an image
    (where the lesion is, how dark, how large) but not fine texture. 16x16 keeps the dimension low
    (768 for RGB), so that nearest-neighbour radii stay meaningful for a few hundred images.
    """
    from PIL import Image

    n, _, _, c = images.shape
    out = np.empty((n, size, size, c), np.float32)
    for i, img in enumerate(images):
        small = to_pil(img).resize((size, size), Image.Resampling.BOX)
        out[i] = np.asarray(small, np.float32).reshape(size, size, c)
    return out.reshape(n, -1) / 255


def color_texture(images: np.ndarray) -> np.ndarray:
    """A joint color histogram plus texture energy per scale: (N, 64 + 3 * levels) float32.

    Color: a 4x4x4 RGB histogram, square-rooted (Hellinger) so that a distance between two images
    compares their color distributions. Texture: the RMS of each Laplacian-pyramid band per channel,
    i.e. how much detail there is at each scale. Both blocks are scaled to unit norm and concatenated
    with equal weight. Blind to layout, unlike `downscaled_pixels`.
    """
    n, _, _, c = images.shape
    rgb = images if c == 3 else np.repeat(images, 3, axis=3)
    q = (rgb >> 6).astype(np.int64)
    bins = (q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).reshape(n, -1)
    hist = np.stack([np.bincount(b, minlength=64) for b in bins]).astype(np.float32)
    hist = np.sqrt(hist / hist.sum(1, keepdims=True))
    bands = laplacian_pyramid(rgb.astype(np.float32) / 255, _levels(images.shape[1:3]))
    energy = np.concatenate([np.sqrt((b**2).mean(axis=(1, 2))) for b in bands], axis=1)
    energy /= np.maximum(np.linalg.norm(energy, axis=1, keepdims=True), 1e-12)
    return np.concatenate([hist, energy], axis=1).astype(np.float32)


PR_FEATURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "pixels": downscaled_pixels,
    "color-texture": color_texture,
}

PR_FEATURE_DESCRIPTIONS = {
    "pixels": "16x16 downscaled pixels",
    "color-texture": "4x4x4 color histogram + Laplacian band energies",
}


def pr_features(images: np.ndarray, kind: str = "pixels") -> np.ndarray:
    """The feature vectors of uint8 images (N, H, W, C) used for k-NN precision/recall."""
    if kind not in PR_FEATURES:
        raise UserError(f"unknown precision/recall feature {kind!r}; choose from {', '.join(PR_FEATURES)}")
    return PR_FEATURES[kind](_check_images(images))


# ---------------------------------------------------------------------------------------------------
# k-NN precision and recall


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def knn_radii(feats: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """Squared distance from every row to its k-th nearest other row (the row itself excluded)."""
    if len(feats) <= k:
        raise ValueError(f"k-NN radii need more than k={k} samples, got {len(feats)}")
    out = np.empty(len(feats))
    for s in range(0, len(feats), block):
        d = _sq_dist(feats[s: s + block], feats)
        out[s: s + block] = np.partition(d, k, axis=1)[:, k]  # index 0 is the row itself (0)
    return out


def _coverage(queries: np.ndarray, support: np.ndarray, radii: np.ndarray, block: int = 1024) -> float:
    """Fraction of `queries` inside at least one ball (support[j], radii[j]), borders included.

    The tolerance absorbs the rounding of |a|^2 + |b|^2 - 2 a.b, so that a duplicate of a sample
    lies inside a zero-radius ball.
    """
    inside = 0
    limit = radii[None, :] * (1 + 1e-9) + 1e-9
    for s in range(0, len(queries), block):
        inside += int((_sq_dist(queries[s: s + block], support) <= limit).any(axis=1).sum())
    return inside / len(queries)


def precision_recall(real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of fakes against reals.

    Each set's manifold is the union of balls around its samples reaching their k-th nearest
    neighbour. Precision: the share of fakes inside the real manifold (are fakes realistic?).
    Recall: the share of reals inside the fake manifold (do fakes cover the variety of reals?).
    """
    real = np.asarray(real_feats, np.float64).reshape(len(real_feats), -1)
    fake = np.asarray(fake_feats, np.float64).reshape(len(fake_feats), -1)
    precision = _coverage(fake, real, knn_radii(real, k))
    recall = _coverage(real, fake, knn_radii(fake, k))
    return precision, recall


# ---------------------------------------------------------------------------------------------------
# Sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2018)

_BINOMIAL = np.array([1, 4, 6, 4, 1], np.float32) / 16


def _blur(x: np.ndarray, axis: int) -> np.ndarray:
    """5-tap binomial filter along `axis` (1 = rows, 2 = columns) with mirrored borders."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (2, 2)
    p = np.pad(x, pad, mode="reflect" if x.shape[axis] > 2 else "edge")
    n = x.shape[axis]
    index = [slice(None)] * x.ndim
    out = np.zeros_like(x, dtype=np.float32)
    for i, weight in enumerate(_BINOMIAL):
        index[axis] = slice(i, i + n)
        out += weight * p[tuple(index)]
    return out


def _down(x: np.ndarray) -> np.ndarray:
    return _blur(_blur(x, 1), 2)[:, ::2, ::2]


def _up(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    up = np.zeros((x.shape[0], shape[0], shape[1], x.shape[3]), np.float32)
    up[:, ::2, ::2] = x
    return _blur(_blur(up, 1), 2) * 4


def laplacian_pyramid(images: np.ndarray, levels: int) -> list[np.ndarray]:
    """Band-pass levels of float images (N, H, W, C), finest first; the last is the low-pass rest."""
    pyramid = [images.astype(np.float32)]
    for _ in range(1, levels):
        pyramid.append(_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - _up(pyramid[-1], pyramid[-2].shape[1:3])
    return pyramid


def _levels(hw: tuple[int, ...], min_resolution: int = 16) -> int:
    """Pyramid levels down to `min_resolution` (Karras: 16 px), at least one."""
    levels, side = 1, min(hw)
    while side // 2 >= min_resolution:
        side //= 2
        levels += 1
    return levels


def _patches(level: np.ndarray, ys: np.ndarray, xs: np.ndarray, patch: int) -> np.ndarray:
    """The `patch` x `patch` neighbourhoods centred at (ys, xs), both (N, per_image), flattened."""
    half = patch // 2
    off = np.arange(-half, half + 1)
    img = np.arange(len(level))[:, None, None, None]
    rows = ys[:, :, None, None] + off[None, None, :, None]
    cols = xs[:, :, None, None] + off[None, None, None, :]
    desc = level[img, rows, cols]
    return desc.reshape(-1, patch * patch * level.shape[3])


def _level_descriptors(images: np.ndarray, levels: int, per_image: int, patch: int, seed: int,
                       chunk: int = 32) -> list[np.ndarray]:
    """Patch descriptors of each pyramid level of one image set, normalized per channel (Karras).

    The pyramid is built `chunk` images at a time, so that 400 images of 370 px need tens of MB rather
    than gigabytes. Patch positions depend only on `seed` and the image's index, so two identical
    sets give identical descriptors (and an SWD of exactly 0).
    """
    rng = np.random.default_rng(seed)
    n, h, w, c = images.shape
    half = patch // 2
    positions = []
    for _ in range(levels):
        positions.append((rng.integers(half, h - half, (n, per_image)),
                          rng.integers(half, w - half, (n, per_image))))
        h, w = (h + 1) // 2, (w + 1) // 2
    parts: list[list[np.ndarray]] = [[] for _ in range(levels)]
    for s in range(0, n, chunk):
        for i, level in enumerate(laplacian_pyramid(images[s: s + chunk].astype(np.float32), levels)):
            ys, xs = positions[i]
            parts[i].append(_patches(level, ys[s: s + chunk], xs[s: s + chunk], patch))
    out = []
    for p in parts:
        desc = np.concatenate(p).reshape(-1, patch * patch, c)
        desc -= desc.mean(axis=(0, 1), keepdims=True)
        desc /= np.maximum(desc.std(axis=(0, 1), keepdims=True), 1e-8)
        out.append(desc.reshape(len(desc), -1))
    return out


def _swd(a: np.ndarray, b: np.ndarray, repeats: int, directions: int, rng: np.random.Generator) -> float:
    """Mean over random unit directions of the 1-D Wasserstein distance of the projections."""
    results = []
    for _ in range(repeats):
        dirs = rng.standard_normal((a.shape[1], directions)).astype(np.float32)
        dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
        pa, pb = np.sort(a @ dirs, axis=0), np.sort(b @ dirs, axis=0)
        results.append(float(np.abs(pa - pb).mean()))
    return float(np.mean(results))


def sliced_wasserstein(real: np.ndarray, fake: np.ndarray, patches_per_image: int = 128, patch: int = 7,
                       repeats: int = 4, directions: int = 128, min_resolution: int = 16,
                       seed: int = 0) -> dict[str, Any]:
    """SWD x 10^3 between uint8 image sets (N, H, W, C) of one size, per pyramid level and averaged.

    Karras et al.'s protocol: Laplacian pyramid down to 16 px, 128 random 7x7 neighbourhoods per
    image and level, descriptors normalized per channel within each set, 4 x 128 random directions.
    The two sets may differ in size: the larger set's descriptors are subsampled to the smaller count,
    since sorted projections are compared element by element. Lower is better; 0 for identical sets.
    Returns {"levels": {"160x160": swd, "80x80": ...}, "mean": swd}.
    """
    real, fake = _check_images(real), _check_images(fake)
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real and fake images differ in shape: {real.shape[1:]} vs {fake.shape[1:]}")
    h, w = real.shape[1:3]
    if min(h, w) < patch:
        raise ValueError(f"images of {w}x{h} are smaller than the {patch}x{patch} patches")
    levels = _levels((h, w), min_resolution)
    desc_real = _level_descriptors(real, levels, patches_per_image, patch, seed)
    desc_fake = _level_descriptors(fake, levels, patches_per_image, patch, seed)
    rng = np.random.default_rng(seed + 1)
    out: dict[str, float] = {}
    for da, db in zip(desc_real, desc_fake, strict=True):
        m = min(len(da), len(db))
        da = da[np.sort(rng.choice(len(da), m, replace=False))] if len(da) > m else da
        db = db[np.sort(rng.choice(len(db), m, replace=False))] if len(db) > m else db
        out[f"{w}x{h}"] = _swd(da, db, repeats, directions, rng) * 1e3
        h, w = (h + 1) // 2, (w + 1) // 2
    return {"levels": out, "mean": float(np.mean(list(out.values())))}


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (N, H, W, C), got {images.dtype} {images.shape}")
    return images


# ---------------------------------------------------------------------------------------------------
# Paired piqa measures


def _piqa(name: str) -> Callable[[], Any]:
    def make() -> Any:
        import piqa

        return getattr(piqa, name)(reduction="none")

    return make


# name -> (factory of a piqa module, higher is better)
PAIRED_METRICS: dict[str, tuple[Callable[[], Any], bool]] = {
    "psnr": (_piqa("PSNR"), True),
    "ssim": (_piqa("SSIM"), True),
    "ms-gmsd": (_piqa("MS_GMSD"), False),
    "mdsi": (_piqa("MDSI"), False),
    "haarpsi": (_piqa("HaarPSI"), True),
}


def paired_measures(real: np.ndarray, fake: np.ndarray, metrics: Sequence[str] = tuple(PAIRED_METRICS),
                    seed: int = 0, batch_size: int = 64) -> dict[str, Any]:
    """Every fake against a random real (fixed seed); mean and standard deviation per measure.

    A measure that cannot run on these images (too small for its filters) reports its error
    instead of stopping the others.
    """
    import torch

    rng = np.random.default_rng(seed)
    partner = rng.integers(0, len(real), size=len(fake))
    results: dict[str, Any] = {}
    with torch.no_grad():
        for name in metrics:
            factory, higher = PAIRED_METRICS[name]
            try:
                metric = factory()
                values = torch.cat([
                    metric(_tensor(fake[s: s + batch_size]), _tensor(real[partner[s: s + batch_size]]))
                    for s in range(0, len(fake), batch_size)]).double()
            except (RuntimeError, ValueError, AssertionError, IndexError) as err:
                results[name] = {"error": str(err).splitlines()[0][:200]}
                continue
            results[name] = {"mean": float(values.mean()), "std": float(values.std(unbiased=False)),
                             "higher_is_better": higher}
    return {"seed": seed, "pairs": len(fake), "metrics": results}


def _tensor(images: np.ndarray) -> torch.Tensor:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


# ---------------------------------------------------------------------------------------------------
# The `quality` command


@dataclass
class QualitySet:
    """A folder's images decoded at one size, with what happened on the way."""

    path: str
    images: np.ndarray  # (N, H, W, 3) uint8, all at one size (the pixel measures)
    paths: list[Path]
    skipped: list[str] = field(default_factory=list)
    original_sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> count
    resized: int = 0
    native: list[np.ndarray] = field(default_factory=list)  # each image at its own size (FID/KID)


def load_quality_set(path: str, size: tuple[int, int] | None = None) -> QualitySet:
    """Decode every image under `path`; resize to `size` (W, H), by default the most common size."""
    paths = find_images(path, required=True)
    decoded = list(decode_images(paths, workers=cpu_count()))
    skipped = [d.error for d in decoded if d.error is not None]
    kept = [d for d in decoded if d.error is None]
    sizes = Counter(f"{d.image.shape[1]}x{d.image.shape[0]}" for d in kept)
    s = QualitySet(path, np.empty((0, 0, 0, 3), np.uint8), [d.path for d in kept], skipped, dict(sizes),
                   native=[d.image for d in kept])
    if size is None and kept:
        size = most_common_size(s)
    if size is not None:
        resize_set(s, size)
    return s


def most_common_size(s: QualitySet) -> tuple[int, int]:
    """The (W, H) most of the set's images have."""
    return Counter((a.shape[1], a.shape[0]) for a in s.native).most_common(1)[0][0]


def resize_set(s: QualitySet, size: tuple[int, int]) -> None:
    """Set `s.images` to every image at `size` (W, H): center crop + Lanczos where it differs."""
    from PIL import Image

    arrays, resized = [], 0
    for a in s.native:
        if (a.shape[1], a.shape[0]) != tuple(size):
            a = np.asarray(crop_resize(Image.fromarray(a), *size))
            resized += 1
        arrays.append(a)
    s.images = np.stack(arrays) if arrays else np.empty((0, 0, 0, 3), np.uint8)
    s.resized = resized


@dataclass
class QualityOptions:
    metrics: Sequence[str] = ()  # paired and distribution measure names; empty = all
    seed: int = 0
    pr_k: int = 3
    pr_feature: str = "pixels"
    inception_weights: str | None = None
    batch_size: int = 32
    c2st: Any = None  # a c2st.C2STOptions to run the classifier two-sample test (minutes), else None
    figures: str | None = None  # folder for the spectrum plot and the C2ST's surest-fakes grid


DISTRIBUTION_METRICS = ("swd", "precision-recall", "spectrum", "fid-kid")


def quality_report(real_path: str, fake_path: str, opts: QualityOptions) -> dict[str, Any]:
    """All measures of FAKE_PATH against REAL_PATH, as a JSON-ready dict (see `format_quality`)."""
    known = (*PAIRED_METRICS, *DISTRIBUTION_METRICS)
    unknown = [m for m in opts.metrics if m not in known]
    if unknown:
        raise UserError(f"unknown metric {', '.join(unknown)}; choose from {', '.join(known)}")
    chosen = list(opts.metrics) or list(known)
    fake = load_quality_set(fake_path, size=None)
    if len(fake.paths) < 2:
        raise UserError(f"{fake_path}: need at least 2 readable images, found {len(fake.paths)}")
    real = load_quality_set(real_path, size=None)
    if len(real.paths) < 2:
        raise UserError(f"{real_path}: need at least 2 readable images, found {len(real.paths)}")
    # The pixel measures need one size: both sets go DOWN to the smaller of their usual sizes, never
    # up (upscaling invents detail that SWD and the paired measures would then score). FID/KID take
    # every image from its own size straight to 299x299, as pytorch-fid and clean-fid do.
    (wf, hf), (wr, hr) = most_common_size(fake), most_common_size(real)
    w, h = min(wf, wr), min(hf, hr)
    resize_set(fake, (w, h))
    resize_set(real, (w, h))

    notes = []
    for s in (real, fake):
        if s.resized:
            notes.append(f"resized {s.resized} of {len(s.paths)} images in {s.path} to {w}x{h} for the "
                         f"pixel measures (center crop + Lanczos; sizes found: {_sizes(s.original_sizes)})")
    stored = {name: common_compression(s.paths) for name, s in (("real", real), ("fake", fake))}
    if stored["real"] != stored["fake"] and (stored["real"].is_jpeg or stored["fake"].is_jpeg):
        notes.append(f"reals stored as {stored['real'].describe()}, fakes as {stored['fake'].describe()}: "
                     "the spectrum and the classifier test also see the compression (`gancontrol.py "
                     "generate` stores fakes like the training images unless --format or --jpeg-quality "
                     "say otherwise)")
    report: dict[str, Any] = {
        "real": {**_set_info(real), "compression": stored["real"].describe()},
        "fake": {**_set_info(fake), "compression": stored["fake"].describe()}, "size": [w, h], "notes": notes}
    notes += few_images_notes(min(len(real.paths), len(fake.paths)), chosen, opts)
    paired = [m for m in chosen if m in PAIRED_METRICS]
    if paired:
        report["paired"] = paired_measures(real.images, fake.images, paired, opts.seed, opts.batch_size)
    if "swd" in chosen:
        try:
            report["swd"] = sliced_wasserstein(real.images, fake.images, seed=opts.seed)
        except ValueError as err:
            report["swd"] = {"error": str(err)}
    if "precision-recall" in chosen:
        report["precision_recall"] = _pr_entry(real.images, fake.images, opts)
    _artifact_entries(report, real, fake, chosen, opts)
    if "fid-kid" in chosen:
        if opts.inception_weights:
            from .inception import fid_kid

            report["fid_kid"] = fid_kid(real.native, fake.native, opts.inception_weights, opts.batch_size,
                                        opts.seed)
        else:
            from .inception import WEIGHTS_ENV, WEIGHTS_FILE, WEIGHTS_URL

            report["fid_kid"] = {"skipped": f"FID/KID skipped: no --inception-weights FILE or {WEIGHTS_ENV} "
                                            f"given (nothing is downloaded at run time; get {WEIGHTS_FILE} "
                                            f"once from {WEIGHTS_URL})"}
    return report


FEW_FOR_PR = 100  # k-NN precision/recall: below this many images per set, k neighbours span the set
FEW_FOR_FID = 2048  # FID: fewer images than Inception features leave the covariance rank-deficient


def few_images_notes(n: int, chosen: list[str], opts: QualityOptions) -> list[str]:
    """What the measures that need many images cannot say with `n` per set (the classifier test
    says it beside its verdict, with the count it would need)."""
    notes = []
    if "precision-recall" in chosen and n < FEW_FOR_PR:
        notes.append(f"precision/recall from {n} images per set: each image's k-NN radius spans a large "
                     f"part of the set, so the figures move with the draw; compare sets only at equal "
                     f"counts, and use {FEW_FOR_PR} or more per set to rank them")
    if "fid-kid" in chosen and opts.inception_weights and n < FEW_FOR_FID:
        notes.append(f"FID from {n} images per set is biased upward (fewer images than the {FEW_FOR_FID} "
                     "Inception features: a rank-deficient covariance); compare FIDs only at equal "
                     "counts, or read KID, which is unbiased")
    return notes


def _artifact_entries(report: dict[str, Any], real: QualitySet, fake: QualitySet, chosen: list[str],
                      opts: QualityOptions) -> None:
    """The spectral ratio (`spectrum.py`) and, with opts.c2st, the classifier test (`c2st.py`)."""
    figures = Path(opts.figures) if opts.figures else None
    if figures:
        figures.mkdir(parents=True, exist_ok=True)
    if "spectrum" in chosen:
        from .spectrum import spectrum_plot, spectrum_report

        report["spectrum"] = spectrum_report(real.images, fake.images, opts.seed, keep_map=bool(figures))
        if figures:
            ratio_map = report["spectrum"].pop("ratio_map")
            report["spectrum"]["plot"] = str(spectrum_plot(report["spectrum"], figures / "spectrum.png",
                                                           ratio_map=ratio_map))
    if opts.c2st is not None:
        from .c2st import c2st_report, surest_grid

        report["c2st"] = c2st_report(real.images, fake.images, opts.c2st, [str(p) for p in fake.paths])
        if figures:
            grid = surest_grid(fake.images, report["c2st"], figures / "c2st_surest_fakes.png", real.images)
            report["c2st"]["grid"] = str(grid)


def _pr_entry(real: np.ndarray, fake: np.ndarray, opts: QualityOptions) -> dict[str, Any]:
    entry: dict[str, Any] = {"feature": f"{opts.pr_feature}: {PR_FEATURE_DESCRIPTIONS[opts.pr_feature]}"
                             if opts.pr_feature in PR_FEATURE_DESCRIPTIONS else opts.pr_feature,
                             "k": opts.pr_k}
    if min(len(real), len(fake)) <= opts.pr_k:
        entry["error"] = f"needs more than k={opts.pr_k} images in each folder"
        return entry
    p, r = precision_recall(pr_features(real, opts.pr_feature), pr_features(fake, opts.pr_feature), opts.pr_k)
    entry.update(precision=p, recall=r)
    return entry


def _sizes(sizes: dict[str, int]) -> str:
    return ", ".join(f"{n} x {s}" for s, n in sorted(sizes.items(), key=lambda kv: -kv[1]))


def _set_info(s: QualitySet) -> dict[str, Any]:
    return {"path": s.path, "images": len(s.paths), "skipped": s.skipped,
            "original_sizes": s.original_sizes, "resized": s.resized}


def format_quality(report: dict[str, Any]) -> str:
    """The report as a readable plain-text table."""
    w, h = report["size"]
    lines = [f"real: {report['real']['path']} ({report['real']['images']} images)   "
             f"fake: {report['fake']['path']} ({report['fake']['images']} images)   pixel measures at "
             f"{w}x{h}; FID/KID from each image's own size"]
    lines += [f"note: {n}" for n in report["notes"]]
    if "paired" in report:
        p = report["paired"]
        lines += ["", f"paired measures: each fake vs a random real (seed {p['seed']}, {p['pairs']} pairs)",
                  f"  {'measure':<10}{'mean':>10}{'std':>10}   better"]
        for name, v in p["metrics"].items():
            if "error" in v:
                lines.append(f"  {name:<10}  n/a: {v['error']}")
            else:
                lines.append(f"  {name:<10}{v['mean']:>10.4f}{v['std']:>10.4f}   "
                             f"{'higher' if v['higher_is_better'] else 'lower'}")
    if "swd" in report:
        s = report["swd"]
        lines += ["", "sliced Wasserstein distance x10^3 (Laplacian pyramid 7x7 patches; lower is better)"]
        if "error" in s:
            lines.append(f"  n/a: {s['error']}")
        else:
            lines.append("  " + "   ".join(f"{lvl}: {v:.2f}" for lvl, v in s["levels"].items())
                         + f"   mean: {s['mean']:.2f}")
    if "precision_recall" in report:
        pr = report["precision_recall"]
        lines += ["", f"k-NN precision/recall (k={pr['k']}, feature {pr['feature']})"]
        lines.append(f"  n/a: {pr['error']}" if "error" in pr else
                     f"  precision {pr['precision']:.3f} (fakes inside the real manifold)   "
                     f"recall {pr['recall']:.3f} (reals covered by the fakes)")
    if "spectrum" in report:
        from .spectrum import format_spectrum

        lines += ["", *format_spectrum(report["spectrum"])]
    if "c2st" in report:
        from .c2st import format_c2st

        lines += ["", *format_c2st(report["c2st"])]
    if "fid_kid" in report:
        f = report["fid_kid"]
        lines.append("")
        if "skipped" in f:
            lines.append(f["skipped"])
        else:
            lines.append(f"FID {f['fid']:.3f}   KID {f['kid_mean']:.5f} +- {f['kid_std']:.5f}   "
                         f"({f['protocol']})")
    return "\n".join(lines)
