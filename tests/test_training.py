"""gancontrol.py end to end on tiny settings: artifacts, exact resume, generation, configs, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dcgan.generate import load_generator, truncated_latents
from dcgan.models import latents_for_seeds
from dcgan.training.checkpoint import load_checkpoint
from gancontrol import cli
from tests.conftest import REPO, TRAINING_DATA, checkpoint_tensors, make_image

TINY = ["--resolution", "32", "--z-dim", "16", "--g-channels", "8", "--d-channels", "8", "--quiet",
        "--preset", "sngan-diffaug"]  # SN D, hinge, DiffAugment, EMA: the most code paths in one run


def run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def train_tiny(out: Path, steps: int = 4, *extra: str, images: Path = TRAINING_DATA) -> Path:
    run("training", images, steps, 8, out, *TINY, *extra)
    return out


def test_short_run_writes_every_artifact(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "run", 6, "--log-every", "2", "--sample-every", "3", "--keep-checkpoints",
                     "--checkpoint-every", "3")
    names = sorted(p.name for p in out.iterdir())
    assert names == [".lock", "checkpoint-0000003.pt", "checkpoint-0000006.pt", "checkpoint.pt", "log.txt",
                     "loss_curve.png", "options.json", "samples", "stats.jsonl"]
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step_0000000.png", "step_0000003.png", "step_0000006.png"]
    grid = Image.open(out / "samples" / "step_0000006.png")
    assert grid.size == (8 * 34 + 2, 8 * 34 + 2)  # 64 images of 32 px, 2 px padding
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats] == [2, 4, 6]
    assert stats[-1]["images_seen"] == 48
    for key in ("loss_d", "loss_g", "d_real", "d_fake", "sec_per_step", "images_per_sec"):
        assert all(np.isfinite(s[key]) for s in stats), key
    opts = json.loads((out / "options.json").read_text())
    assert opts["resolution"] == 32 and opts["z_dim"] == 16 and opts["steps"] == 6
    assert Image.open(out / "loss_curve.png").size[0] >= 600
    assert "step 6: loss_d" in (out / "log.txt").read_text()
    assert " s in training steps, " in (out / "log.txt").read_text()  # periodic work timed apart (ETA)
    ckpt = load_checkpoint(out)
    assert ckpt["step"] == 6 and set(ckpt) >= {"G", "D", "G_ema", "opt_g", "opt_d", "rng", "latent_rng",
                                               "batch_order", "options"}


VARIANT = ["--loss", "ragan", "--arch", "sngan", "--gp", "r1", "--d-steps", "2", "--upsample", "resize",
           "--mbstd", "4", "--noise", "--d-spectrum", "--rgb-layer", "conv-noise", "--g-supersample",
           "--noise-per-image", "--sparse-noise", "--hair-noise", "--d-coarse", "2"]


# The 2018 recipe (DCGAN D with BatchNorm, bce, no EMA; here also D's low-pass and G's RGB conv),
# and a WGAN-GP / DRAGAN-style run too: every path whose state (BatchNorm buffers, penalty noise,
# optimiser moments) must survive a resume.
CLASSIC = ["--preset", "classic", "--label-smoothing", "0.9", "--downsample", "blur", "--rgb-layer", "conv"]
WGAN_GP = ["--preset", "classic", "--loss", "wgan", "--gp", "wgan", "--lr-d", "1e-4"]
DRAGAN = ["--loss", "lsgan", "--gp", "dragan", "--diffaug", "color,flip,rot90,translation-reflect",
          "--mode-seeking", "1", "--d-coarse", "4", "--upsample-last", "blur"]


@pytest.mark.parametrize("extra", [[], VARIANT, CLASSIC, WGAN_GP, DRAGAN],
                         ids=["sngan-diffaug", "ragan-sngan-r1-mbstd-spectrum-coarse-noise-variants",
                              "classic", "wgan-gp", "dragan-diffaug-modeseeking-coarse-lastblur"])
def test_resume_is_bit_identical(tmp_path: Path, extra: list[str]) -> None:
    one_go = train_tiny(tmp_path / "a", 6, *extra)
    split = train_tiny(tmp_path / "b", 3, *extra)
    run("resume", split, "--steps", 6, "--quiet")
    a, b = checkpoint_tensors(load_checkpoint(one_go)), checkpoint_tensors(load_checkpoint(split))
    assert a.keys() == b.keys() and len(a) > 20
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []
    assert load_checkpoint(split)["step"] == 6
    steps = [json.loads(x)["step"] for x in (split / "stats.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 6


def test_lazy_penalty_runs_every_nth_d_update_n_times_as_strong_and_across_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--gp-every 4 with --d-steps 2: D updates 0..11 over 6 cycles, the penalty on 0, 4 and 8, each
    weighted 4x; a run split by a resume penalises the same updates (the clock is the step)."""
    from dcgan.training import trainer

    calls: list[float] = []

    def counted(discriminator: object, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        calls.append(1.0)
        return trainer.GRADIENT_PENALTIES["none_r1"](discriminator, real, fake)

    monkeypatch.setitem(trainer.GRADIENT_PENALTIES, "none_r1", trainer.GRADIENT_PENALTIES["r1"])
    monkeypatch.setitem(trainer.GRADIENT_PENALTIES, "r1", counted)
    lazy = ["--gp", "r1", "--gp-every", "4", "--d-steps", "2"]
    one_go = train_tiny(tmp_path / "a", 6, *lazy)
    assert len(calls) == 3
    calls.clear()
    split = train_tiny(tmp_path / "b", 3, *lazy)
    assert len(calls) == 2  # D updates 0 and 4 of 0..5
    run("resume", split, "--steps", 6, "--quiet")
    assert len(calls) == 3  # and 8 of 6..11
    a, b = checkpoint_tensors(load_checkpoint(one_go)), checkpoint_tensors(load_checkpoint(split))
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    # N times as strong: a constant penalty of 1 (no gradient, so the weights follow the run without
    # one) adds 4 x --gp-weight to D's loss on updates 0 and 4, and nothing on the others.
    monkeypatch.setitem(trainer.GRADIENT_PENALTIES, "r1", lambda d, r, f: torch.ones(()))
    log = ["--log-every", "1", "--gp-weight", "0.5"]
    with_one = train_tiny(tmp_path / "c", 6, "--gp", "r1", "--gp-every", "4", *log)
    without = train_tiny(tmp_path / "d", 6, "--gp", "none", *log)

    def loss_d(run_dir: Path) -> np.ndarray:
        lines = (run_dir / "stats.jsonl").read_text().splitlines()
        return np.array([json.loads(x)["loss_d"] for x in lines])

    np.testing.assert_allclose(loss_d(with_one) - loss_d(without), [2, 0, 0, 0, 2, 0], atol=1e-4)


def test_adaptive_augmentation_moves_p_logs_it_and_resumes_exactly(tmp_path: Path) -> None:
    """--ada-target: p rises from 0 as D grows sure of the reals, is logged, and a run split by a
    resume between two adjustments (the sums of verdicts pending) ends with the same weights and p."""
    ada = ["--ada-target", "0.3", "--ada-kimg", "0.1", "--log-every", "1"]
    one_go = train_tiny(tmp_path / "a", 12, *ada)
    split = train_tiny(tmp_path / "b", 6, *ada)  # 6 is not a multiple of the 4-step interval
    assert float(load_checkpoint(split)["augment"]["count"]) == 16  # steps 5 and 6, 8 reals each
    run("resume", split, "--steps", 12, "--quiet")
    a, b = load_checkpoint(one_go), load_checkpoint(split)
    ta, tb = checkpoint_tensors(a), checkpoint_tensors(b)
    assert [k for k in ta if not torch.equal(ta[k], tb[k])] == []
    assert torch.equal(a["augment"]["p"], b["augment"]["p"]) and 0 < float(a["augment"]["p"]) <= 1
    p = [json.loads(x)["augment_p"] for x in (one_go / "stats.jsonl").read_text().splitlines()]
    assert len(p) == 12 and p[0] == 0 and p[-1] == pytest.approx(float(a["augment"]["p"]))
    assert all(x == p[3] for x in p[:3])  # p moves only every 4 steps
    # without it, the stats and the checkpoint carry no p
    plain = train_tiny(tmp_path / "c", 2, "--log-every", "1")
    assert "augment_p" not in (plain / "stats.jsonl").read_text()
    assert load_checkpoint(plain)["augment"] is None


def test_resume_refuses_when_done(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "r", 2)
    result = CliRunner().invoke(cli, ["resume", str(out)])
    assert result.exit_code == 1 and "already trained 2 of 2 steps" in result.output


def test_generate_is_reproducible_across_counts_and_batches(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "run", 2, "--upsample", "resize")  # generate rebuilds G from options.json
    run("generate", out, 5, tmp_path / "g1", "--seed", 7, "--batch-size", 2, "--quiet")
    run("generate", out / "checkpoint.pt", 3, tmp_path / "g2", "--seed", 9, "--batch-size", 64, "--quiet")
    assert sorted(p.name for p in (tmp_path / "g1").iterdir()) == [f"seed{s:06d}.png" for s in range(7, 12)]
    for s in (9, 10, 11):
        a = np.asarray(Image.open(tmp_path / "g1" / f"seed{s:06d}.png"))
        b = np.asarray(Image.open(tmp_path / "g2" / f"seed{s:06d}.png"))
        assert a.shape == (32, 32, 3) and np.array_equal(a, b)
    run("generate", out, 10, tmp_path / "ov", "--overview", "--quiet")
    (grid,) = list((tmp_path / "ov").iterdir())
    assert Image.open(grid).size == (4 * 34 + 2, 3 * 34 + 2)  # 10 images: 4 per row, 3 rows
    # A second model's fakes never silently join (or replace) the first's: a non-empty folder is
    # refused, and nothing in it changes, unless --overwrite.
    before = {p.name: p.read_bytes() for p in (tmp_path / "g1").iterdir()}
    error = run("generate", out, 2, tmp_path / "g1", "--seed", 100, "--quiet", ok=False)
    assert f"Error: {tmp_path / 'g1'}: not empty" in error and "--overwrite" in error
    assert {p.name: p.read_bytes() for p in (tmp_path / "g1").iterdir()} == before
    assert "not empty" in run("generate", out, 2, tmp_path / "ov", "--overview", "--quiet", ok=False)
    assert "not empty" in run("generate", out, 2, tmp_path / "ov", "--interpolate", "2", ok=False)
    run("generate", out, 2, tmp_path / "g1", "--seed", 100, "--quiet", "--overwrite")
    assert len(list((tmp_path / "g1").iterdir())) == 7
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / ".DS_Store").write_bytes(b"")  # hidden files do not make a folder "used"
    run("generate", out, 1, tmp_path / "hidden", "--quiet")


