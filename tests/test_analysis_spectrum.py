"""dcgan.analysis.spectrum: radial power spectra, the top-band ratio and the peak ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan.analysis.spectrum import (
    format_spectrum,
    mean_power,
    radial_profile,
    spectrum_plot,
    spectrum_report,
)
from tests.test_analysis_c2st import blobs, with_checkerboard


def test_a_sinusoid_peaks_at_its_frequency() -> None:
    size, cycles = 32, 5
    wave = 127 + 100 * np.sin(2 * np.pi * cycles * np.arange(size) / size)
    img = np.repeat(np.tile(wave, (size, 1))[None, ..., None], 3, axis=3).astype(np.uint8)
    freq, profile = radial_profile(mean_power(img))
    assert freq[np.argmax(profile)] == pytest.approx(cycles / size)


def test_planted_checkerboard_is_far_from_one_and_a_set_against_itself_is_one() -> None:
    reals = blobs(40, size=32, seed=1)
    same = spectrum_report(reals, reals.copy())
    assert same["top_band_ratio"] == pytest.approx(1.0)
    ref = same["real_halves"]
    assert ref["splits"] == 20 and 0.7 < ref["min"] <= ref["median"] <= ref["max"] < 1.4
    texture = spectrum_report(reals, with_checkerboard(blobs(40, size=32, seed=2), 10))
    assert texture["top_band_ratio"] > 5 * ref["max"]
    blurred = np.asarray([np.asarray(Image.fromarray(x).resize((16, 16)).resize((32, 32), Image.BILINEAR))
                          for x in blobs(40, size=32, seed=3)])
    assert spectrum_report(reals, blurred)["top_band_ratio"] < 0.5 * ref["min"]
    low = np.asarray(texture["frequency"]) < 0.2  # the texture adds nothing at low frequencies
    ratio = np.asarray(texture["fake_profile"]) / np.asarray(texture["real_profile"])
    assert np.all((ratio[low] > 0.5) & (ratio[low] < 2))


def with_lattice(images: np.ndarray, period: int = 8, amplitude: int = 30) -> np.ndarray:
    """A small dark mark every `period` pixels in both directions, at a random strength per image."""
    rng = np.random.default_rng(0)
    out = images.astype(int)
    for img in out:
        img[period // 2::period, period // 2::period] -= int(rng.uniform(0.5, 1) * amplitude)
    return np.clip(out, 0, 255).astype(np.uint8)


def test_a_lattice_is_caught_by_the_peak_ratio_which_the_ring_average_dilutes() -> None:
    reals = blobs(60, size=32, seed=1)
    same = spectrum_report(reals, reals.copy())
    assert same["peak_ratio"] == pytest.approx(1.0)
    ref = same["real_halves_peak"]
    assert ref["splits"] == 20 and 1 < ref["min"] <= ref["max"] < 5
    clean = spectrum_report(reals, blobs(60, size=32, seed=2))
    assert clean["peak_ratio"] < 1.5 * ref["max"]
    lattice = spectrum_report(reals, with_lattice(blobs(60, size=32, seed=2)))
    assert lattice["peak_ratio"] > 4 * ref["max"]
    fy, fx = lattice["peak_frequency"]
    assert (abs(fy) * 8) % 1 == 0 and (abs(fx) * 8) % 1 == 0 and (fy, fx) != (0, 0)  # a multiple of 1/8
    assert fx >= 0 and lattice["peak_period"] == pytest.approx(1 / np.hypot(fy, fx))
    # the same marks hardly move the top band: the ring average spreads them over a whole ring
    assert lattice["top_band_ratio"] < same["real_halves"]["max"] * 1.5
    assert "peak ratio (one frequency)" in format_spectrum(lattice)[2]


def test_plot_is_written(tmp_path: Path) -> None:
    report = spectrum_report(blobs(10, seed=4), with_checkerboard(blobs(10, seed=5)))
    path = spectrum_plot(report, tmp_path / "spectrum.png")
    with Image.open(path) as img:
        assert img.size == (900, 360)
    report = spectrum_report(blobs(10, seed=4), with_lattice(blobs(10, seed=5)), keep_map=True)
    ratio_map = report.pop("ratio_map")
    assert ratio_map.shape == (16, 16) and ratio_map[8, 8] == 1.0  # centred: DC in the middle
    with Image.open(spectrum_plot(report, tmp_path / "with_map.png", ratio_map=ratio_map)) as img:
        assert img.size == (1300, 360)


def test_old_reports_without_a_peak_still_format() -> None:
    report = spectrum_report(blobs(10, seed=4), blobs(10, seed=5))
    for key in ("peak_ratio", "peak_frequency", "peak_period", "real_halves_peak"):
        del report[key]
    assert len(format_spectrum(report)) == 2
