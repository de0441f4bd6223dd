"""Do the fakes help a classifier? Train on real, real + synthetic, synthetic only; test on held-out reals.

The reason to synthesise melanoma images is a better benign/malignant classifier, and the record is
mixed (gains of about 0.02 AUC in some studies, none in-distribution in Bissoto et al. 2021). This
module answers "do my fakes help, and how sure is that?" for a user's own folders: the same small
classifier, trained from scratch with the same augmentation and the same number of steps, under
each regime (`regimes`), is scored on held-out real images, over several seeds, with a bootstrap
interval for each score and for its difference to the real-only regime.

Hand-written because no maintained library runs train-on-synthetic / test-on-real comparisons on
image folders; the scores (ROC AUC, balanced accuracy) and the bootstrap's stratified resampling
come from scikit-learn, the networks from c2st.py (the small CNN and its flips) and torchvision.

The interval is a two-level bootstrap: each replicate resamples the test images (stratified by
class) and the seeds, so that it holds both the luck of the test set and that of the
initialisation. A difference is paired: both regimes are scored on the same resampled images.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UserError
from ..images import decode_images, find_images, open_image
from ..resources import cpu_count
from .c2st import _flip, _tensor
from .judges import strided_net

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure
    from torch import nn

log = logging.getLogger(__name__)

MIN_PER_CLASS = 5  # fewer and a class's score is noise (a test class of 3 images moves AUC by 1/3)
REAL_ONLY, SYNTHETIC_ONLY, BALANCE = "real only", "synthetic only", "real + rare-class fakes"
SCORE_NAMES = {"roc_auc": "ROC AUC", "balanced_accuracy": "balanced accuracy"}


def small_cnn(num_classes: int, width: int) -> nn.Module:
    """The C2ST's `strided` judge (three stride-2 convs, global pool) with one logit per class."""
    from torch import nn

    net = strided_net(3, width)
    net[-1] = nn.Linear(net[-1].in_features, num_classes)
    return net


def resnet18(num_classes: int, width: int) -> nn.Module:
    """torchvision's ResNet-18, random init (`width` unused: the architecture fixes it)."""
    from torchvision.models import resnet18 as tv_resnet18

    return tv_resnet18(weights=None, num_classes=num_classes)


# name -> (number of classes, width) -> a fresh, randomly initialised network
CLASSIFIERS: dict[str, Callable[[int, int], nn.Module]] = {"cnn": small_cnn, "resnet18": resnet18}


@dataclass
class UtilityOptions:
    classifier: str = "cnn"
    weights: str | None = None  # a local state_dict to start from instead of the random init
    epochs: int = 10  # of the largest training set; every regime trains for the same number of steps
    batch_size: int = 32
    lr: float = 1e-3
    width: int = 16
    seeds: int = 3
    seed: int = 0
    shares: tuple[float, ...] = (0.25, 0.5, 1.0)  # fakes added, as a fraction of each class's reals
    balance: bool = True  # also the regime that adds fakes of the rarer classes only
    positive: str | None = None  # two classes: the one scored (default: the rarer in TRAIN_REAL)
    threshold: float = 0.5  # on the positive class's probability, for sensitivity and specificity
    confidence: float = 0.95
    bootstrap: int = 1000
    size: int | None = None  # side of the square the images are cropped and resized to
    progress: bool = True


@dataclass
class ClassFolder:
    """A folder with one subfolder per class, decoded at one size."""

    root: Path
    images: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) index into `classes`
    classes: list[str]
    paths: list[Path]
    hashes: list[str]  # of the decoded pixels: a copy under another name or lossless format is caught
    skipped: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}


def load_class_folder(root: str | Path, what: str, size: int | None) -> ClassFolder:
    """Decode every image under `root`; its first subfolder is its class. `what` names the argument."""
    root = Path(root)
    paths = find_images(root, required=True)
    loose = [p for p in paths if p.parent == root]
    if loose:
        raise UserError(f"{loose[0]}: {what} needs one subfolder per class (e.g. benign/, malignant/), "
                        f"this image is directly in {root}")
    size = size or min(open_image(paths[0]).size)  # an unreadable one is a one-line error naming it
    decoded = list(decode_images(paths, (size, size), workers=cpu_count()))
    kept = [d for d in decoded if d.error is None]
    names = [d.path.relative_to(root).parts[0] for d in kept]
    classes = sorted(set(names))
    images = np.stack([d.image for d in kept]) if kept else np.empty((0, size, size, 3), np.uint8)
    return ClassFolder(root, images, np.array([classes.index(n) for n in names], dtype=np.int64), classes,
                       [d.path for d in kept], [hashlib.sha256(d.image.tobytes()).hexdigest() for d in kept],
                       [d.error for d in decoded if d.error is not None])