def test_noise_inputs_are_part_of_each_seeds_latent(tmp_path: Path) -> None:
    # With --noise the noise maps come from the seed's own stream, after z: the same seed gives the
    # same image whatever the batch, and --truncation scales z only (the maps stay unit noise).
    out = train_tiny(tmp_path / "run", 2, "--noise", "--upsample", "resize")
    assert "noise inputs at 4, 8 px" in (out / "log.txt").read_text()
    classic = train_tiny(tmp_path / "classic", 1, "--preset", "classic")
    assert "EMA 0.0, noise inputs off, mode seeking off" in (classic / "log.txt").read_text()
    assert load_generator(classic)[0].latent_dim == 16  # z alone
    # small-data: the coarse maps' noise and the full-size map of its conv-noise RGB layer
    small = train_tiny(tmp_path / "small", 1, "--preset", "small-data")
    assert ("dcgan D on image+fine, DiffAugment translation, EMA 0.95, noise inputs at 4, 8, 32 px, "
            "mode seeking 0.6") in (small / "log.txt").read_text()
    assert "dcgan D on image, DiffAugment none" in (classic / "log.txt").read_text()
    assert load_generator(small)[0].latent_dim == 16 + 4 * 4 + 8 * 8 + 32 * 32
    G, _, _ = load_generator(out)
    assert G.latent_dim == 16 + 4 * 4 + 8 * 8 and G.noise_sizes == [4, 8]
    assert any(p.abs().sum() > 0 for n, p in G.named_parameters() if n.endswith("strength"))  # it learned
    run("generate", out, 3, tmp_path / "g1", "--seed", 4, "--batch-size", 1, "--quiet")
    run("generate", out, 2, tmp_path / "g2", "--seed", 5, "--batch-size", 64, "--quiet")
    for s in (5, 6):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "g1" / f"seed{s:06d}.png")),
                              np.asarray(Image.open(tmp_path / "g2" / f"seed{s:06d}.png")))
    z = truncated_latents(G, [3], 0.5)
    full = latents_for_seeds([3], G.latent_dim)
    assert torch.equal(z[:, :16], full[:, :16] * 0.5) and torch.equal(z[:, 16:], full[:, 16:])


