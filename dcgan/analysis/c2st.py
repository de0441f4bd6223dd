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

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import bands as split
from ..errors import UserError
from .judges import DEFAULT_JUDGES, JUDGES, Judge, check_judges

if TYPE_CHECKING:
    import torch


@dataclass
class C2STOptions:
    folds: int = 5
    epochs: int = 12
    width: int | None = None  # override every CNN judge's first-layer width (None: each its own)
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    confidence: float = 0.95
    reference: bool = True  # also run reals vs reals (two random halves), for every judge
    surest: int = 32  # fakes in the "surest" grid
    bands: bool = False  # also test a coarse (low-pass) and a fine (high-pass) view of both sets
    band_sigma: float = split.SIGMA  # the Gaussian (pixels) that splits the two views
    judges: tuple[str, ...] = DEFAULT_JUDGES  # the panel (names in judges.JUDGES); the strongest decides
    cache_dir: str | None = None  # where reals-vs-reals baselines are kept for the next report (None: not)


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
                 seed: int, judge: Judge) -> np.ndarray:
    """Train a fresh CNN judge; the probability that each test image is a fake (label 1)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the weights' init, without touching the caller's RNG
        torch.manual_seed(seed)
        assert judge.network is not None
        net = judge.network(x_train.shape[1], opts.width or judge.width).to(memory_format=torch.channels_last)
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


def _judge_inputs(images: np.ndarray, judge: Judge, opts: C2STOptions, view: str | None) -> Any:
    """What the judge is trained on, computed once for all folds: its statistics, or its view."""
    import torch

    if judge.features is not None:
        return judge.features(images)
    x = judge.view(_tensor(images))
    if view is not None:
        x = BAND_VIEWS[view](x, opts.band_sigma)
    return x.contiguous(memory_format=torch.channels_last)


def two_sample_test(a: np.ndarray, b: np.ndarray, opts: C2STOptions, view: str | None = None,
                    judge: str = "strided") -> dict[str, Any]:
    """Held-out accuracy of telling set `b` (label 1) from set `a` (label 0), uint8 (N, H, W, C), by
    one judge (a `judges.JUDGES` name).

    `view` (a `BAND_VIEWS` name) shows a CNN judge only that band of every image, the same
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
    spec = JUDGES[judge]
    if view is not None and spec.features is not None:
        raise ValueError(f"judge {judge!r} reads statistics, not a band view")
    started = time.perf_counter()
    rng = np.random.default_rng(opts.seed)
    ia = np.sort(rng.choice(len(a), n, replace=False))
    ib = np.sort(rng.choice(len(b), n, replace=False))
    x = _judge_inputs(np.concatenate([a[ia], b[ib]]), spec, opts, view)
    y = np.r_[np.zeros(n), np.ones(n)]
    yt = torch.from_numpy(y).float()
    prob = np.empty(2 * n)
    folds = StratifiedKFold(opts.folds, shuffle=True, random_state=opts.seed)
    for k, (train, test) in enumerate(folds.split(np.zeros(2 * n), y)):
        seed = opts.seed * 1000 + k
        if spec.features is not None:
            from .judges import statistics_model

            model = statistics_model(seed).fit(x[train], y[train])  # type: ignore[attr-defined]
            prob[test] = model.predict_proba(x[test])[:, 1]  # type: ignore[attr-defined]
        else:
            prob[test] = _fit_predict(x[train], yt[train], x[test], opts, seed, spec)
    correct = int(((prob > 0.5) == (y == 1)).sum())
    # Each image is predicted once, by a classifier that never saw it: 2n Bernoulli trials, as in
    # Lopez-Paz & Oquab's test. Two-sided interval; one-sided p-value (below 0.5 is chance too).
    ci = binomtest(correct, 2 * n).proportion_ci(opts.confidence, method="wilson")
    p_value = binomtest(correct, 2 * n, 0.5, alternative="greater").pvalue
    return {"accuracy": correct / (2 * n), "ci": [float(ci.low), float(ci.high)],
            "p_value": float(p_value), "images_per_set": n, "correct": correct,
            "prob_a": prob[:n].tolist(), "prob_b": prob[n:].tolist(),
            "index_a": ia.tolist(), "index_b": ib.tolist(), "seconds": time.perf_counter() - started}


SUMMARY = ("accuracy", "ci", "p_value", "images_per_set", "correct")  # what the report keeps of a test
TIGHT = 0.05  # half-width of the interval below which a test that finds nothing can say "alike"


