"""Classifier two-sample test (C2ST, Lopez-Paz & Oquab 2017): can a small CNN tell fakes from reals?

A CNN trained from scratch learns to separate the two sets under stratified k-fold
cross-validation; every image gets one held-out prediction, and the held-out accuracy (0.5 = the
sets are indistinguishable, 1.0 = every image is called right) comes with a binomial confidence
interval and a one-sided binomial p-value. The same test on two random halves of the reals is the
reference: what "indistinguishable" scores with this many images. Unlike SWD or precision/recall it
sees what a person sees at a glance, e.g. a periodic texture that no real image has.

Hand-written because no maintained library runs a C2ST on images (the existing ones, e.g. sbi's
`c2st`, fit an MLP on flat feature vectors); the folds come from scikit-learn and the interval from
scipy.

Reproducible: the folds, the network's initialisation, the batch order and the flips all derive
from `seed` (on one machine with one thread count: float summation order depends on both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import bands as split
from ..errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class C2STOptions:
    folds: int = 5
    epochs: int = 12
    width: int = 16  # channels of the first conv, doubled per layer (32 costs 4x the time)
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    confidence: float = 0.95
    reference: bool = True  # also run reals vs reals (two random halves)
    surest: int = 32  # fakes in the "surest" grid
    bands: bool = False  # also test a coarse (low-pass) and a fine (high-pass) view of both sets
    band_sigma: float = split.SIGMA  # the Gaussian (pixels) that splits the two views


def classifier(channels: int = 3, width: int = 16) -> nn.Module:
    """Three stride-2 3x3 convs with BatchNorm and LeakyReLU, global average pool, one logit.

    Small on purpose: a few hundred images per set, a few CPU minutes. Global pooling makes it
    look at what is everywhere in an image (texture, color) as much as at a layout.
    """
    from torch import nn

    layers: list[nn.Module] = []
    c_in = channels
    for i in range(3):
        c_out = width * 2 ** i
        layers += [nn.Conv2d(c_in, c_out, 3, 2, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 1)]
    return nn.Sequential(*layers)


def _tensor(images: np.ndarray) -> torch.Tensor:
    import torch

    # channels_last: oneDNN's CPU convs are faster in that layout (docs/performance.md).
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    return x.contiguous(memory_format=torch.channels_last)


# The split is dcgan.bands' (shared with D's fine-detail input).
BAND_VIEWS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "coarse": split.coarse, "fine": split.fine}


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal and vertical flips per image (label-preserving for dermoscopy)."""
    import torch

    h = torch.rand(len(x), generator=gen) < 0.5
    v = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(h[:, None, None, None], x.flip(3), x)
    return torch.where(v[:, None, None, None], x.flip(2), x)


