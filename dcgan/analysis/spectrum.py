"""Spectral artifacts: the azimuthally averaged power spectrum of fakes vs reals (Durall et al. 2020).

Up-sampling layers leave their fingerprint at the highest spatial frequencies (a 2-pixel checkerboard
sits at the corner of the spectrum, a periodic "crackle" near it), where real photographs have little
energy. Each image's luminance, less its mean, goes through a 2-D FFT; the power |F|^2 is averaged
over all images of a set and over rings of equal radial frequency f = sqrt(fx^2 + fy^2) (cycles per
pixel, 0 to 0.71 with the corners). The number reported is the ratio of the fakes' to the reals'
mean power in the top band (f >= 0.375, the top quarter of the axis Nyquist range and the
corners): 1 = as much fine detail as the reals, above 1 = added high-frequency texture, below 1 =
blur. The reals' own spread comes from random halves of the reals against each other.

numpy only (plus matplotlib for the plot); no library computes this profile for image sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TOP_BAND = 0.375  # cycles/pixel: 3/4 of the axis Nyquist frequency


def radial_frequencies(h: int, w: int) -> np.ndarray:
    """Radial frequency (cycles/pixel) of each coefficient of an unshifted (h, w) 2-D FFT."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    return np.sqrt(fy**2 + fx**2)


def mean_power(images: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Mean 2-D power spectrum (h, w) of the luminance of uint8 images (N, H, W[, C])."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    total = np.zeros(images.shape[1:3])
    for s in range(0, len(images), chunk):
        lum = images[s: s + chunk].astype(np.float64).mean(axis=3) / 255
        lum -= lum.mean(axis=(1, 2), keepdims=True)
        total += (np.abs(np.fft.fft2(lum)) ** 2).sum(axis=0)
    return total / len(images)


def radial_profile(power: np.ndarray, bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres in cycles/pixel, mean power per ring), rings of width 1/side, DC excluded."""
    h, w = power.shape
    f = radial_frequencies(h, w)
    step = 1 / max(h, w)
    ring = np.round(f / step).astype(int)
    n = int(ring.max()) + 1 if bins is None else bins
    sums = np.bincount(ring.ravel(), power.ravel(), minlength=n)[:n]
    counts = np.bincount(ring.ravel(), minlength=n)[:n]
    keep = counts > 0
    keep[0] = False  # the DC term is zero after subtracting each image's mean
    return np.arange(n)[keep] * step, sums[keep] / counts[keep]


def band_ratio(fake_power: np.ndarray, real_power: np.ndarray, low: float = TOP_BAND) -> float:
    """Fakes' over reals' mean power at radial frequencies >= `low` (cycles/pixel)."""
    band = radial_frequencies(*real_power.shape) >= low
    return float(fake_power[band].mean() / real_power[band].mean())


def spectrum_report(real: np.ndarray, fake: np.ndarray, seed: int = 0, splits: int = 20) -> dict[str, Any]:
    """Top-band power ratio of fakes vs reals, the reals' own spread, and both radial profiles.

    The spread: `splits` random halves of the reals, one half's ratio against the other's; an
    artifact-free generator's ratio should fall inside [min, max] of those.
    """
    if real.shape[1:3] != fake.shape[1:3]:
        raise ValueError(f"real and fake images differ in size: {real.shape[1:3]} vs {fake.shape[1:3]}")
    pr, pf = mean_power(real), mean_power(fake)
    rng = np.random.default_rng(seed)
    half = len(real) // 2
    ref = []
    if half >= 1:
        for _ in range(splits):
            perm = rng.permutation(len(real))
            ref.append(band_ratio(mean_power(real[perm[:half]]), mean_power(real[perm[half: 2 * half]])))
    freq, prof_r = radial_profile(pr)
    _, prof_f = radial_profile(pf)
    return {"top_band": f"f >= {TOP_BAND} cycles/pixel", "top_band_ratio": band_ratio(pf, pr),
            "real_halves": {"splits": len(ref), "min": min(ref, default=float("nan")),
                            "max": max(ref, default=float("nan")),
                            "median": float(np.median(ref)) if ref else float("nan")},
            "frequency": freq.tolist(), "real_profile": prof_r.tolist(), "fake_profile": prof_f.tolist()}


def spectrum_plot(report: dict[str, Any], path: str | Path,
                  labels: tuple[str, str] = ("reals", "fakes")) -> Path:
    """Both radial profiles (log power) and their ratio, as a PNG (or any matplotlib suffix)."""
    from matplotlib.figure import Figure

    from ..files import atomic_path

    f = np.asarray(report["frequency"])
    real, fake = np.asarray(report["real_profile"]), np.asarray(report["fake_profile"])
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.semilogy(f, real, label=labels[0], color="tab:blue")
    ax1.semilogy(f, fake, label=labels[1], color="tab:red")
    ax1.set(xlabel="radial frequency (cycles/pixel)", ylabel="mean power (luminance)",
            title="azimuthally averaged power spectrum")
    ax1.legend()
    ax2.plot(f, fake / real, color="tab:red")
    ax2.axhline(1, color="grey", lw=0.8)
    ax2.axvspan(TOP_BAND, f.max(), color="grey", alpha=0.15,
                label=f"top band (ratio {report['top_band_ratio']:.2f})")
    ax2.set_yscale("log")
    ax2.set(xlabel="radial frequency (cycles/pixel)", ylabel=f"{labels[1]} / {labels[0]}",
            title="power ratio")
    ax2.legend()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=100)
    return path


def format_spectrum(entry: dict[str, Any]) -> list[str]:
    """Lines for the plain-text quality report."""
    ref = entry["real_halves"]
    return [f"spectral artifacts (luminance power spectrum, {entry['top_band']}; 1 = like the reals)",
            f"  top-band power ratio fakes/reals {entry['top_band_ratio']:.3f}   reals' own spread "
            f"(half vs half, {ref['splits']} splits) {ref['min']:.3f} - {ref['max']:.3f}"]