def images_for_half_width(half_width: float = TIGHT, confidence: float = 0.95) -> int:
    """Images per set for a Wilson interval this tight around 0.5 (normal approximation: the
    accuracy of 2n trials has standard error 0.5 / sqrt(2n))."""
    from scipy.stats import norm

    z = norm.ppf(0.5 + confidence / 2)
    return int(np.ceil((z * 0.5 / half_width) ** 2 / 2))


def power_note(summary: dict[str, Any], confidence: float = 0.95) -> str | None:
    """Why a test that found nothing does not say "alike": its interval is too wide. None when the
    test detected the fakes (p below 1 - confidence) or the interval is tight enough."""
    low, high = summary["ci"]
    if summary["p_value"] < 1 - confidence or (high - low) / 2 <= TIGHT:
        return None
    n = summary["images_per_set"]
    return (f"cannot tell: with {n} vs {n} images the interval [{low:.3f}, {high:.3f}] holds both "
            f"chance and a judge that is right {high:.0%} of the time; about "
            f"{images_for_half_width(TIGHT, confidence)} images per set narrow it to +-{TIGHT}")


def panel_test(a: np.ndarray, b: np.ndarray, opts: C2STOptions) -> dict[str, dict[str, Any]]:
    """Every judge of opts.judges on the same sets, folds and seeds: {judge: two_sample_test}."""
    return {name: two_sample_test(a, b, opts, judge=name) for name in check_judges(opts.judges)}


def strongest(results: dict[str, dict[str, Any]]) -> str:
    """The judge with the highest held-out accuracy (the first in panel order on ties)."""
    return max(results, key=lambda j: results[j]["accuracy"])