def test_runs_saved_before_upsample_existed_still_resume_and_generate(tmp_path: Path) -> None:
    # Runs of earlier versions have no `upsample`, `d_input` or `mode_seeking` in their options: they
    # were transposed-conv generators with a D on the image alone and no mode seeking, whatever
    # `small-data` now picks, and must load as such.
    old = ("upsample", "d_input", "mode_seeking")
    out = train_tiny(tmp_path / "old", 2, "--preset", "small-data", "--upsample", "transpose",
                     "--d-input", "image", "--mode-seeking", "0")
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    for name in old:
        del ckpt["options"][name]
    torch.save(ckpt, out / "checkpoint.pt")
    options = json.loads((out / "options.json").read_text())
    for name in old:
        del options[name]
    (out / "options.json").write_text(json.dumps(options))
    run("generate", out, 2, tmp_path / "fakes", "--quiet")
    assert len(list((tmp_path / "fakes").glob("*.png"))) == 2
    run("resume", out, "--steps", 3, "--quiet")  # a 6-channel D would not take the 3-channel checkpoint
    resumed = load_checkpoint(out)
    assert resumed["step"] == 3
    assert {name: resumed["options"][name] for name in old} == {
        "upsample": "transpose", "d_input": "image", "mode_seeking": 0.0}


