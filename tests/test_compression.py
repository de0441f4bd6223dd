"""Fakes stored like the reals: a run records how its training files were compressed, `generate`
writes JPEGs with the very same tables and subsampling, and `quality` notes any difference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dcgan.compression import LOSSLESS, RESIZED, Compression, common_compression, file_compression, jpeg
from dcgan.errors import UserError
from dcgan.generate import output_compression
from dcgan.spec import RunSpec
from dcgan.training.checkpoint import load_checkpoint
from gancontrol import cli as gancontrol
from img2dist import cli as img2dist
from tests.conftest import make_image

TINY = ["--resolution", "16", "--z-dim", "8", "--g-channels", "8", "--d-channels", "8", "--quiet"]


def noise(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def jpegs(folder: Path, n: int, size: int = 16, **save: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(noise(i, size)).save(folder / f"r{i}.jpg", **save)
    return folder


def invoke(cli: object, *args: object, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])  # type: ignore[arg-type]
    assert (result.exit_code == 0) == ok, result.output + repr(result.exception)
    return result.output


@pytest.mark.parametrize("quality", [5, 30, 50, 75, 95, 100])
def test_a_files_quality_is_named_and_its_tables_reused_exactly(tmp_path: Path, quality: int) -> None:
    Image.fromarray(noise(0)).save(tmp_path / "a.jpg", quality=quality)  # Pillow = libjpeg's tables
    found = file_compression(tmp_path / "a.jpg")
    assert (found.quality, found.subsampling) == (quality, "4:2:0")
    assert found.describe() == f"JPEG quality {quality}, 4:2:0"
    assert found == jpeg(quality)
    found.save(noise(1), tmp_path / "b.jpg")
    assert file_compression(tmp_path / "b.jpg") == found  # tables and subsampling copied, not rescaled
    # and what `roundtrip` gives (the evaluations during training) is what the file reads back as
    assert np.array_equal(found.roundtrip(noise(1)[None])[0], np.asarray(Image.open(tmp_path / "b.jpg")))


def test_non_standard_tables_and_subsampling_are_copied_as_they_are(tmp_path: Path) -> None:
    # A camera's or another encoder's tables are not libjpeg's for any quality: copied verbatim.
    tables = [[(i % 13) + 2 for i in range(64)], [(i % 7) + 9 for i in range(64)]]
    Image.fromarray(noise(0)).save(tmp_path / "a.jpg", qtables=tables, subsampling="4:4:4")
    found = file_compression(tmp_path / "a.jpg")
    assert found.qtables == tuple(tuple(t) for t in tables) and found.subsampling == "4:4:4"
    found.save(noise(2), tmp_path / "b.jpg")
    assert file_compression(tmp_path / "b.jpg") == found
    gray = found.roundtrip(noise(3)[None, :, :, :1])  # grayscale: the luminance table alone
    assert gray.shape == (1, 16, 16, 1)
    assert Compression.from_dict(json.loads(json.dumps(found.to_dict()))) == found


def test_the_common_compression_of_a_folder(tmp_path: Path) -> None:
    folder = jpegs(tmp_path / "mixed", 3, quality=80)
    make_image(folder / "p.png", (16, 16))
    assert common_compression(sorted(folder.iterdir())) == jpeg(80)  # the majority
    assert common_compression(sorted(folder.iterdir()), resolution=8).format == RESIZED  # pixels resampled
    pngs = [make_image(tmp_path / f"{i}.png", (16, 16), seed=i) for i in range(3)]
    assert common_compression(pngs) == LOSSLESS and common_compression([]) == LOSSLESS


def test_generate_stores_fakes_like_the_training_images(tmp_path: Path) -> None:
    reals = jpegs(tmp_path / "reals", 8, quality=60)
    run = tmp_path / "run"
    invoke(gancontrol, "training", reals, 2, 4, run, *TINY)
    assert "training images stored as JPEG quality 60, 4:2:0: generate writes JPEGs alike" in (
        run / "log.txt").read_text()
    assert json.loads((run / "options.json").read_text())["compression"]["quality"] == 60
    assert RunSpec.from_checkpoint(load_checkpoint(run)).compression == jpeg(60)

    out = invoke(gancontrol, "generate", run, 3, tmp_path / "auto", "--quiet")
    assert "(JPEG quality 60, 4:2:0)" in out
    files = sorted((tmp_path / "auto").iterdir())
    assert [p.name for p in files] == [f"seed{s:06d}.jpg" for s in range(3)]
    assert all(file_compression(p) == jpeg(60) for p in files)
    invoke(gancontrol, "generate", run, 2, tmp_path / "png", "--format", "png", "--quiet")
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["seed000000.png", "seed000001.png"]
    # the same image, before and after the training images' compression
    a = np.asarray(Image.open(tmp_path / "png" / "seed000000.png"), dtype=float)
    b = np.asarray(Image.open(files[0]), dtype=float)
    assert 0 < np.abs(a - b).mean() < 40
    invoke(gancontrol, "generate", run, 1, tmp_path / "q90", "--jpeg-quality", 90, "--quiet")
    assert file_compression(tmp_path / "q90" / "seed000000.jpg") == jpeg(90)
    error = invoke(gancontrol, "generate", run, 1, tmp_path / "bad", "--format", "png", "--jpeg-quality", 90,
                   ok=False)
    assert error.strip().splitlines()[-1] == ("Error: --jpeg-quality applies to JPEG output; drop it or pass "
                                              "--format jpg")
    assert not (tmp_path / "bad").exists()

    # Trained at another size, the pixels are a resampling: no compression left to copy.
    resized = tmp_path / "resized"
    invoke(gancontrol, "training", jpegs(tmp_path / "big", 8, 32, quality=60), 1, 4, resized, *TINY)
    assert "resized to the training size" in (resized / "log.txt").read_text()
    invoke(gancontrol, "generate", resized, 1, tmp_path / "r", "--quiet")
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["seed000000.png"]


def test_output_compression_of_runs_that_did_not_record_it() -> None:
    from dcgan.options import TrainOptions

    old = RunSpec(TrainOptions(), 3)  # saved before runs recorded their compression
    assert output_compression(old) == LOSSLESS
    assert output_compression(old, "jpg") == jpeg(95)
    assert output_compression(old, "auto", 70) == jpeg(70)
    trained = RunSpec(TrainOptions(), 3, compression=jpeg(50, "4:4:4"))
    assert output_compression(trained, "jpg") == jpeg(50, "4:4:4")
    assert output_compression(trained, "auto", 80) == jpeg(80, "4:4:4")  # quality changed, subsampling kept
    with pytest.raises(UserError, match="--format 'gif'"):
        output_compression(trained, "gif")


def test_quality_notes_when_reals_and_fakes_are_stored_differently(tmp_path: Path) -> None:
    reals = jpegs(tmp_path / "reals", 6, quality=75)
    fakes = tmp_path / "fakes"
    for i in range(6):
        make_image(fakes / f"f{i}.png", (16, 16), seed=20 + i)
    out = invoke(img2dist, "quality", reals, fakes, "--metrics", "swd", "--json", tmp_path / "q.json")
    assert ("note: reals stored as JPEG quality 75, 4:2:0, fakes as PNG: the spectrum and the classifier "
            "test also see the compression") in out
    report = json.loads((tmp_path / "q.json").read_text())
    assert (report["real"]["compression"], report["fake"]["compression"]) == ("JPEG quality 75, 4:2:0", "PNG")
    same = jpegs(tmp_path / "same", 6, quality=75)
    assert "note:" not in invoke(img2dist, "quality", reals, same, "--metrics", "swd")


def test_evaluations_during_training_score_the_fakes_as_generate_stores_them(tmp_path: Path) -> None:
    from dcgan.analysis.spectrum import band_ratio, mean_power
    from dcgan.training.evaluate import EVAL_SEED_OFFSET

    reals = jpegs(tmp_path / "reals", 8, quality=40)
    run = tmp_path / "run"
    invoke(gancontrol, "training", reals, 2, 4, run, *TINY, "--eval-every", 2, "--eval-images", 8)
    logged = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()
              if "spectrum_ratio" in line][-1]["spectrum_ratio"]
    real_power = mean_power(np.stack([np.asarray(Image.open(p)) for p in sorted(reals.iterdir())]))
    ratios = {}
    for fmt in ("auto", "png"):  # the evaluation's latents are generate's seeds from EVAL_SEED_OFFSET
        invoke(gancontrol, "generate", run, 8, tmp_path / fmt, "--seed", EVAL_SEED_OFFSET, "--format", fmt,
               "--quiet")
        fakes = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / fmt).iterdir())])
        ratios[fmt] = band_ratio(mean_power(fakes), real_power)
    assert logged == pytest.approx(ratios["auto"], rel=1e-4)
    assert logged != pytest.approx(ratios["png"], rel=1e-2)
