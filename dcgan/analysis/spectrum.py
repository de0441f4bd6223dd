"""Spectral artifacts: the azimuthally averaged power spectrum of fakes vs reals (Durall et al. 2020).

Up-sampling layers leave their fingerprint at the highest spatial frequencies (a 2-pixel checkerboard
sits at the corner of the spectrum, a periodic "crackle" near it), where real photographs have little
energy. Each image's luminance, less its mean, goes through a 2-D FFT; the power |F|^2 is averaged
over all images of a set and over rings of equal radial frequency f = sqrt(fx^2 + fy^2) (cycles per
pixel, 0 to 0.71 with the corners). The number reported is the ratio of the fakes' to the reals'
mean power in the top band (f >= 0.375, the top quarter of the axis Nyquist range and the
corners): 1 = as much fine detail as the reals, above 1 = added high-frequency texture, below 1 =
blur. The reals' own spread comes from random halves of the reals against each other.

A periodic pattern (a lattice of marks every few pixels, a checkerboard) puts its power into a few
single frequencies, which the ring average dilutes among the whole ring. So the report also gives
the **peak ratio**: the largest ratio, over the single 2-D frequencies, of the fakes' to the reals'
mean power, and where it is (cycles/pixel and period in pixels), with the same reals' spread.

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


def power_ratio(fake_power: np.ndarray, real_power: np.ndarray) -> np.ndarray:
    """Fakes' over reals' mean power per 2-D frequency (unshifted); 1 where the reals have none
    and at DC (zero in both after subtracting each image's mean)."""
    ratio = np.divide(fake_power, real_power, out=np.ones_like(fake_power), where=real_power > 0)
    ratio.flat[0] = 1.0
    return ratio


def peak_ratio(fake_power: np.ndarray, real_power: np.ndarray) -> tuple[float, tuple[float, float]]:
    """The largest fakes' over reals' mean power at one 2-D frequency (DC excluded), and that
    frequency (fy, fx) in cycles/pixel (the half-plane fx >= 0 of the FFT's symmetric pair)."""
    ratio = power_ratio(fake_power, real_power)
    ratio.flat[0] = 0.0  # DC never counts as the peak
    h, w = ratio.shape
    fy, fx = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    freq = (float(np.fft.fftfreq(h)[fy]), float(np.fft.fftfreq(w)[fx]))
    if freq[1] < 0 or (freq[1] == 0 and freq[0] < 0):
        freq = (-freq[0], -freq[1])
    return float(ratio[fy, fx]), (freq[0] + 0.0, freq[1] + 0.0)


def spectrum_report(real: np.ndarray, fake: np.ndarray, seed: int = 0, splits: int = 20,
                    keep_map: bool = False) -> dict[str, Any]:
    """Top-band and peak power ratios of fakes vs reals, the reals' own spread of both, the radial
    profiles, and with `keep_map` the 2-D ratio (centred, for `spectrum_plot`).

    The spread: `splits` random halves of the reals, one half's ratio against the other's; an
    artifact-free generator's ratio should fall inside [min, max] of those. Halves hold half the
    images, so their peak ratio is noisier than the fakes' against all reals: a generous bar.
    """
    if real.shape[1:3] != fake.shape[1:3]:
        raise ValueError(f"real and fake images differ in size: {real.shape[1:3]} vs {fake.shape[1:3]}")
    pr, pf = mean_power(real), mean_power(fake)
    rng = np.random.default_rng(seed)
    half = len(real) // 2
    ref, ref_peak = [], []
    if half >= 1:
        for _ in range(splits):
            perm = rng.permutation(len(real))
            a, b = mean_power(real[perm[:half]]), mean_power(real[perm[half: 2 * half]])
            ref.append(band_ratio(a, b))
            ref_peak.append(peak_ratio(a, b)[0])
    freq, prof_r = radial_profile(pr)
    _, prof_f = radial_profile(pf)
    peak, (py, px) = peak_ratio(pf, pr)
    report = {"top_band": f"f >= {TOP_BAND} cycles/pixel", "top_band_ratio": band_ratio(pf, pr),
              "real_halves": spread(ref, len(ref)),
              "peak_ratio": peak, "peak_frequency": [py, px], "peak_period": 1 / float(np.hypot(py, px)),
              "real_halves_peak": spread(ref_peak, len(ref_peak)),
              "frequency": freq.tolist(), "real_profile": prof_r.tolist(), "fake_profile": prof_f.tolist()}
    if keep_map:  # an array for the plot, not for the JSON report (a 256 px set would add 65,536 numbers)
        report["ratio_map"] = np.fft.fftshift(power_ratio(pf, pr))
    return report


def spread(values: list[float], splits: int) -> dict[str, Any]:
    """min / median / max of the reals' half-vs-half values (NaN without a split)."""
    nan = float("nan")
    return {"splits": splits, "min": min(values, default=nan), "max": max(values, default=nan),
            "median": float(np.median(values)) if values else nan}


def spectrum_plot(report: dict[str, Any], path: str | Path, labels: tuple[str, str] = ("reals", "fakes"),
                  ratio_map: np.ndarray | None = None) -> Path:
    """Both radial profiles (log power) and their ratio, and with `ratio_map` (spectrum_report's,
    keep_map=True) the 2-D ratio, where a periodic pattern shows as bright dots, as a PNG."""
    from matplotlib.figure import Figure

    from ..files import atomic_path

    f = np.asarray(report["frequency"])
    real, fake = np.asarray(report["real_profile"]), np.asarray(report["fake_profile"])
    fig = Figure(figsize=(9 if ratio_map is None else 13, 3.6), layout="constrained")
    axes = fig.subplots(1, 2 if ratio_map is None else 3)
    ax1, ax2 = axes[:2]
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
    if ratio_map is not None:
        h, w = ratio_map.shape
        extent = (-0.5 - 0.5 / w, 0.5 - 0.5 / w, 0.5 - 0.5 / h, -0.5 - 0.5 / h)  # fftshift puts -0.5 first
        im = axes[2].imshow(np.log10(ratio_map), cmap="RdBu_r", vmin=-1.5, vmax=1.5, extent=extent)
        fig.colorbar(im, ax=axes[2], label=f"log10 {labels[1]} / {labels[0]}")
        peak = report.get("peak_ratio")
        title = "power ratio per frequency" + (f"\n(peak {peak:.1f}x, period {report['peak_period']:.1f} px)"
                                               if peak is not None else "")
        axes[2].set(xlabel="fx (cycles/pixel)", ylabel="fy (cycles/pixel)", title=title)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=100)
    return path


def format_spectrum(entry: dict[str, Any]) -> list[str]:
    """Lines for the plain-text quality report."""
    ref = entry["real_halves"]
    return [f"spectral artifacts (luminance power spectrum, {entry['top_band']}; 1 = like the reals)",
            f"  top-band power ratio fakes/reals {entry['top_band_ratio']:.3f}   reals' own spread "
            f"(half vs half, {ref['splits']} splits) {ref['min']:.3f} - {ref['max']:.3f}",
            *_peak_line(entry)]


def _peak_line(entry: dict[str, Any]) -> list[str]:
    if "peak_ratio" not in entry:  # reports written before the peak ratio existed
        return []
    fy, fx = entry["peak_frequency"]
    ref = entry["real_halves_peak"]
    return [f"  peak ratio (one frequency) {entry['peak_ratio']:.2f} at fy {fy:+.3f}, fx {fx:+.3f} "
            f"cycles/pixel (period {entry['peak_period']:.1f} px)   reals' own spread "
            f"{ref['min']:.2f} - {ref['max']:.2f}"]