def as_saved_before_the_spec(run_dir: Path) -> None:
    """Rewrite a run folder as versions before RunSpec wrote it: a `channels` option and no `asked`
    in the checkpoint, and options.json holding the checkpoint's options alone."""
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    del ckpt["asked"]
    ckpt["options"]["channels"] = ckpt["channels"]
    torch.save(ckpt, run_dir / "checkpoint.pt")
    (run_dir / "options.json").write_text(json.dumps(ckpt["options"]))


def test_runs_saved_before_the_spec_still_resume_exactly_and_generate(tmp_path: Path) -> None:
    old = train_tiny(tmp_path / "old", 2, "--grid-size", "4")
    as_saved_before_the_spec(old)
    assert set(json.loads((old / "options.json").read_text())) >= {"channels", "resolution", "ema"}
    run("generate", old, 4, tmp_path / "fakes", "--overview", "--quiet")
    grid = np.asarray(Image.open(old / "samples" / "step_0000002.png"))
    assert np.array_equal(grid, np.asarray(Image.open(next((tmp_path / "fakes").iterdir()))))
    run("resume", old, "--steps", 4, "--quiet")
    one_go = train_tiny(tmp_path / "new", 4, "--grid-size", "4")
    a, b = checkpoint_tensors(load_checkpoint(one_go)), checkpoint_tensors(load_checkpoint(old))
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
    saved = json.loads((old / "options.json").read_text())
    assert (saved["steps"], saved["channels"], saved["asked"]) == (4, 3, None)  # not recorded back then


