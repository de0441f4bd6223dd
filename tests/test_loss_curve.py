"""loss_curve.png: two panels always (losses, D's outputs), one more for each logged extra."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from dcgan.training.runlog import LOSS_CURVE, append_stats, plot_loss_curve


def panels(run: Path, records: list[dict]) -> int:
    run.mkdir()
    for r in records:
        append_stats(run, r)
    plot_loss_curve(run)
    return Image.open(run / LOSS_CURVE).size[1] // 260  # each panel 2.6 in at 100 dpi


def test_each_logged_extra_gets_its_panel(tmp_path: Path) -> None:
    base = {"loss_d": 1.2, "loss_g": 0.8, "d_real": 0.3, "d_fake": -0.4}
    assert panels(tmp_path / "plain", [{"step": s, **base} for s in (1, 2, 3)]) == 2
    assert panels(tmp_path / "ada", [{"step": s, **base, "augment_p": 0.01 * s} for s in (1, 2, 3)]) == 3
    evals = [{"step": 1, **base}, {"step": 2, **base, "swd": 30.0, "precision": 0.6, "recall": 0.7}]
    assert panels(tmp_path / "evals", evals) == 4
    both = [{**r, "augment_p": 0.1} for r in evals]
    assert panels(tmp_path / "both", both) == 5