def panel_accuracies(panel: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    """A flat record of a panel for a log line: `key` the strongest judge's accuracy, `c2st_judge`
    its name, `c2st_<judge>` each judge's."""
    best = strongest(panel)
    return {key: panel[best]["accuracy"], "c2st_judge": best,
            **{f"c2st_{j}": r["accuracy"] for j, r in panel.items()}}


def verdict(fake_vs_real: dict[str, dict[str, Any]],
            real_vs_real: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """The strongest judge (highest held-out accuracy; the first in panel order on ties) decides.

    Its p-value is Bonferroni-corrected for the number of judges (the best of k tests finds
    something by chance k times as often), and the panel's reals-vs-reals baseline is the
    strongest judge's own and the maximum over the judges, which the verdict's accuracy is to be
    read against.
    """
    name = strongest(fake_vs_real)
    best = {k: fake_vs_real[name][k] for k in SUMMARY}
    best["p_value"] = min(1.0, best["p_value"] * len(fake_vs_real))
    out = {"judge": name, **best}
    if real_vs_real:
        ok = [r for r in real_vs_real.values() if "error" not in r]
        if name in real_vs_real and "error" not in real_vs_real[name]:
            out["real_vs_real"] = real_vs_real[name]["accuracy"]
        if ok:
            out["real_vs_real_max"] = max(r["accuracy"] for r in ok)
    return out


REFERENCE_CACHE_VERSION = 1  # bump when a judge's network, view or training changes


def _reference_files(real: np.ndarray, opts: C2STOptions) -> dict[str, Path | None]:
    """Where each judge's reals-vs-reals baseline for these exact pixels and settings is kept.

    The key holds everything the result depends on: the reals' bytes (hashed once for all judges),
    the test's settings, the judge's design, the torch version and the thread count (CPU kernels sum
    in another order with another count, so a baseline from 2 threads is not the one 1 thread would
    get)."""
    if opts.cache_dir is None:
        return {name: None for name in opts.judges}
    import hashlib
    import json

    import torch

    pixels = hashlib.blake2b(np.ascontiguousarray(real).data, digest_size=16)
    shared = {"shape": real.shape, "torch": torch.__version__, "threads": torch.get_num_threads(),
              **{k: getattr(opts, k) for k in ("folds", "epochs", "width", "batch_size", "lr", "seed",
                                               "confidence")}}
    files: dict[str, Path | None] = {}
    for judge in opts.judges:
        spec = JUDGES[judge]
        parts = {**shared, "judge": [judge, spec.width, *(getattr(f, "__name__", "") for f in
                                                          (spec.view, spec.network, spec.features))]}
        digest = pixels.copy()
        digest.update(json.dumps(parts, sort_keys=True, default=str).encode())
        files[judge] = (Path(opts.cache_dir) / "c2st-reference"
                        / f"{judge}-{digest.hexdigest()}-v{REFERENCE_CACHE_VERSION}.json")
    return files


def _read_reference(path: Path | None) -> dict[str, Any] | None:
    """A stored baseline, or None when there is none or it is damaged (then it is computed again)."""
    import json

    if path is None or not path.is_file():
        return None
    try:
        r = json.loads(path.read_text())
        ok = set(SUMMARY) <= set(r) and 0 <= r["accuracy"] <= 1 and len(r["ci"]) == 2
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return {k: r[k] for k in SUMMARY} | {"cached": True} if ok else None


def reference_test(real: np.ndarray, opts: C2STOptions) -> dict[str, dict[str, Any]]:
    """Every judge on two random halves of the reals (seeded): what "indistinguishable" scores with
    this many images, per judge; {judge: summary, or {"error": why}}.

    With `opts.cache_dir`, a judge's baseline is computed once per set of reals and settings and
    read back by later reports (marked `cached`): judging ten runs against one folder of reals
    trains the baselines once, a third of the panel's time saved on every later run."""
    from dataclasses import replace

    from ..files import write_json

    rng = np.random.default_rng(opts.seed + 1)
    perm = rng.permutation(len(real))
    half = len(real) // 2
    if half < opts.folds:
        return {name: {"error": f"too few reals for two halves of {opts.folds} or more"}
                for name in check_judges(opts.judges)}
    files = _reference_files(real, replace(opts, judges=check_judges(opts.judges)))
    found = {name: r for name, path in files.items() if (r := _read_reference(path)) is not None}
    missing = tuple(name for name in opts.judges if name not in found)
    if missing:
        a, b = real[perm[:half]], real[perm[half: 2 * half]]
        for name, r in panel_test(a, b, replace(opts, judges=missing)).items():
            found[name] = {k: r[k] for k in SUMMARY}
            path = files[name]
            if path is not None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_json(path, found[name])
                except OSError:  # a read-only or full cache folder must not fail the report
                    pass
    return {name: found[name] for name in opts.judges}


def c2st_report(real: np.ndarray, fake: np.ndarray, opts: C2STOptions,
                fake_names: list[str] | None = None) -> dict[str, Any]:
    """The panel on reals vs fakes, and (opts.reference) on two halves of the reals, JSON-ready.

    `judges` holds each judge's figures, `verdict` the strongest; `fake_vs_real` and `real_vs_real`
    are the strongest judge's (the keys of the one-classifier test of earlier versions).
    `surest_fakes` / `surest_reals` list the images the strongest judge was surest about
    (`fake_names[i]` or the index), for `surest_grid`.
    """
    tests = panel_test(real, fake, opts)
    refs = reference_test(real, opts) if opts.reference else {}
    decision = verdict(tests, refs or None)
    main = tests[decision["judge"]]
    order = np.argsort(-np.asarray(main["prob_b"]), kind="stable")[: opts.surest]
    surest = [{"index": int(main["index_b"][i]), "prob_fake": float(main["prob_b"][i]),
               **({"file": fake_names[main["index_b"][i]]} if fake_names else {})} for i in order]
    real_order = np.argsort(np.asarray(main["prob_a"]), kind="stable")[: opts.surest]
    surest_reals = [{"index": int(main["index_a"][i]), "prob_fake": float(main["prob_a"][i])}
                    for i in real_order]
    out: dict[str, Any] = {
        "method": (f"{opts.folds}-fold classifiers trained from scratch (flips), a panel of "
                   f"{len(opts.judges)}, the strongest decides; Wilson {opts.confidence:.0%} intervals"),
        "options": asdict(opts),
        "judges": {name: {"why": JUDGES[name].why, "seconds": tests[name]["seconds"],
                          "fake_vs_real": {k: tests[name][k] for k in SUMMARY},
                          **({"real_vs_real": refs[name]} if name in refs else {})}
                   for name in opts.judges},
        "verdict": decision,
        "fake_vs_real": {k: main[k] for k in SUMMARY},
        "surest_fakes": surest, "surest_reals": surest_reals}
    if decision["judge"] in refs:
        out["real_vs_real"] = refs[decision["judge"]]
    if opts.bands:
        # Which scale gives the fakes away: the original judge on a low-pass and a high-pass view.
        out["bands"] = {"sigma": opts.band_sigma, "judge": "strided", **{
            name: {k: v for k, v in two_sample_test(real, fake, opts, view=name).items() if k in SUMMARY}
            for name in BAND_VIEWS}}
    return out


def surest_grid(fake: np.ndarray, report: dict[str, Any], path: str | Path,
                real: np.ndarray | None = None) -> Path:
    """A PNG grid of the fakes the strongest judge was surest about (surest first, row by row) and,
    when `real` is given, beside it (after a white gap) the reals it was surest were real: what
    gives the fakes away next to what it takes for real."""
    import torch
    from PIL import Image
    from torchvision.utils import make_grid

    from ..files import atomic_path

    idx = [s["index"] for s in report["surest_fakes"]]
    nrow = int(np.ceil(np.sqrt(len(idx))))

    def grid_of(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        return make_grid(x, nrow=nrow, padding=2, pad_value=255)

    grid = grid_of(fake[idx])
    if real is not None and report.get("surest_reals"):
        reals = grid_of(real[[s["index"] for s in report["surest_reals"][: len(idx)]]])
        height = max(grid.shape[1], reals.shape[1])

        def pad(g: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.pad(g, (0, 0, 0, height - g.shape[1]), value=255)

        gap = torch.full((3, height, 2 * fake.shape[2] // 4), 255, dtype=grid.dtype)
        grid = torch.cat([pad(grid), gap, pad(reals)], 2)
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(grid.permute(1, 2, 0).numpy()).save(tmp, format="PNG")
    return path


def _line(name: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"  {name:<15} n/a: {r['error']}"
    return (f"  {name:<15} accuracy {r['accuracy']:.3f}  [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]  "
            f"p {r['p_value']:.2g}  ({r['images_per_set']} vs {r['images_per_set']})")


def format_c2st(entry: dict[str, Any]) -> list[str]:
    """Lines for the plain-text quality report: one line per judge (fakes, then its reals-vs-reals
    baseline), the verdict, and a plain "cannot tell" when the verdict lacks the images to decide."""
    confidence = entry.get("options", {}).get("confidence", 0.95)
    lines = [f"classifier two-sample test ({entry['method']}; 0.5 = indistinguishable)"]
    if "judges" not in entry:  # a report of the one-classifier test of earlier versions
        lines.append(_line("fakes vs reals", entry["fake_vs_real"]))
        if "real_vs_real" in entry:
            lines.append(_line("reals vs reals", entry["real_vs_real"]))
    else:
        lines.append(f"  {'judge':<12} {'fakes vs reals':<32}{'time':>8}{'':<4} reals vs reals")
        for name, j in entry["judges"].items():
            f = j["fake_vs_real"]
            ref = j.get("real_vs_real")
            ref_text = ("" if ref is None else f"n/a: {ref['error']}" if "error" in ref
                        else f"{ref['accuracy']:.3f} [{ref['ci'][0]:.3f}, {ref['ci'][1]:.3f}]"
                        + (" (cached)" if ref.get("cached") else ""))
            lines.append(f"  {name:<12} {f['accuracy']:.3f} [{f['ci'][0]:.3f}, {f['ci'][1]:.3f}] "
                         f"p {f['p_value']:<8.2g}{j.get('seconds', 0):>6.0f} s{'':<4} {ref_text}")
        v = entry["verdict"]
        base = (f"; reals vs reals {v['real_vs_real']:.3f} (panel max {v['real_vs_real_max']:.3f})"
                if "real_vs_real" in v else "")
        lines.append(f"  verdict: {v['judge']} (the strongest) {v['accuracy']:.3f} "
                     f"[{v['ci'][0]:.3f}, {v['ci'][1]:.3f}], p {v['p_value']:.2g} corrected for "
                     f"{len(entry['judges'])} judge{'s' * (len(entry['judges']) > 1)} "
                     f"({v['images_per_set']} vs {v['images_per_set']}){base}")
        note = power_note(v, confidence)
        if note:
            lines.append(f"  {note}")
    if "bands" in entry:
        sigma = entry["bands"]["sigma"]
        lines += [_line("coarse view", entry["bands"]["coarse"])
                  + f"  shape and colour (Gaussian low-pass, sigma {sigma:g} px; strided judge)",
                  _line("fine view", entry["bands"]["fine"]) + "  texture (the image minus that low-pass)"]
    return lines
