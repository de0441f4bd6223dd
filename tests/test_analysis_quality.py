"""dcgan.analysis.quality and inception: SWD, precision/recall, paired piqa measures, FID/KID."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dcgan.analysis.quality import (
    PR_FEATURES,
    QualityOptions,
    format_quality,
    laplacian_pyramid,
    paired_measures,
    pr_features,
    precision_recall,
    quality_report,
    sliced_wasserstein,
)
from tests.conftest import REPO, make_image


def noise(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def smooth(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Soft color gradients: no high-frequency content at all, unlike `noise`."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        a, b = rng.uniform(40, 215, 3), rng.uniform(-40, 40, 3)
        out[i] = np.clip(a + b * ramp[:, None, None] + b * ramp[None, :, None], 0, 255)
    return out


def test_quality_module_is_cheap_to_import() -> None:
    code = ("import sys, dcgan.analysis.quality; heavy = {'torch', 'piqa', 'matplotlib', 'sklearn'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_laplacian_pyramid_is_a_perfect_reconstruction_for_smooth_images() -> None:
    img = smooth(2, 33).astype(np.float32)  # odd size on purpose
    pyr = laplacian_pyramid(img, 3)
    assert [p.shape[1] for p in pyr] == [33, 17, 9]
    assert np.abs(pyr[0]).mean() < np.abs(img).mean() / 20  # band-pass levels of a smooth image are small


def test_sliced_wasserstein() -> None:
    a, b = noise(12, seed=1), smooth(12, seed=2)
    same = sliced_wasserstein(a, a.copy())
    assert same["mean"] == 0 and list(same["levels"]) == ["32x32", "16x16"]
    assert sliced_wasserstein(a, noise(20, seed=3))["mean"] < sliced_wasserstein(a, b)["mean"] / 3
    assert sliced_wasserstein(a, b, seed=1)["mean"] == pytest.approx(sliced_wasserstein(a, b, seed=2)["mean"],
                                                                     rel=0.2)
    gray = sliced_wasserstein(a[..., :1], b[..., :1])  # (N, H, W, 1) works too
    assert gray["mean"] > 0
    with pytest.raises(ValueError, match="uint8"):
        sliced_wasserstein(a.astype(np.float32), b)
    with pytest.raises(ValueError, match="smaller than"):
        sliced_wasserstein(noise(2, 5), noise(2, 5))


def test_precision_recall() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(0, 1, (200, 4))
    assert precision_recall(real, real.copy(), k=3) == (1.0, 1.0)
    assert precision_recall(real, rng.normal(50, 1, (30, 4)), k=3) == (0.0, 0.0)
    # Fakes collapsed onto a small part of the real distribution: precise, but poor recall.
    p, r = precision_recall(real, rng.normal(0, 0.1, (200, 4)), k=3)
    assert p > 0.9 and r < 0.3
    with pytest.raises(ValueError, match="more than k"):
        precision_recall(real[:3], real, k=3)


@pytest.mark.parametrize("kind", list(PR_FEATURES))
def test_pr_features(kind: str) -> None:
    images = noise(5, 24)
    f = pr_features(images, kind)
    assert f.shape[0] == 5 and f.dtype == np.float32 and np.isfinite(f).all()
    assert not np.allclose(f, pr_features(smooth(5, 24), kind))
    assert pr_features(images[..., :1], kind).shape[0] == 5  # grayscale


def test_paired_measures_identical_and_different() -> None:
    a = smooth(3, 64, seed=4)
    same = paired_measures(a[:1].repeat(3, 0), a[:1].repeat(3, 0))["metrics"]
    assert same["ssim"]["mean"] == pytest.approx(1.0, abs=1e-4)
    assert same["psnr"]["mean"] > 60
    assert same["ms-gmsd"]["mean"] == pytest.approx(0.0, abs=1e-4)
    assert same["haarpsi"]["mean"] == pytest.approx(1.0, abs=1e-3)
    different = paired_measures(noise(3, 64), a)["metrics"]
    assert different["ssim"]["mean"] < 0.2 and different["psnr"]["mean"] < 15
    assert different["mdsi"]["mean"] > same["mdsi"]["mean"]
    for name in ("ssim", "psnr", "haarpsi"):
        assert different[name]["higher_is_better"]


def test_quality_report_resizes_reals_and_says_so(tmp_path: Path) -> None:
    for i in range(5):
        make_image(tmp_path / "reals" / f"r{i}.png", size=(40, 40), seed=i)
        make_image(tmp_path / "fakes" / f"f{i}.png", size=(32, 32), color=(30 * i, 90, 160))
    report = quality_report(str(tmp_path / "reals"), str(tmp_path / "fakes"),
                            QualityOptions(metrics=["swd", "precision-recall", "psnr"], pr_k=2))
    assert report["size"] == [32, 32] and report["real"]["resized"] == 5
    assert "resized 5 of 5 images" in report["notes"][0]
    assert report["swd"]["mean"] > 0 and set(report["paired"]["metrics"]) == {"psnr"}
    assert report["precision_recall"]["precision"] < 0.5
    assert "fid_kid" not in report
    text = format_quality(report)
    assert "resized" in text and "precision" in text and "sliced Wasserstein" in text


def test_fid_kid_run_with_a_local_random_inception(tmp_path: Path) -> None:
    """Random weights prove the code path, not the numbers (those need the pt_inception weights)."""
    import torch
    from torchvision.models import inception_v3

    from dcgan.analysis.inception import frechet_distance, kernel_inception_distance, load_inception

    torch.manual_seed(0)
    weights = tmp_path / "pt_inception-like.pth"
    net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
    torch.save(net.state_dict(), weights)
    model, fid_protocol = load_inception(weights)
    assert fid_protocol and type(model.Mixed_7c).__name__ == "FIDInceptionEMax"
    for i in range(2):
        make_image(tmp_path / "reals" / f"r{i}.png", size=(32, 32), seed=i)
        make_image(tmp_path / "fakes" / f"f{i}.png", size=(32, 32), color=(60 * i, 90, 160))
    report = quality_report(str(tmp_path / "reals"), str(tmp_path / "fakes"),
                            QualityOptions(metrics=["fid-kid"], inception_weights=str(weights)))
    fk = report["fid_kid"]
    assert np.isfinite(fk["fid"]) and np.isfinite(fk["kid_mean"])
    assert "pt_inception" in fk["protocol"] and "FID" in format_quality(report)
    rng = np.random.default_rng(0)
    feats, same_law = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    shifted = rng.normal(1, 1, (200, 8))
    assert abs(kernel_inception_distance(feats, same_law, subsets=5)[0]) < 0.05
    assert kernel_inception_distance(feats, shifted, subsets=5)[0] > 0.5
    assert frechet_distance(feats, feats) == pytest.approx(0, abs=1e-9)


def _random_fid_inception(path: Path) -> Path:
    """A seeded random Inception-v3 state_dict in the 1008-class pt_inception layout."""
    import torch
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
    torch.save(net.state_dict(), path)
    return path


def test_fid_takes_each_image_from_its_own_size_as_pytorch_fid(tmp_path: Path) -> None:
    """Reals 64x64, fakes 90x75: our FID equals pytorch-fid's recipe, not the cross-resized one."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torchvision.transforms.functional import to_tensor

    from dcgan.analysis.inception import frechet_distance, load_inception
    from dcgan.images import crop_resize

    weights = _random_fid_inception(tmp_path / "pt_inception-like.pth")
    reals = [make_image(tmp_path / "reals" / f"r{i}.png", size=(64, 64), seed=i) for i in range(4)]
    fakes = [make_image(tmp_path / "fakes" / f"f{i}.png", size=(90, 75), seed=10 + i) for i in range(4)]
    for p in fakes:  # smooth fakes: their look changes with the resizing path
        Image.open(p).resize((9, 8)).resize((90, 75), Image.Resampling.BILINEAR).save(p)
    model, _ = load_inception(weights)

    def pytorch_fid_way(images: list[Image.Image]) -> np.ndarray:
        # pytorch-fid: ToTensor, bilinear straight to 299 (align_corners=False), 2x - 1, pool3.
        with torch.no_grad():
            x = torch.stack([F.interpolate(to_tensor(im)[None], size=(299, 299), mode="bilinear",
                                           align_corners=False)[0] for im in images])
            return model(2 * x - 1).double().numpy()

    real_imgs = [Image.open(p).convert("RGB") for p in reals]
    fake_imgs = [Image.open(p).convert("RGB") for p in fakes]
    expected = frechet_distance(pytorch_fid_way(real_imgs), pytorch_fid_way(fake_imgs))
    cross = frechet_distance(pytorch_fid_way([crop_resize(im, 90, 75) for im in real_imgs]),
                             pytorch_fid_way(fake_imgs))
    report = quality_report(str(tmp_path / "reals"), str(tmp_path / "fakes"),
                            QualityOptions(metrics=["fid-kid", "psnr"], inception_weights=str(weights)))
    assert report["fid_kid"]["fid"] == pytest.approx(expected, rel=1e-4)
    assert abs(cross - expected) > 1e-2 * expected  # the test can tell the two recipes apart
    # The paired measures need one size: both sets go down to the smaller one, never up.
    assert report["size"] == [64, 64] and report["fake"]["resized"] == 4 and report["real"]["resized"] == 0
    assert "64x64" in report["notes"][0] and "FID/KID from each image's own size" in format_quality(report)