def test_options_json_keeps_what_was_asked_beside_what_was_settled(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run("training", TRAINING_DATA, 2, 8, out, "--z-dim", "16", "--g-channels", "8", "--d-channels", "8",
        "--quiet", "--max-memory-gb", "0.000001")  # auto preset, the images' own size (160 px), streamed
    saved = json.loads((out / "options.json").read_text())
    assert (saved["preset"], saved["ema"], saved["resolution"], saved["channels"]) == (
        "small-data", 0.95, 160, 3)
    assert saved["sample_every"] == 2 and saved["training_images"] == str(TRAINING_DATA.resolve())
    asked = saved["asked"]
    assert (asked["preset"], asked["ema"], asked["resolution"], asked["sample_every"]) == (
        "auto", 0.999, None, 0)
    ckpt = load_checkpoint(out)
    assert ckpt["asked"] == asked and ckpt["options"] == {k: v for k, v in saved.items() if k not in (
        "asked", "channels", "class_names", "compression")}
    # trained at the files' own size: their JPEG compression is recorded, for `generate` to copy
    assert ckpt["compression"] == saved["compression"] and saved["compression"]["quality"] == 75


def test_no_ema_and_truncation_change_the_same_seeds_image(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "run", 2)
    # A few tiny steps leave both generators near their grey init; make the EMA one visibly its
    # own network (last conv x1000) so that which network each flag uses shows in the pixels.
    ckpt = load_checkpoint(out)
    last = [k for k, v in ckpt["G_ema"].items() if k.endswith("weight") and v.ndim == 4][-1]
    ckpt["G_ema"][last] = ckpt["G_ema"][last] * 1000
    model = tmp_path / "sharp.pt"
    torch.save(ckpt, model)

    def images(name: str, *flags: str) -> np.ndarray:
        run("generate", model, 2, tmp_path / name, "--seed", 9, "--quiet", *flags)
        return np.stack([np.asarray(Image.open(tmp_path / name / f"seed{s:06d}.png"), dtype=float)
                         for s in (9, 10)])

    ema, raw = images("ema"), images("raw", "--no-ema")
    assert np.abs(ema - raw).mean() > 10  # --no-ema: the raw generator, another network
    # psi scales the latents towards their mean: at 0.01 two seeds give nearly the same image.
    spread = np.abs(ema[0] - ema[1]).mean()
    flat = images("flat", "--truncation", "0.01")
    assert np.abs(flat[0] - flat[1]).mean() < 0.2 * spread


def test_ema_generator_has_batchnorm_statistics_of_its_own_weights(tmp_path: Path) -> None:
    """The EMA G's running mean/variance are measured on the EMA weights, not copied from G."""
    from dcgan.generate import load_generator

    run_dir = train_tiny(tmp_path / "run", 6)
    G_ema, _, ckpt = load_generator(run_dir)
    norms = {name: m for name, m in G_ema.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda m, inp, out, name=name: seen.__setitem__(name, inp[0]))
             for name, m in norms.items()]
    with torch.no_grad():
        G_ema(torch.randn(2048, G_ema.latent_dim, generator=torch.Generator().manual_seed(5)))
    for h in hooks:
        h.remove()
    for name, m in norms.items():
        x = seen[name].double()
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3))
        # The statistics fit the weights they normalise: means within 0.1 std, variances within 15%.
        assert ((m.running_mean - mean).abs() / var.sqrt()).max() < 0.1
        assert ((m.running_var / var) - 1).abs().max() < 0.15
        # G's own statistics, which the EMA copy used to take, would not fit.
        assert not torch.allclose(ckpt["G"][f"{name}.running_var"], m.running_var, rtol=0.15)


def test_sample_grid_matches_generate(tmp_path: Path) -> None:
    """The training grid shows exactly the images `generate --seed 0` writes."""
    out = train_tiny(tmp_path / "run", 2, "--grid-size", "4")
    run("generate", out, 4, tmp_path / "ov", "--overview", "--quiet")
    grid = np.asarray(Image.open(out / "samples" / "step_0000002.png"))
    ov = np.asarray(Image.open(next((tmp_path / "ov").iterdir())))
    assert np.array_equal(grid, ov)


def test_yaml_config_and_override(tmp_path: Path) -> None:
    cfg = tmp_path / "control.yaml"
    cfg.write_text("loss: hinge\nlr-d: 0.0004\narch: sngan\nlabel_smoothing: 0.9\nema: 0.99\n")
    out = train_tiny(tmp_path / "run", 2, "--config", str(cfg), "--lr-d", "0.0003")
    opts = json.loads((out / "options.json").read_text())
    assert (opts["loss"], opts["arch"], opts["ema"], opts["lr_d"]) == ("hinge", "sngan", 0.99, 0.0003)
    assert "label-smoothing has no effect" in (out / "log.txt").read_text()
    cfg.write_text("lossy: hinge\n")
    result = CliRunner().invoke(cli, ["training", str(TRAINING_DATA), "2", "8", str(tmp_path / "x"),
                                      "--config", str(cfg)])
    assert result.exit_code == 1 and "unknown option(s) lossy" in result.output


