"""What a run folder shows a person: log.txt, stats.jsonl, a loss-curve PNG and sample grids.

`stats.jsonl` is appended one line per log interval and never rewritten, so a crash loses at most
one interval (one related project regretted losing its loss data). The loss-curve PNG is redrawn
from the whole file each time, atomically, so it is always complete and always current.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import logging.handlers
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..files import atomic_path, disk_full_names

STATS = "stats.jsonl"
LOG = "log.txt"
LOSS_CURVE = "loss_curve.png"
SAMPLES = "samples"


class _ConsoleHandler(logging.Handler):
    """Warnings to stderr through tqdm.write, so that they don't tear the progress bar."""

    console = True  # dcgan.cli then leaves the warnings to this handler: each is shown once

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(f"warning: {record.getMessage()}", file=sys.stderr)


def start_log(is_main: bool = True) -> list[logging.Handler]:
    """Warnings to the console from now on, and every record kept in memory until
    `attach_log_file` may write log.txt: the run folder is touched only once the input is known
    to be good, yet the warnings about skipped files still reach its log. Ranks other than 0
    stay silent (one message per run, not one per process)."""
    logger = logging.getLogger("dcgan")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handlers: list[logging.Handler] = (
        [logging.handlers.BufferingHandler(capacity=100_000), _ConsoleHandler(logging.WARNING)] if is_main
        else [logging.NullHandler()])
    for h in handlers:
        logger.addHandler(h)
    return handlers


def attach_log_file(run_dir: Path, handlers: list[logging.Handler]) -> list[logging.Handler]:
    """Send the toolkit's log messages to run_dir/log.txt (appending across resumes), beginning with
    those `start_log` kept; returns the handlers for `detach_log`."""
    file_handler = logging.FileHandler(run_dir / LOG, encoding="utf-8")
    # A full disk must not print logging's traceback for every message: the run's own write fails
    # next and says so in one line.
    file_handler.handleError = lambda record: None  # type: ignore[method-assign]
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    kept = [h for h in handlers if isinstance(h, logging.handlers.BufferingHandler)]
    for buffer in kept:
        for record in buffer.buffer:
            file_handler.handle(record)
    detach_log(kept)
    logging.getLogger("dcgan").addHandler(file_handler)
    return [file_handler, *(h for h in handlers if h not in kept)]


def detach_log(handlers: list[logging.Handler]) -> None:
    for h in handlers:
        logging.getLogger("dcgan").removeHandler(h)
        h.close()