def _fit_predict(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, opts: C2STOptions,
                 seed: int) -> np.ndarray:
    """Train a fresh classifier; the probability that each test image is a fake (label 1)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the weights' init, without touching the caller's RNG
        torch.manual_seed(seed)
        net = classifier(x_train.shape[1], opts.width).to(memory_format=torch.channels_last)
    optim = torch.optim.Adam(net.parameters(), lr=opts.lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    n = len(x_train)
    net.train()
    for _ in range(opts.epochs):
        order = torch.randperm(n, generator=gen)
        for s in range(0, n - 1, opts.batch_size):  # skip a last batch of one (BatchNorm)
            idx = order[s: s + opts.batch_size]
            if len(idx) < 2:
                continue
            xb = _flip(x_train[idx], gen).contiguous(memory_format=torch.channels_last)
            loss = loss_fn(net(xb).flatten(), y_train[idx])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
    net.eval()
    with torch.no_grad():
        # Average over the four flips: the classifier was trained to ignore them.
        logits = sum(net(x_test.flip(d) if d else x_test).flatten() for d in ((), (2,), (3,), (2, 3)))
    return torch.sigmoid(logits / 4).numpy()


def two_sample_test(a: np.ndarray, b: np.ndarray, opts: C2STOptions,
                    view: str | None = None) -> dict[str, Any]:
    """Held-out accuracy of telling set `b` (label 1) from set `a` (label 0), uint8 (N, H, W, C).

    `view` (a `BAND_VIEWS` name) shows the classifier only that band of every image, the same
    filter on both sets; the folds and the seeds stay those of the full-image test.

    The larger set is subsampled to the smaller one's size (seeded), so that chance is exactly
    0.5. Returns accuracy, its interval, a p-value against 0.5 and every image's held-out
    probability of being from `b` (`prob_b`, aligned with `index_a` / `index_b`).
    """
    import torch
    from scipy.stats import binomtest
    from sklearn.model_selection import StratifiedKFold

    n = min(len(a), len(b))
    if n < opts.folds:
        raise UserError(f"the classifier two-sample test needs at least {opts.folds} images per set "
                        f"(--c2st-folds), got {n}")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"image sets differ in shape: {a.shape[1:]} vs {b.shape[1:]}")
    rng = np.random.default_rng(opts.seed)
    ia = np.sort(rng.choice(len(a), n, replace=False))
    ib = np.sort(rng.choice(len(b), n, replace=False))
    x = _tensor(np.concatenate([a[ia], b[ib]]))
    if view is not None:
        x = BAND_VIEWS[view](x, opts.band_sigma).contiguous(memory_format=torch.channels_last)
    y = np.r_[np.zeros(n), np.ones(n)]
    yt = torch.from_numpy(y).float()
    prob = np.empty(2 * n)
    folds = StratifiedKFold(opts.folds, shuffle=True, random_state=opts.seed)
    for k, (train, test) in enumerate(folds.split(np.zeros(2 * n), y)):
        prob[test] = _fit_predict(x[train], yt[train], x[test], opts, opts.seed * 1000 + k)
    correct = int(((prob > 0.5) == (y == 1)).sum())
    # Each image is predicted once, by a classifier that never saw it: 2n Bernoulli trials, as in
    # Lopez-Paz & Oquab's test. Two-sided interval; one-sided p-value (below 0.5 is chance too).
    ci = binomtest(correct, 2 * n).proportion_ci(opts.confidence, method="wilson")
    p_value = binomtest(correct, 2 * n, 0.5, alternative="greater").pvalue
    return {"accuracy": correct / (2 * n), "ci": [float(ci.low), float(ci.high)],
            "p_value": float(p_value), "images_per_set": n, "correct": correct,
            "prob_a": prob[:n].tolist(), "prob_b": prob[n:].tolist(),
            "index_a": ia.tolist(), "index_b": ib.tolist()}


SUMMARY = ("accuracy", "ci", "p_value", "images_per_set", "correct")  # what the report keeps of a test


def c2st_report(real: np.ndarray, fake: np.ndarray, opts: C2STOptions,
                fake_names: list[str] | None = None) -> dict[str, Any]:
    """Reals vs fakes, and (opts.reference) two halves of the reals vs each other, JSON-ready.

    `surest_fakes` lists the fakes the classifier called fake most confidently, surest first
    (`fake_names[i]` or the index), for `surest_grid`.
    """
    main = two_sample_test(real, fake, opts)
    order = np.argsort(-np.asarray(main["prob_b"]), kind="stable")[: opts.surest]
    surest = [{"index": int(main["index_b"][i]), "prob_fake": float(main["prob_b"][i]),
               **({"file": fake_names[main["index_b"][i]]} if fake_names else {})} for i in order]
    out: dict[str, Any] = {
        "method": f"{opts.folds}-fold CNN classifier (3 convs, flips), Wilson {opts.confidence:.0%} interval",
        "options": asdict(opts),
        "fake_vs_real": {k: main[k] for k in SUMMARY},
        "surest_fakes": surest}
    if opts.bands:
        # Which scale gives the fakes away: the same test on a low-pass and a high-pass view.
        out["bands"] = {"sigma": opts.band_sigma, **{
            name: {k: v for k, v in two_sample_test(real, fake, opts, view=name).items() if k in SUMMARY}
            for name in BAND_VIEWS}}
    if opts.reference:
        rng = np.random.default_rng(opts.seed + 1)
        perm = rng.permutation(len(real))
        half = len(real) // 2
        if half >= opts.folds:
            ref = two_sample_test(real[perm[:half]], real[perm[half: 2 * half]], opts)
            out["real_vs_real"] = {k: ref[k] for k in SUMMARY}
        else:
            out["real_vs_real"] = {"error": f"too few reals for two halves of {opts.folds} or more"}
    return out


def surest_grid(fake: np.ndarray, report: dict[str, Any], path: str | Path) -> Path:
    """A PNG grid of the fakes the classifier was surest about (surest first, row by row)."""
    import torch
    from PIL import Image
    from torchvision.utils import make_grid

    from ..files import atomic_path

    idx = [s["index"] for s in report["surest_fakes"]]
    x = torch.from_numpy(np.ascontiguousarray(fake[idx])).permute(0, 3, 1, 2)
    grid = make_grid(x, nrow=int(np.ceil(np.sqrt(len(idx)))), padding=2, pad_value=255)
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(grid.permute(1, 2, 0).numpy()).save(tmp, format="PNG")
    return path


def format_c2st(entry: dict[str, Any]) -> list[str]:
    """Lines for the plain-text quality report."""
    def line(name: str, r: dict[str, Any]) -> str:
        if "error" in r:
            return f"  {name:<15} n/a: {r['error']}"
        return (f"  {name:<15} accuracy {r['accuracy']:.3f}  [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]  "
                f"p {r['p_value']:.2g}  ({r['images_per_set']} vs {r['images_per_set']})")

    lines = [f"classifier two-sample test ({entry['method']}; 0.5 = indistinguishable)",
             line("fakes vs reals", entry["fake_vs_real"])]
    if "real_vs_real" in entry:
        lines.append(line("reals vs reals", entry["real_vs_real"]))
    if "bands" in entry:
        sigma = entry["bands"]["sigma"]
        lines += [line("coarse view", entry["bands"]["coarse"])
                  + f"  shape and colour (Gaussian low-pass, sigma {sigma:g} px)",
                  line("fine view", entry["bands"]["fine"]) + "  texture (the image minus that low-pass)"]
    return lines