def test_yaml_values_are_read_as_their_options_types(tmp_path: Path) -> None:
    from dcgan.options import TrainOptions, load_yaml, merge_options

    cfg = tmp_path / "control.yaml"
    # PyYAML (YAML 1.1) reads 4e-4 as the string "4e-4" and 1e3 as a string too.
    cfg.write_text("lr-d: 4e-4\nlr-g: 1e-4\nsample-every: 1e3\nema: 0\nkeep-checkpoints: true\n")
    opts = merge_options(TrainOptions(), load_yaml(cfg), {"training_images": ".", "steps": 10,
                                                          "batch_size": 8, "output_dir": "o"}, str(cfg))
    assert (opts.lr_d, opts.lr_g, opts.sample_every, opts.ema, opts.keep_checkpoints) == (
        4e-4, 1e-4, 1000, 0.0, True)
    assert type(opts.lr_d) is float and type(opts.sample_every) is int and type(opts.ema) is float
    for bad, why in (("lr-d: fast", "lr-d must be a number"), ("steps: 2.5", "steps must be a whole number"),
                     ("grayscale: 3", "grayscale must be true or false")):
        cfg.write_text(bad + "\n")
        msg = error_of("training", TRAINING_DATA, 2, 8, tmp_path / "x", "--config", cfg)
        assert why in msg and str(cfg) in msg


def test_grayscale_and_train_alias(tmp_path: Path) -> None:
    out = tmp_path / "g"
    run("train", TRAINING_DATA, 2, 8, out, *TINY, "--grayscale")
    assert load_checkpoint(out)["channels"] == 1
    run("generate", out, 1, tmp_path / "img", "--quiet")
    assert Image.open(tmp_path / "img" / "seed000000.png").mode == "L"


