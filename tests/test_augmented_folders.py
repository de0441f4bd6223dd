"""`augment` writes into INPUT/output/ (Augmentor's convention) and marks the folder; every reader that
searches INPUT then leaves the augmented copies out, saying so in one line, so they never pass for reals."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

import gancontrol
import img2dist
import isic_dataset
from dcgan.images import AUGMENTED_MARKER, find_images
from tests.conftest import make_image


@pytest.fixture
def augmented(tmp_path: Path) -> Path:
    """Four 32x32 reals in real/ and six augmented copies in real/output/, written by the CLI."""
    real = tmp_path / "real"
    for i in range(4):
        make_image(real / f"r{i}.png", size=(32, 32), seed=i)
    result = CliRunner().invoke(isic_dataset.cli, ["augment", str(real), "6", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert (real / "output" / AUGMENTED_MARKER).is_file()
    assert "augment" in (real / "output" / AUGMENTED_MARKER).read_text()
    return real


def test_a_folder_search_skips_augmented_output_and_says_so(augmented: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dcgan"):
        found = find_images(augmented)
    assert [p.name for p in found] == ["r0.png", "r1.png", "r2.png", "r3.png"]
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"skipped the folder {augmented / 'output'}" in message and "name it itself" in message
    assert len(find_images(augmented / "output")) == 6  # named explicitly: read
    assert len(find_images([augmented, augmented / "output"])) == 10
    deeper = augmented.parent  # the marker is honoured at any depth below the named folder
    assert len(find_images(deeper)) == 4
    plain = augmented / "output-of-something-else"  # without the marker a subfolder is read as before
    make_image(plain / "x.png", size=(32, 32))
    assert len(find_images(augmented)) == 5


def test_training_counts_only_the_reals(augmented: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(gancontrol.cli, [
        "training", str(augmented), "1", "4", str(tmp_path / "run"), "--z-dim", "8", "--g-channels", "8",
        "--d-channels", "8", "--quiet"])
    assert result.exit_code == 0, result.output
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "training on 4 images of 32x32" in log
    assert f"skipped the folder {augmented / 'output'}" in log
    assert result.output.count("skipped the folder") == 1  # once: not by both training's log and the CLI


def test_quality_and_embedding_count_only_the_reals(augmented: Path, tmp_path: Path) -> None:
    fakes = tmp_path / "fakes"
    for i in range(3):
        make_image(fakes / f"f{i}.png", size=(32, 32), seed=50 + i)
    result = CliRunner().invoke(img2dist.cli, ["quality", str(augmented), str(fakes), "--metrics", "swd"])
    assert result.exit_code == 0, result.output
    assert f"real: {augmented} (4 images)" in result.output
    assert result.output.count("skipped the folder") == 1
    result = CliRunner().invoke(img2dist.cli, [
        "embedding", str(tmp_path / "map.png"), str(augmented), str(fakes), "--features", "pixels",
        "--method", "pca", "--no-cache", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "7 images ->" in result.output and "skipped the folder" in result.output


def test_turing_draws_no_augmented_copy_as_a_real(augmented: Path, tmp_path: Path) -> None:
    fakes = tmp_path / "fakes"
    for i in range(4):
        make_image(fakes / f"f{i}.png", size=(32, 32), seed=50 + i)
    result = CliRunner().invoke(img2dist.cli, ["turing", str(augmented), str(fakes), str(tmp_path / "site"),
                                               "-n", "8", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "4 real + 4 fake" in result.output and "skipped the folder" in result.output