@pytest.mark.parametrize("n", [20, 300])  # fewer and more samples than dimensions
def test_frechet_distance_matches_the_textbook_formula(n: int) -> None:
    from dcgan.analysis.inception import frechet_distance

    rng = np.random.default_rng(n)
    a, b = rng.normal(size=(n, 30)), rng.normal(0.3, 1.5, size=(n + 7, 30)) @ rng.normal(size=(30, 30))
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = (((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a) + np.trace(s_b)
                - 2 * np.sqrt(np.clip(np.linalg.eigvals(s_a @ s_b).real, 0, None)).sum())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_measures_that_need_many_images_say_so(tmp_path: Path) -> None:
    """Few images: a note for precision/recall (and FID when computed); none with enough images or
    when the measure was not asked for."""
    from dcgan.analysis.quality import FEW_FOR_FID, FEW_FOR_PR, few_images_notes

    pr_only = QualityOptions(metrics=["precision-recall"])
    notes = few_images_notes(54, ["precision-recall"], pr_only)
    assert len(notes) == 1 and "precision/recall from 54 images per set" in notes[0]
    assert few_images_notes(FEW_FOR_PR, ["precision-recall"], pr_only) == []
    assert few_images_notes(54, ["swd"], pr_only) == []
    with_fid = QualityOptions(inception_weights="w.pth")
    fid = few_images_notes(FEW_FOR_PR, ["fid-kid"], with_fid)
    assert len(fid) == 1 and "FID from 100 images per set is biased upward" in fid[0]
    assert few_images_notes(FEW_FOR_FID, ["fid-kid", "precision-recall"], with_fid) == []
    assert few_images_notes(54, ["fid-kid"], QualityOptions()) == []  # FID skipped: nothing to say
    for i in range(5):
        make_image(tmp_path / "reals" / f"r{i}.png", size=(32, 32), seed=i)
        make_image(tmp_path / "fakes" / f"f{i}.png", size=(32, 32), seed=10 + i)
    report = quality_report(str(tmp_path / "reals"), str(tmp_path / "fakes"),
                            QualityOptions(metrics=["precision-recall"], pr_k=2))
    assert any("precision/recall from 5 images" in n for n in report["notes"])
    assert "note: precision/recall from 5 images" in format_quality(report)


def test_inception_weights_from_the_environment_variable(tmp_path: Path, monkeypatch) -> None:
    """`quality` takes the weights from ISIC_GAN_INCEPTION_WEIGHTS; the option wins over it, and
    without either FID/KID are skipped with a note saying where to get the file."""
    from click.testing import CliRunner

    from dcgan.analysis.inception import WEIGHTS_ENV, WEIGHTS_FILE
    from img2dist import cli

    weights = _random_fid_inception(tmp_path / WEIGHTS_FILE)
    for i in range(2):
        make_image(tmp_path / "reals" / f"r{i}.png", size=(16, 16), seed=i)
        make_image(tmp_path / "fakes" / f"f{i}.png", size=(16, 16), color=(60 * i, 90, 160))
    args = ["quality", str(tmp_path / "reals"), str(tmp_path / "fakes"), "--metrics", "fid-kid", "--json"]

    def report(env: dict[str, str], *extra: str) -> dict:
        out = tmp_path / f"q{len(list(tmp_path.glob('q*.json')))}.json"
        result = CliRunner().invoke(cli, [*args, str(out), *extra], env=env)
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text())["fid_kid"]

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    by_env = report({WEIGHTS_ENV: str(weights)})
    assert np.isfinite(by_env["fid"]) and "pt_inception" in by_env["protocol"]
    other = tmp_path / "other.pth"
    other.write_text("not weights")
    result = CliRunner().invoke(cli, [*args, str(tmp_path / "o.json"), "--inception-weights", str(other)],
                                env={WEIGHTS_ENV: str(weights)})
    assert result.exit_code == 1 and f"{other}: not a loadable state_dict" in result.output  # the option won
    skipped = report({})["skipped"]
    assert WEIGHTS_ENV in skipped and WEIGHTS_FILE in skipped and "github.com/mseitzer/pytorch-fid" in skipped
    result = CliRunner().invoke(cli, [*args, str(tmp_path / "x.json")], env={WEIGHTS_ENV: "/no/such.pth"})
    assert result.exit_code == 2 and "/no/such.pth" in result.output and "Traceback" not in result.output
