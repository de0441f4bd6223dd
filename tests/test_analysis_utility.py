"""img2dist.py utility: do the fakes help a classifier? On two classes of lesion-like images the tests make.

The classes differ in a known, learnable way: the malignant lesions are bluer (blue up, red down by
SHIFT) among lesion colours that vary much more than that. Five real training images per class
teach it poorly; eighty faithful fakes per class teach it well, and label-swapped ones teach the
opposite.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

import img2dist
from dcgan.analysis.utility import (
    BALANCE,
    REAL_ONLY,
    SYNTHETIC_ONLY,
    ClassFolder,
    UtilityOptions,
    draw_fakes,
    load_weights,
    regimes,
    replicate_scores,
    scores,
    small_cnn,
    train_classifier,
)
from dcgan.errors import UserError
from tests.conftest import lesion_images

SHIFT = 40
CLASSES = ("benign", "malignant")


def lesions(n: int, malignant: bool, seed: int) -> np.ndarray:
    """16 px lesions whose colour varies by more than SHIFT; malignant ones are bluer by SHIFT."""
    return lesion_images(n, 16, seed, centre=(0.3, 0.7), radius=(0.15, 0.3), lesion=(50, 130), noise=8,
                         shift=(-SHIFT, 0, SHIFT) if malignant else (0, 0, 0))


def write_folder(root: Path, n: int, seed: int, names: tuple[str, str] = CLASSES) -> Path:
    for malignant, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i, img in enumerate(lesions(n, bool(malignant), seed * 10 + malignant)):
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """16 px batches are too small to share: a second thread only waits, and on a busy machine two
    spinning threads made this file take half an hour of wall time instead of a minute."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("utility")
    write_folder(root / "train", 5, seed=1)
    write_folder(root / "fakes", 80, seed=2)
    write_folder(root / "swapped", 80, seed=2, names=CLASSES[::-1])  # the same fakes, labels swapped
    write_folder(root / "test", 60, seed=3)
    return root


