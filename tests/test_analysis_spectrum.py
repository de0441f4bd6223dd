"""dcgan.analysis.spectrum: radial power spectra and the top-band ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan.analysis.spectrum import mean_power, radial_profile, spectrum_plot, spectrum_report
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


def test_plot_is_written(tmp_path: Path) -> None:
    report = spectrum_report(blobs(10, seed=4), with_checkerboard(blobs(10, seed=5)))
    path = spectrum_plot(report, tmp_path / "spectrum.png")
    with Image.open(path) as img:
        assert img.size == (900, 360)