def append_stats(run_dir: Path, record: dict[str, Any]) -> None:
    with disk_full_names(run_dir / STATS), open(run_dir / STATS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_stats(run_dir: Path) -> list[dict[str, Any]]:
    """All records of stats.jsonl; a torn last line (killed mid-write) is ignored."""
    path = run_dir / STATS
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_stats(run_dir: Path, step: int) -> None:
    """Drop records after `step` (a resume from an older checkpoint re-does those steps)."""
    records = [r for r in read_stats(run_dir) if r.get("step", 0) <= step]
    with atomic_path(run_dir / STATS, durable=True) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


class StepClock:
    """Time left: the training steps at the recent rate, plus the periodic work still to come.

    Steps: the first after a start is left out (allocation and warm-up); then the rate over the
    last `window_s` seconds of steps (their time over their count), the mean of all until that
    much time has passed. A window in seconds, not in steps: a window of 50 fast steps lasted
    seconds, so every burst of load on a shared CPU swung the ETA; as a rate, a burst of slow steps
    counts for the time it took, not more; and a load that stays is the whole window, so the
    estimate equals it `window_s` later (an exponential decay took several times as long: fast
    steps leave many counts in its tail). Figures: docs/performance.md.

    Periodic work (sample grids with their plots, checkpoints, evaluations): each kind timed apart
    (`periodic`) and counted as often as `every` says it still comes, the run's last step included,
    so that the ETA holds their time from the start instead of leaving it out (at 160 px a third
    of a short run). A kind not yet timed counts nothing until it is.

    It is the training loop's one clock: besides it times the log intervals (`lap`) and what the
    run spent outside the steps (`other_seconds`), for the end-of-run summary.
    """

    def __init__(self, total: int = 0, every: dict[str, int] | None = None, window_s: float = 180.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.total, self.every, self.window_s, self.clock = total, dict(every or {}), window_s, clock
        self.steps_timed = 0
        self.step_seconds = 0.0  # all timed steps, the first included, for the end-of-run summary
        self.periodic_seconds: dict[str, float] = {}  # kind -> smoothed seconds per occurrence
        self._periodic_count: dict[str, int] = {}
        self._window: collections.deque[float] = collections.deque()  # the step times in the window
        self._window_time = 0.0
        self._warm = False
        self._reported = False
        self.started = self._lap_start = clock()

    @property
    def sec_per_step(self) -> float | None:
        """Seconds per training step at the recent rate, or None before a step has been timed."""
        return self._window_time / len(self._window) if self._window else None

    def now(self) -> float:
        return self.clock()

    def lap(self) -> float:
        """Seconds since the previous lap (or the start), steps and periodic work alike."""
        now = self.clock()
        seconds, self._lap_start = now - self._lap_start, now
        return seconds

    def other_seconds(self) -> float:
        """Seconds since the start spent outside the timed steps (grids, plots, checkpoints, ...)."""
        return self.clock() - self.started - self.step_seconds

    def step(self) -> contextlib.AbstractContextManager[None]:
        """Time the enclosed training step."""
        return self._timed(None)

    def periodic(self, kind: str) -> contextlib.AbstractContextManager[None]:
        """Time the enclosed periodic work of `kind` (a key of `every`)."""
        return self._timed(kind)

    @contextlib.contextmanager
    def _timed(self, kind: str | None) -> Any:
        t0 = self.clock()
        yield
        seconds = self.clock() - t0
        if kind is not None:
            n = self._periodic_count[kind] = self._periodic_count.get(kind, 0) + 1
            weight = max(1.0 / n, 0.25)  # a mean of the first few, then mostly the last four or so
            before = self.periodic_seconds.get(kind, seconds)
            self.periodic_seconds[kind] = before + weight * (seconds - before)
            return
        self.step_seconds += seconds
        if not self._warm:
            self._warm = True
            return
        self.steps_timed += 1
        self._window.append(seconds)
        self._window_time += seconds
        while self._window_time - self._window[0] >= self.window_s:  # the newest step always stays
            self._window_time -= self._window.popleft()

    def still_to_come(self, kind: str, step: int) -> int:
        """How often `kind` still runs after training step `step`, its own included (not yet done),
        and the last step's (every kind runs after the run's last step)."""
        every = self.every[kind]
        return self.total // every - (step - 1) // every + (1 if self.total % every else 0)

    def eta(self, step: int) -> float | None:
        """Seconds to the end from just after training step `step` (its periodic work still to do),
        or None before a step has been timed."""
        if self.sec_per_step is None:
            return None
        periodic = sum(self.still_to_come(kind, step) * seconds
                       for kind, seconds in self.periodic_seconds.items() if kind in self.every)
        return (self.total - step) * self.sec_per_step + periodic

    def eta_text(self, step: int) -> str:
        seconds = self.eta(step)
        return "ETA ?" if seconds is None else f"ETA {clock_text(seconds)}"

    def first_rate(self) -> float | None:
        """The step time, once, as soon as it is measured on a few steps or seconds (so that a run
        says early how long it takes); None before and after."""
        if self._reported or self.sec_per_step is None or (self.steps_timed < 3 and self._window_time < 2.0):
            return None
        self._reported = True
        return self.sec_per_step


def clock_text(seconds: float) -> str:
    """Seconds as M:SS under an hour, else H:MM:SS (the progress bar's ETA, the rate's message)."""
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes:02d}:{sec:02d}"


CURVE_LABELS = {"loss_d": "D loss", "loss_g": "G loss", "d_real": "D on real images",
                "d_fake": "D on generated", "swd": "SWD", "precision": "precision", "recall": "recall",
                "augment_p": "p of each transform"}
# Drawn only when the run logs them: the evaluations (--eval-every) and adaptive augmentation's p
# (--ada-target), whose climb is the sign that D is overfitting the reals.
OPTIONAL_PANELS = (("SWD x 1e3 (lower is better)", ("swd",)), ("precision / recall", ("precision", "recall")),
                   ("augmentation probability", ("augment_p",)))


def plot_loss_curve(run_dir: Path) -> None:
    """Redraw loss_curve.png: losses, D outputs, and the evaluations (SWD, precision/recall) and
    adaptive augmentation's p if the run logs them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_stats(run_dir)
    if not records:
        return
    steps = [r["step"] for r in records]
    panels = [("loss", ("loss_d", "loss_g")), ("D output (mean logit)", ("d_real", "d_fake"))]
    panels += [p for p in OPTIONAL_PANELS if any(p[1][0] in r for r in records)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.6 * len(panels)), sharex=True, squeeze=False)
    for ax, (title, keys) in zip(axes[:, 0], panels, strict=True):
        for key in keys:
            pts = [(s, r[key]) for s, r in zip(steps, records, strict=True) if r.get(key) is not None]
            if pts:
                marker = "." if len(pts) < 40 else None  # a few evaluations: show the points
                ax.plot(*zip(*pts, strict=True), label=CURVE_LABELS.get(key, key), linewidth=1.2,
                        marker=marker)
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        # Outside the axes: inside, it covered the newest points, the ones a reader looks for.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel("training step")
    fig.suptitle("GAN training: discriminator (D) and generator (G) losses and D's outputs, "
                 f"mean of each log interval\nrun {run_dir}", fontsize=10)
    fig.tight_layout()
    with atomic_path(run_dir / LOSS_CURVE) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