def run(sets: Path, fakes: str, out: Path, *extra: str) -> tuple[dict, str]:
    result = CliRunner().invoke(img2dist.cli, [
        "utility", str(sets / "train"), str(sets / fakes), str(sets / "test"), "--json", str(out),
        "--shares", "16", "--epochs", "15", "--bootstrap", "500", "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


def test_faithful_fakes_raise_auc_and_fakes_alone_beat_chance(sets: Path, tmp_path: Path) -> None:
    report, output = run(sets, "fakes", tmp_path / "u.json")
    test = report["test"]
    assert list(test) == [REAL_ONLY, "real + 1600% synthetic", SYNTHETIC_ONLY]  # balanced: no rare-class mode
    assert report["regimes"]["real + 1600% synthetic"] == {"real": {"benign": 5, "malignant": 5},
                                                          "synthetic": {"benign": 80, "malignant": 80}}
    added = test["real + 1600% synthetic"]
    assert added["difference"]["ci"][0] > 0, added  # the gain is beyond the interval
    assert added["roc_auc"]["mean"] > test[REAL_ONLY]["roc_auc"]["ci"][1]
    assert test[SYNTHETIC_ONLY]["roc_auc"]["ci"][0] > 0.5  # train on fakes, test on reals: beats chance
    for entry in test.values():
        low, high = entry["roc_auc"]["ci"]
        assert low <= entry["roc_auc"]["mean"] <= high and len(entry["roc_auc"]["seeds"]) == 3
    assert report["positive"] == "malignant" and report["folders"]["TEST_REAL"]["images"]["benign"] == 60
    assert "real + 1600% synthetic" in output and "sensitivity" in output
    plot = Image.open(report["plot"])
    assert plot.format == "PNG" and plot.width > 600


def test_label_swapped_fakes_lower_auc(sets: Path, tmp_path: Path) -> None:
    report, _ = run(sets, "swapped", tmp_path / "u.json", "--seeds", "2")
    for regime in ("real + 1600% synthetic", SYNTHETIC_ONLY):
        assert report["test"][regime]["difference"]["ci"][1] < 0, report["test"][regime]
    assert report["test"][SYNTHETIC_ONLY]["roc_auc"]["ci"][1] < 0.5  # it learnt the opposite


def error_of(*args: str) -> str:
    result = CliRunner().invoke(img2dist.cli, ["utility", *args])
    assert result.exit_code == 1
    return result.output.strip()


def test_a_test_image_among_the_training_images_is_refused(sets: Path, tmp_path: Path) -> None:
    train = tmp_path / "train"
    shutil.copytree(sets / "train", train)
    # the same pixels under another name and in another (lossless) format are the same image
    Image.open(sets / "test" / "malignant" / "7.png").save(train / "malignant" / "copy.bmp")
    message = error_of(str(train), str(sets / "fakes"), str(sets / "test"))
    assert message.count("\n") == 0 and "1 of its images are also training images" in message
    assert "7.png" in message and "copy.bmp" in message
    train, fakes, test = (str(sets / name) for name in ("train", "fakes", "test"))
    message = error_of(train, fakes, fakes, "--ood", test)
    assert message.startswith(f"Error: {sets / 'fakes'}: 160 of its images")


def test_missing_class_too_few_images_and_loose_images_are_refused(sets: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    shutil.copytree(sets / "fakes" / "benign", one / "benign")
    message = error_of(str(sets / "train"), str(one), str(sets / "test"))
    assert message == (f"Error: {one}: no class folder malignant/ (or no readable image in it), but "
                       "TRAIN_REAL has one; every folder needs the classes benign, malignant")
    few = tmp_path / "few"
    shutil.copytree(sets / "train", few)
    (few / "benign" / "0.png").unlink()
    assert error_of(str(few), str(sets / "fakes"), str(sets / "test")) == (
        f"Error: {few / 'benign'}: 4 readable images, TRAIN_REAL needs at least 5 per class")
    shutil.copy(sets / "train" / "benign" / "0.png", few / "loose.png")
    fakes, test = str(sets / "fakes"), str(sets / "test")
    assert "TRAIN_REAL needs one subfolder per class" in error_of(str(few), fakes, test)
    assert "--shares" in error_of(str(sets / "train"), fakes, test, "--shares", "a")


def folder(counts: dict[str, int]) -> ClassFolder:
    labels = np.repeat(np.arange(len(counts)), list(counts.values()))
    return ClassFolder(Path("x"), np.empty(0), labels, list(counts), [], [])


def test_regimes_draw_shares_per_class_and_fill_the_rare_class() -> None:
    train, fake = folder({"benign": 40, "malignant": 10}), folder({"benign": 30, "malignant": 25})
    draws = regimes(train, UtilityOptions(shares=(0.5, 2)))
    assert list(draws) == [REAL_ONLY, "real + 50% synthetic", "real + 200% synthetic", BALANCE,
                           SYNTHETIC_ONLY]

    def per_class(name: str, seed: int = 0) -> list[int]:
        chosen = draw_fakes(draws[name], train, fake, np.random.default_rng(seed))
        assert len(set(chosen)) == len(chosen)  # without replacement
        return np.bincount(fake.labels[chosen], minlength=2).tolist()

    assert per_class(REAL_ONLY) == [0, 0]
    assert per_class("real + 50% synthetic") == [20, 5]
    assert per_class("real + 200% synthetic") == [30, 20]  # as many as there are
    assert per_class(BALANCE) == [0, 25]  # up to 40 wanted, 25 made
    assert per_class(SYNTHETIC_ONLY) == [30, 25]
    assert BALANCE not in regimes(folder({"a": 5, "b": 5}), UtilityOptions())
    half = draws["real + 50% synthetic"]
    same, other = (draw_fakes(half, train, fake, np.random.default_rng(s)) for s in (1, 2))
    assert not np.array_equal(same, other)


def test_vectorised_bootstrap_scores_equal_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    prob = np.round(rng.dirichlet([1, 1], 50), 1)  # rounded: ties, which count half
    idx = rng.integers(0, 50, (4, 50))
    got = replicate_scores(y, prob, 1, 0.5, idx)
    for b in range(4):
        assert got["roc_auc"][b] == pytest.approx(roc_auc_score(y[idx[b]], prob[idx[b], 1]))
        assert got["sensitivity"][b] == pytest.approx(scores(y[idx[b]], prob[idx[b]], 1, 0.5)["sensitivity"])
    y3, prob3 = rng.integers(0, 3, 60), rng.dirichlet([1, 1, 1], 60)
    got3 = replicate_scores(y3, prob3, None, 0.5, np.arange(60)[None])
    assert got3["balanced_accuracy"][0] == pytest.approx(balanced_accuracy_score(y3, prob3.argmax(1)))


def test_same_seed_same_network_and_weights_file(tmp_path: Path) -> None:
    x = torch.randn(12, 3, 16, 16)
    y = torch.arange(12) % 2
    opts = UtilityOptions(width=4, batch_size=4)
    a, b = (train_classifier(x, y, 2, 3, opts, seed=5) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(),
                                                  strict=True))
    c = train_classifier(x, y, 2, 3, opts, seed=6)
    assert not torch.equal(a.state_dict()["0.weight"], c.state_dict()["0.weight"])
    torch.save(a.state_dict(), tmp_path / "w.pt")  # two classes; load into a three-class network
    three = small_cnn(3, 4)
    load_weights(three, str(tmp_path / "w.pt"))
    assert torch.equal(three.state_dict()["0.weight"], a.state_dict()["0.weight"])
    assert three.state_dict()["11.weight"].shape[0] == 3  # the last layer keeps its own init
    (tmp_path / "bad.pt").write_text("not weights")
    with pytest.raises(UserError, match=r"bad\.pt: not a readable PyTorch weights file"):
        load_weights(three, str(tmp_path / "bad.pt"))
