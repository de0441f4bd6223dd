"""Quality while training: SWD and k-NN precision/recall of the EMA generator against the reals.

Each evaluation also logs the top-band power-spectrum ratio (`spectrum_ratio`, 1 = as much fine
detail as the reals; cheap) and the peak ratio at one frequency (`spectrum_peak`, high for a periodic
pattern), and the last one of a run the classifier two-sample test's judge panel (3 folds, 8
epochs, no reals-vs-reals reference; a minute or more on a CPU): `c2st_accuracy` is the strongest
judge's accuracy, `c2st_judge` its name, `c2st_<judge>` each judge's.

Uses the same functions as `img2dist.py quality` (dcgan.analysis.quality), on a fixed subset of
the training images and fixed latents, so the numbers of successive evaluations are comparable and
the lowest SWD marks the best checkpoint (`best.pt`). The fakes are scored as `generate` stores
them (JPEG like the training images, when those are JPEGs at the size trained on).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..analysis.c2st import C2STOptions, panel_accuracies, panel_test
from ..analysis.quality import pr_features, precision_recall, sliced_wasserstein
from ..analysis.spectrum import band_ratio, mean_power, peak_ratio
from ..images import to_uint8
from ..models import latents_for_seeds
from .trainer import Trainer

EVAL_SEED_OFFSET = 1_000_000  # latents disjoint from the sample grids' seeds 0..grid_size-1


class Evaluator:
    """Holds the real reference set (decoded and featurised once) and scores the generator."""

    def __init__(self, trainer: Trainer):
        options, data = trainer.options, trainer.data
        n = min(options.eval_images, len(data))
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(options.seed + 7))[:n]
        self.real = data.batch(idx).permute(0, 2, 3, 1).numpy()  # (N, H, W, C) uint8
        self.real_feats = pr_features(self.real)
        self.real_power = mean_power(self.real)
        self.c2st = C2STOptions(folds=3, epochs=8, seed=options.seed, reference=False, surest=0)
        self.labels = data.labels[idx] if trainer.num_classes else None
        self.z = latents_for_seeds(range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + n), trainer.G.latent_dim)
        self.best_swd = float("inf")

    def __call__(self, trainer: Trainer) -> dict[str, Any]:
        t0 = time.perf_counter()
        fake = to_uint8(trainer.sample(self.z, self.labels)).permute(0, 2, 3, 1).numpy()
        if trainer.spec.compression is not None:  # score what `generate` writes (JPEG like the reals)
            fake = trainer.spec.compression.roundtrip(fake)
        swd = sliced_wasserstein(self.real, fake)
        fake_power = mean_power(fake)
        precision, recall = precision_recall(self.real_feats, pr_features(fake))
        record = {"step": trainer.step, "swd": swd["mean"], "precision": precision, "recall": recall,
                  "spectrum_ratio": band_ratio(fake_power, self.real_power),
                  "spectrum_peak": peak_ratio(fake_power, self.real_power)[0]}
        if trainer.step >= trainer.options.steps and min(len(fake), len(self.real)) >= self.c2st.folds:
            record.update(panel_accuracies(panel_test(self.real, fake, self.c2st), "c2st_accuracy"))
        return {**record, "eval_images": len(fake), "eval_seconds": time.perf_counter() - t0}

    def is_best(self, record: dict[str, Any]) -> bool:
        if np.isfinite(record["swd"]) and record["swd"] < self.best_swd:
            self.best_swd = record["swd"]
            return True
        return False