def check_folders(train: ClassFolder, named: dict[str, ClassFolder]) -> None:
    """One-line errors for what would make the comparison meaningless: unlike classes, too few
    images of a class, test images that are also training images."""
    if len(train.classes) < 2:
        raise UserError(f"{train.root}: TRAIN_REAL needs two or more class subfolders, found "
                        f"{', '.join(train.classes) or 'none'}")
    for what, folder in [("TRAIN_REAL", train), *named.items()]:
        for c in sorted(set(train.classes) ^ set(folder.classes)):
            where, other = (folder, "TRAIN_REAL") if c in train.classes else (train, what)
            raise UserError(f"{where.root}: no class folder {c}/ (or no readable image in it), but {other} "
                            f"has one; every folder needs the classes {', '.join(train.classes)}")
        for c, n in folder.counts().items():
            if n < MIN_PER_CLASS:
                raise UserError(f"{folder.root / c}: {n} readable images, {what} needs at least "
                                f"{MIN_PER_CLASS} per class")
    training = {h: p for f in (train, named["SYNTHETIC"]) for h, p in zip(f.hashes, f.paths, strict=True)}
    for what, folder in named.items():
        if what == "SYNTHETIC":
            continue
        shared = [(p, training[h]) for h, p in zip(folder.hashes, folder.paths, strict=True) if h in training]
        if shared:
            raise UserError(f"{folder.root}: {len(shared)} of its images are also training images (same "
                            f"pixels, e.g. {shared[0][0]} and {shared[0][1]}): a test on training images "
                            "means nothing; remove them from one of the folders")


# How many fakes of a class a regime adds: (that class's reals, the largest class's reals, its fakes) -> count
Draw = Callable[[int, int, int], int]


def regimes(train: ClassFolder, opts: UtilityOptions) -> dict[str, Draw]:
    """The regimes, real only first: shares of fakes added, the rare-class mode, fakes only (all of
    SYNTHETIC). The rare-class mode fills each class up to the largest; left out when none is rarer."""
    out: dict[str, Draw] = {REAL_ONLY: lambda n, top, f: 0}
    for share in opts.shares:
        out[f"real + {share:.0%} synthetic"] = lambda n, top, f, share=share: round(share * n)
    if opts.balance and len(set(train.counts().values())) > 1:
        out[BALANCE] = lambda n, top, f: top - n
    out[SYNTHETIC_ONLY] = lambda n, top, f: f
    return out


def draw_fakes(draw: Draw, train: ClassFolder, fake: ClassFolder, rng: np.random.Generator) -> np.ndarray:
    """Indices of the fakes a regime trains on: per class a seeded draw without replacement of as
    many as `draw` asks for (all there are, when it asks for more)."""
    real = train.counts()
    chosen = []
    for i, c in enumerate(fake.classes):
        pool = np.flatnonzero(fake.labels == i)
        want = draw(real[c], max(real.values()), len(pool))
        chosen.append(rng.choice(pool, min(want, len(pool)), replace=False))
    return np.sort(np.concatenate(chosen))


