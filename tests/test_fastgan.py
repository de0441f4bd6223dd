"""The few-shot architecture (`--arch fastgan`): its networks, and every toolkit path with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.errors import UserError
from dcgan.fastgan import FewShotDiscriminator, FewShotGenerator, small_size
from dcgan.models import size_plan
from dcgan.training.checkpoint import load_checkpoint
from tests.conftest import checkpoint_tensors
from tests.test_small_data import make_two_classes
from tests.test_training import error_of, run, train_tiny

FASTGAN = ["--arch", "fastgan", "--g-channels", "4", "--d-channels", "4"]


@pytest.mark.parametrize(("size", "noise_sizes", "excited", "logits"),
                         [(32, [16, 16], [], 2 * 25), (40, [20, 20], [], 2 * 49),
                          (64, [8, 8, 32, 32], ["4"], 2 * 25), (160, [20, 20, 80, 80], ["4", "5"], 2 * 49),
                          (256, [8, 8, 32, 32, 128, 128], ["4", "5", "6"], 2 * 25)])
def test_shapes_noise_maps_and_excitation_by_size(size: int, noise_sizes: list[int], excited: list[str],
                                                  logits: int) -> None:
    torch.manual_seed(0)
    G, D = FewShotGenerator(size, z_dim=8, width=2), FewShotDiscriminator(size, width=2)
    assert G.noise_sizes == noise_sizes and G.latent_dim == 8 + sum(s * s for s in noise_sizes)
    assert list(G.excite) == excited  # the map 16x larger than the base map and up is gated
    x = G(torch.randn(3, G.latent_dim))
    assert x.shape == (3, 3, size, size) and x.abs().max() <= 1
    out, loss = D(x, reconstruct=True)
    assert out.shape == (3 * logits,) and loss.ndim == 0 and loss > 0
    assert D(x).shape == (3 * logits,)
    assert small_size(size) == size // 2


def test_too_small_for_the_architecture_is_a_one_line_error(tmp_path: Path) -> None:
    assert size_plan(16) == (4, 2)
    with pytest.raises(UserError, match=r"--resolution 16: .* at least 32 for --arch fastgan"):
        size_plan(16, "--resolution", "fastgan")
    out = error_of("training", tmp_path, 1, 8, tmp_path / "run", "--resolution", "16", "--arch", "fastgan")
    assert "at least 32 for --arch fastgan" in out and not (tmp_path / "run").exists()


def test_ds_reconstruction_task_is_learned() -> None:
    # D alone, trained only on rebuilding 16 fixed images: its loss must fall, so the task is wired to
    # D's own features (a decoder fed from nothing would not learn the image).
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    radius = torch.rand(16, 1, 1) * 0.5 + 0.2
    disc = ((xx ** 2 + yy ** 2) < radius ** 2).float()
    images = torch.stack([disc * 1.2 - 0.6, disc * -0.8 + 0.3, disc * 0.5], dim=1)
    D = FewShotDiscriminator(32, width=8)
    opt = torch.optim.Adam(D.parameters(), lr=2e-3)
    losses = []
    for _ in range(60):
        _, loss = D(images, reconstruct=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def test_generator_excitation_carries_the_coarse_map_to_the_fine_one() -> None:
    torch.manual_seed(0)
    G = FewShotGenerator(64, z_dim=8, width=2).eval()
    z = torch.randn(2, G.latent_dim)
    with torch.no_grad():
        before = G(z)
        gate = G.excite["4"].main[-2]  # the last conv before the sigmoid
        gate.parametrizations.weight.original.zero_()  # every gate then reads sigmoid(0) = 0.5
        after = G(z)
    assert not torch.allclose(before, after, atol=1e-3)


@pytest.mark.parametrize("extra", [[], ["--loss", "hinge", "--diffaug", "color,translation", "--d-input",
                                        "image+fine", "--mode-seeking", "0.5", "--d-spectrum"]],
                         ids=["small-data", "hinge-color-fine-spectrum"])
def test_fastgan_resume_is_bit_identical(tmp_path: Path, extra: list[str]) -> None:
    one_go = train_tiny(tmp_path / "a", 4, *FASTGAN, "--preset", "small-data", *extra)
    split = train_tiny(tmp_path / "b", 2, *FASTGAN, "--preset", "small-data", *extra)
    run("resume", split, "--steps", 4, "--quiet")
    a, b = checkpoint_tensors(load_checkpoint(one_go)), checkpoint_tensors(load_checkpoint(split))
    assert a.keys() == b.keys() and any(k.startswith("D.decode_part.") for k in a)
    assert any(k.startswith("D.spectrum.") for k in a) == ("--d-spectrum" in extra)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_fastgan_generates_overviews_walks_and_evaluations(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "run", 2, *FASTGAN, "--noise", "--eval-every", "2", "--eval-images", "16")
    log = (out / "log.txt").read_text()
    assert "fastgan D on image" in log and "noise inputs at 16, 16 px" in log
    evals = [r for r in map(json.loads, (out / "stats.jsonl").read_text().splitlines()) if "swd" in r]
    assert [e["step"] for e in evals] == [2] and evals[0]["swd"] > 0
    run("generate", out, 3, tmp_path / "g1", "--batch-size", 1, "--quiet")
    run("generate", out, 3, tmp_path / "g2", "--batch-size", 3, "--quiet")
    for p in (tmp_path / "g1").iterdir():  # the noise maps come from each seed: batches do not matter
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(tmp_path / "g2" / p.name)))
    run("generate", out, 4, tmp_path / "ov", "--overview", "--quiet")
    run("generate", out, 2, tmp_path / "walk", "--interpolate", "3", "--quiet")
    assert len(list((tmp_path / "walk").iterdir())) >= 1


def test_fastgan_conditional_run_projects_classes(tmp_path: Path) -> None:
    data = make_two_classes(tmp_path / "data", n=8)
    out = tmp_path / "run"
    run("training", data, 2, 8, out, "--conditional", *FASTGAN, "--z-dim", "8", "--quiet")
    ckpt = load_checkpoint(out)
    assert ckpt["class_names"] == ["benign", "malignant"]
    assert "embed.parametrizations.weight.original" in ckpt["D"]
    run("generate", out, 2, tmp_path / "m", "--class", "malignant", "--quiet")
    assert len(list((tmp_path / "m").glob("malignant_seed*.png"))) == 2


def test_a_damaged_fastgan_checkpoint_is_named(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "run", 1, *FASTGAN)
    good = torch.load(out / "checkpoint.pt", weights_only=True)
    key = next(k for k in good["D"] if k.startswith("decode_part."))
    torch.save({**good, "D": {k: v for k, v in good["D"].items() if k != key}}, tmp_path / "bad.pt")
    msg = error_of("generate", tmp_path / "bad.pt", 1, tmp_path / "g")
    assert "D weights do not fit" in msg and key in msg