def error_of(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.output


def test_bad_inputs_give_one_line_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images found" in error_of("training", empty, 2, 8, tmp_path / "o1")
    mixed = tmp_path / "mixed"
    make_image(mixed / "a.png", (32, 32))
    make_image(mixed / "b.png", (64, 64))
    assert "isic_dataset.py transform" in error_of("training", mixed, 2, 8, tmp_path / "o2")
    oblong = tmp_path / "oblong"
    make_image(oblong / "a.png", (40, 32))
    assert "must be square" in error_of("training", oblong, 2, 8, tmp_path / "o3")
    assert "4 or 5 times a power of two" in error_of("training", mixed, 2, 8, tmp_path / "o4",
                                                     "--resolution", "48")
    out = train_tiny(tmp_path / "done", 1)
    msg = error_of("training", TRAINING_DATA, 2, 8, out, *TINY)
    assert "not empty" in msg and "gancontrol.py resume" in msg
    train_tiny(out, 1, "--overwrite")  # --overwrite starts over
    assert "no such checkpoint" in error_of("generate", tmp_path / "nothing.pt", 1, tmp_path / "g")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    assert "not a gancontrol checkpoint" in error_of("generate", foreign, 1, tmp_path / "g")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x04 definitely not a checkpoint")
    assert "not a gancontrol checkpoint" in error_of("generate", junk, 1, tmp_path / "g")
    assert "--loss" in error_of("training", TRAINING_DATA, 2, 8, tmp_path / "o5", "--loss", "nope")
    assert "must not be inside" in error_of("training", mixed, 2, 8, mixed / "run")


def test_unreadable_files_are_skipped_with_a_warning(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i in range(4):
        make_image(data / f"ok{i}.png", (32, 32), seed=i)
    (data / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["training", str(data), "1", "4", str(out), *TINY])
    assert result.exit_code == 0
    assert "broken.jpg" in (out / "log.txt").read_text()


def test_non_finite_loss_stops_and_names_the_step(tmp_path: Path) -> None:
    out = tmp_path / "nan"
    # A WGAN critic with an absurd learning rate overflows after a few steps.
    msg = error_of("training", TRAINING_DATA, 20, 8, out, *TINY, "--preset", "classic", "--loss", "wgan",
                   "--lr-d", "1e12",
                   "--checkpoint-every", "1", "--precision", "fp32")
    assert "became" in msg and "last good checkpoint" in msg, msg
    step = int(msg.split(" at step ")[1].split(";")[0])
    ckpt = load_checkpoint(out)
    assert step >= 2 and ckpt["step"] < step
    assert all(torch.isfinite(v).all() for v in ckpt["G"].values() if v.is_floating_point())


# SIGUSR1: what slurm/train.sbatch has SLURM send before the time limit (tests/test_slurm.py).
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_stop_signal_writes_a_checkpoint_and_exits_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "gancontrol.py"), "training", str(TRAINING_DATA), "100000", "8",
           str(out), *TINY, "--log-every", "1", "--checkpoint-every", "100000"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    while not (out / "stats.jsonl").exists() or len((out / "stats.jsonl").read_text().splitlines()) < 3:
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err  # 143 for SIGTERM, 138 for SIGUSR1
    assert "Traceback" not in err and f"Stopped by {sig.name} at step" in err
    assert "gancontrol.py resume" in err
    step = load_checkpoint(out)["step"]
    assert 3 <= step < 100000
    assert not list(out.glob(".partial-*"))


def test_too_large_for_memory_streams_from_disk(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "s", 2, "--max-memory-gb", "0.000001")
    assert "streaming them from disk" in (out / "log.txt").read_text()
    assert load_checkpoint(out)["step"] == 2


def test_streaming_checks_every_image_like_the_in_memory_path(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i in range(4):
        make_image(data / f"ok{i}.png", (32, 32), seed=i)
    (data / "z_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = train_tiny(tmp_path / "s", 2, "--max-memory-gb", "0.000001", images=data)
    assert "z_broken.jpg" in (out / "log.txt").read_text()  # skipped at load, not a crash mid-run
    make_image(data / "z_wide.png", (40, 32), seed=9)
    msg = error_of("training", data, 2, 8, tmp_path / "t", *TINY[2:], "--max-memory-gb", "0.000001")
    assert "z_wide.png" in msg and "40x32" in msg


def test_device_cuda_without_gpu_is_a_clear_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    msg = error_of("training", TRAINING_DATA, 1, 8, tmp_path / "c", *TINY, "--device", "cuda")
    assert "no CUDA GPU" in msg
    # A GPU by number passes the command line (a multi-GPU user's choice) and meets the same check.
    assert "--device cuda:1: no CUDA GPU" in error_of("training", TRAINING_DATA, 1, 8, tmp_path / "d", *TINY,
                                                      "--device", "cuda:1")
    assert "no CUDA GPU" in error_of("generate", tmp_path / "none.pt", 2, tmp_path / "g",
                                     "--device", "cuda:0")


def test_device_names_outside_auto_cpu_cuda_n_are_refused_by_name(tmp_path: Path) -> None:
    for bad in ("gpu", "cuda:x", "cuda:"):
        msg = error_of("training", TRAINING_DATA, 1, 8, tmp_path / "c", *TINY, "--device", bad)
        assert f"'{bad}'" in msg and "cuda:N" in msg
        assert not (tmp_path / "c").exists()


def test_a_failed_start_leaves_output_dir_as_it_was(tmp_path: Path) -> None:
    empty, out = tmp_path / "empty", tmp_path / "run"
    empty.mkdir()
    assert "Error:" in error_of("training", empty, 2, 4, out, *TINY)
    assert not out.exists()  # so the corrected re-run is not refused as "not empty"
    train_tiny(out, 2)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # --overwrite with bad input must not have deleted the good run before finding the input bad
    assert "Error:" in error_of("training", empty, 2, 4, out, *TINY, "--overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_run_whose_d_sees_the_fine_detail_resumes_and_generates(tmp_path: Path) -> None:
    # `--d-input image+fine` is saved with the run, so resume rebuilds D with its 6-channel first
    # conv (a plain D would not fit the checkpoint) and generate is unaffected.
    out = train_tiny(tmp_path / "run", 2, "--d-input", "image+fine")
    assert "D on image+fine" in (out / "log.txt").read_text()
    assert json.loads((out / "options.json").read_text())["d_input"] == "image+fine"
    first = next(w for w in load_checkpoint(out)["D"].values() if w.dim() == 4)  # the first conv's kernel
    assert first.shape[1] == 6  # RGB + its fine detail
    run("resume", out, "--steps", 3, "--quiet")
    assert load_checkpoint(out)["step"] == 3
    run("generate", out, 2, tmp_path / "fakes", "--quiet")
    assert len(list((tmp_path / "fakes").iterdir())) == 2


def test_mode_seeking_adds_its_term_to_gs_loss(tmp_path: Path) -> None:
    # Same seed: the first D update is the same, so G's first loss differs by exactly the weighted
    # term, which is positive (a latent distance over an image distance).
    def first_loss_g(out: Path) -> float:
        return json.loads((out / "stats.jsonl").read_text().splitlines()[0])["loss_g"]

    plain = train_tiny(tmp_path / "plain", 1, "--log-every", "1")
    seeking = train_tiny(tmp_path / "seeking", 1, "--log-every", "1", "--mode-seeking", "2")
    assert json.loads((seeking / "options.json").read_text())["mode_seeking"] == 2.0
    assert first_loss_g(seeking) > first_loss_g(plain) + 0.1