def train_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int, steps: int, opts: UtilityOptions,
                     seed: int, tick: Callable[[], None] = lambda: None) -> nn.Module:
    """A fresh network (`opts.classifier`, or `opts.weights`) trained for `steps` batches, with
    random flips; the init, batch order and flips derive from `seed`. `tick` is called per step."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the weights' init, without touching the caller's RNG
        torch.manual_seed(seed)
        net = CLASSIFIERS[opts.classifier](num_classes, opts.width)
    if opts.weights:
        load_weights(net, opts.weights)
    net = net.to(memory_format=torch.channels_last)
    optim = torch.optim.Adam(net.parameters(), lr=opts.lr)
    batch = min(opts.batch_size, len(x))
    order = torch.empty(0, dtype=torch.int64)
    net.train()
    for _ in range(steps):
        if len(order) < batch:  # a new epoch: every image once before any twice
            order = torch.cat([order, torch.randperm(len(x), generator=gen)])
        idx, order = order[:batch], order[batch:]
        loss = torch.nn.functional.cross_entropy(net(_flip(x[idx], gen)), y[idx])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        tick()
    return net.eval()


def load_weights(net: nn.Module, path: str) -> None:
    """Start from a local state_dict: the layers whose names and shapes match are loaded, the rest
    (typically the last layer, sized for another number of classes) keep their random init."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling error: the message names the file
        raise UserError(f"{path}: not a readable PyTorch weights file ({err})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = net.state_dict()
    matching = {k: v for k, v in state.items() if k in own and getattr(v, "shape", None) == own[k].shape}
    if not matching:
        raise UserError(f"{path}: none of its weights fits the classifier (--classifier); it has "
                        f"{', '.join(list(state)[:3])}...")
    net.load_state_dict(matching, strict=False)


def predict(net: nn.Module, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Class probabilities (N, K), averaged over the four flips the classifier was trained to ignore."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            xb = x[s: s + batch]
            probs = sum(torch.softmax(net(xb.flip(d) if d else xb), 1) for d in ((), (2,), (3,), (2, 3)))
            out.append(probs / 4)
    return torch.cat(out).numpy()


def scores(y: np.ndarray, prob: np.ndarray, positive: int | None, threshold: float) -> dict[str, float]:
    """ROC AUC, sensitivity and specificity at `threshold` (two classes, `positive` scored), or
    balanced accuracy (more classes)."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    if positive is None:
        return {"balanced_accuracy": float(balanced_accuracy_score(y, prob.argmax(1)))}
    is_pos, called = y == positive, prob[:, positive] >= threshold
    return {"roc_auc": float(roc_auc_score(is_pos, prob[:, positive])),
            "sensitivity": float(called[is_pos].mean()), "specificity": float(1 - called[~is_pos].mean())}


def replicate_scores(y: np.ndarray, prob: np.ndarray, positive: int | None, threshold: float,
                     idx: np.ndarray) -> dict[str, np.ndarray]:
    """`scores` of each bootstrap replicate `idx[b]` (B, N indices into the test set), vectorised.

    Hand-written because sklearn's scorers cost about a millisecond a call in input checks, and the
    intervals need replicates x seeds x regimes calls; tests hold it equal to sklearn's. AUC is the
    Mann-Whitney statistic on mid-ranks (ties count half, as in sklearn)."""
    from scipy.stats import rankdata

    yb = y[idx]
    if positive is None:
        pred = prob.argmax(1)[idx]
        recall = [((pred == c) & (yb == c)).sum(1) / (yb == c).sum(1) for c in range(prob.shape[1])]
        return {"balanced_accuracy": np.mean(recall, axis=0)}
    p, pos = prob[idx, positive], yb == positive
    n_pos, n_neg = pos.sum(1), (~pos).sum(1)
    auc = ((rankdata(p, axis=1) * pos).sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    called = p >= threshold
    return {"roc_auc": auc, "sensitivity": (called & pos).sum(1) / n_pos,
            "specificity": (~called & ~pos).sum(1) / n_neg}


def stratified_replicates(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, len(y)) bootstrap draws of test-image indices; each class keeps its count (a replicate
    without positives would have no AUC). Vectorised, for the reason `replicate_scores` says."""
    cols = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        cols.append(members[rng.integers(len(members), size=(n, len(members)))])
    return np.concatenate(cols, axis=1)


def summarise(y: np.ndarray, probs: dict[str, list[np.ndarray]], positive: int | None,
              opts: UtilityOptions) -> dict[str, Any]:
    """Per regime: each score's mean over seeds with its bootstrap interval, the per-seed values and
    the difference to real only with its (paired: same images, same seeds) interval."""
    rng = np.random.default_rng(opts.seed)
    n_seeds = len(probs[REAL_ONLY])
    idx = stratified_replicates(y, opts.bootstrap, rng)
    pick = rng.integers(n_seeds, size=(opts.bootstrap, n_seeds))  # the seeds each replicate resamples
    tail = (1 - opts.confidence) / 2 * 100

    def interval(values: np.ndarray) -> list[float]:
        return [float(v) for v in np.percentile(values, [tail, 100 - tail])]

    reps: dict[str, dict[str, np.ndarray]] = {}  # regime -> score -> (B,) mean over the resampled seeds
    out: dict[str, Any] = {}
    for r, p in probs.items():
        per_seed = [replicate_scores(y, q, positive, opts.threshold, idx) for q in p]
        reps[r] = {k: np.stack([s[k] for s in per_seed])[pick, np.arange(opts.bootstrap)[:, None]].mean(1)
                   for k in per_seed[0]}
        full = [scores(y, q, positive, opts.threshold) for q in p]
        out[r] = {k: {"mean": float(np.mean([f[k] for f in full])), "ci": interval(reps[r][k]),
                      "seeds": [f[k] for f in full]} for k in full[0]}
        if r != REAL_ONLY:
            main = next(iter(full[0]))
            gain = out[r][main]["mean"] - out[REAL_ONLY][main]["mean"]
            out[r]["difference"] = {"score": main, "mean": gain,
                                    "ci": interval(reps[r][main] - reps[REAL_ONLY][main])}
    return out


def utility_report(train_path: str, fake_path: str, test_path: str, ood_path: str | None,
                   opts: UtilityOptions) -> dict[str, Any]:
    """Everything `img2dist.py utility` computes, JSON-ready (see `format_utility`)."""
    import torch
    from tqdm import tqdm

    if opts.classifier not in CLASSIFIERS:
        raise UserError(f"--classifier {opts.classifier}: unknown, choose from {', '.join(CLASSIFIERS)}")
    start = time.perf_counter()
    train = load_class_folder(train_path, "TRAIN_REAL", opts.size)
    size = train.images.shape[1]
    named = {"SYNTHETIC": load_class_folder(fake_path, "SYNTHETIC", size),
             "TEST_REAL": load_class_folder(test_path, "TEST_REAL", size)}
    if ood_path:
        named["--ood"] = load_class_folder(ood_path, "--ood", size)
    check_folders(train, named)
    fake = named["SYNTHETIC"]
    counts = train.counts()
    positive = None
    if len(train.classes) == 2:
        name = opts.positive or min(reversed(train.classes), key=lambda c: counts[c])
        if name not in train.classes:
            raise UserError(f"--positive {name}: not a class, the classes are {', '.join(train.classes)}")
        positive = train.classes.index(name)
    if opts.weights:
        load_weights(CLASSIFIERS[opts.classifier](len(train.classes), opts.width), opts.weights)  # fail early

    rng = np.random.default_rng(opts.seed)
    plans = {r: [draw_fakes(draw, train, fake, rng) for _ in range(opts.seeds)]
             for r, draw in regimes(train, opts).items()}
    names = list(plans)
    sizes = {r: (0 if r == SYNTHETIC_ONLY else len(train.paths)) + len(plans[r][0]) for r in names}
    steps = opts.epochs * math.ceil(max(sizes.values()) / opts.batch_size)
    x_real, x_fake = _tensor(train.images), _tensor(fake.images)
    y_real, y_fake = torch.from_numpy(train.labels), torch.from_numpy(fake.labels)
    tests = {"test": named["TEST_REAL"], **({"ood": named["--ood"]} if ood_path else {})}
    x_tests = {k: _tensor(f.images) for k, f in tests.items()}
    probs: dict[str, dict[str, list[np.ndarray]]] = {k: {r: [] for r in names} for k in tests}
    with tqdm(total=len(names) * opts.seeds * steps, desc="utility", unit="step", leave=False,
              disable=None if opts.progress else True) as bar:
        for r in names:
            for s, chosen in enumerate(plans[r]):
                bar.set_description(f"{r}, seed {opts.seed + s}")
                ix = torch.from_numpy(chosen)
                x = x_fake[ix] if r == SYNTHETIC_ONLY else torch.cat([x_real, x_fake[ix]])
                y = y_fake[ix] if r == SYNTHETIC_ONLY else torch.cat([y_real, y_fake[ix]])
                net = train_classifier(x, y, len(train.classes), steps, opts, opts.seed + s, bar.update)
                for k, xt in x_tests.items():
                    probs[k][r].append(predict(net, xt))

    def composition(r: str) -> dict[str, dict[str, int]]:
        drawn = Counter(fake.classes[i] for i in fake.labels[plans[r][0]])
        return {"real": {} if r == SYNTHETIC_ONLY else counts,
                "synthetic": {c: drawn[c] for c in fake.classes}}

    report: dict[str, Any] = {
        "method": (f"{opts.classifier} from {'--weights' if opts.weights else 'random init'}, random flips, "
                   f"{steps} steps of {opts.batch_size} per run, {opts.seeds} seeds; score: mean over seeds; "
                   f"{opts.confidence:.0%} interval: {opts.bootstrap} bootstrap replicates of the test "
                   "images (stratified) and the seeds; differences paired on the same images"),
        "options": {**asdict(opts), "shares": list(opts.shares)},
        "classes": train.classes, "positive": None if positive is None else train.classes[positive],
        "score": "roc_auc" if positive is not None else "balanced_accuracy",
        "size": size, "steps_per_run": steps,
        "folders": {what: {"path": str(f.root), "images": f.counts(), "skipped": f.skipped}
                    for what, f in [("TRAIN_REAL", train), *named.items()]},
        "regimes": {r: composition(r) for r in names}}
    for k, f in tests.items():
        report[k] = summarise(f.labels, probs[k], positive, opts)
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


def format_utility(report: dict[str, Any]) -> str:
    """The report as a plain-text table, one block per test folder."""
    score = report["score"]
    lines = [f"classifier utility ({report['method']})",
             f"classes {', '.join(report['classes'])}" + (f"; positive {report['positive']}, threshold "
                                                          f"{report['options']['threshold']:g}"
                                                          if report["positive"] else "")]
    for k in ("test", "ood"):
        if k not in report:
            continue
        lines.append(f"{report['folders']['TEST_REAL' if k == 'test' else '--ood']['path']}:")
        head = f"  {'regime':<26} {'train (real+fake)':>17}  {score:<26} {'difference to real only':<27}"
        lines.append(head + ("  sensitivity  specificity" if report["positive"] else ""))
        for r, e in report[k].items():
            comp = report["regimes"][r]
            n = f"{sum(comp['real'].values())}+{sum(comp['synthetic'].values())}"
            m = e[score]
            diff = (f"{e['difference']['mean']:+.3f} [{e['difference']['ci'][0]:+.3f}, "
                    f"{e['difference']['ci'][1]:+.3f}]" if "difference" in e else "")
            row = f"  {r:<26} {n:>17}  {m['mean']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]    {diff:<27}"
            if report["positive"]:
                row += f"  {e['sensitivity']['mean']:>11.3f}  {e['specificity']['mean']:>11.3f}"
            lines.append(row)
    return "\n".join(lines)


def utility_plot(report: dict[str, Any]) -> Figure:
    """Intervals per regime: the score, its difference to real only, and (two classes) sensitivity and
    specificity; one row per test folder."""
    from matplotlib.figure import Figure

    from .plot import plain

    sets = [k for k in ("test", "ood") if k in report]
    score = report["score"]
    cols = 3 if report["positive"] else 2
    names = list(report["regimes"])
    ypos = np.arange(len(names))[::-1]
    fig = Figure(figsize=(4.2 * cols, 1.1 + 0.45 * len(names) * len(sets)), layout="constrained")
    axes = fig.subplots(len(sets), cols, squeeze=False, sharey=True)
    for row, k in zip(axes, sets, strict=True):
        entries = report[k]
        title = "held-out reals" if k == "test" else "out-of-distribution (--ood)"
        _intervals(row[0], ypos, [entries[r][score] for r in names], "tab:blue")
        row[0].axvline(entries[REAL_ONLY][score]["mean"], color="0.6", lw=0.8, ls="--")
        row[0].set_title(f"{SCORE_NAMES[score]}, {title}", fontsize=10)
        _intervals(row[1], ypos, [entries[r].get("difference") for r in names], "tab:red")
        row[1].axvline(0, color="0.3", lw=0.8)
        row[1].set_title("difference to real only", fontsize=10)
        if cols == 3:
            for shift, key, color in ((0.12, "sensitivity", "tab:purple"),
                                      (-0.12, "specificity", "tab:green")):
                _intervals(row[2], ypos + shift, [entries[r][key] for r in names], color, key)
            row[2].set_title(f"at p({plain(report['positive'])}) >= {report['options']['threshold']:g}",
                             fontsize=10)
        row[0].set_yticks(ypos, [plain(n) for n in names])
    if cols == 3:  # under the plot, where it covers no interval
        axes[-1, 2].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=2)
    fig.suptitle(f"Do the fakes help? {report['options']['seeds']} seeds, "
                 f"{report['options']['confidence']:.0%} bootstrap intervals", fontsize=11)
    return fig


def _intervals(ax: Any, ypos: np.ndarray, entries: list[dict[str, Any] | None], color: str,
               label: str | None = None) -> None:
    """A dot at each mean with a bar over its interval (None: nothing drawn on that row)."""
    for i, (y, e) in enumerate(zip(ypos, entries, strict=True)):
        if e is None:
            continue
        ax.errorbar(e["mean"], y, xerr=[[e["mean"] - e["ci"][0]], [e["ci"][1] - e["mean"]]], fmt="o",
                    color=color, capsize=3, ms=5, label=label if i == 0 else None)
    ax.grid(axis="x", alpha=0.3)
