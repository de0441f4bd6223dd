"""The training loop around `Trainer`: run folder, logging, samples, checkpoints, signals.

Under torchrun every rank runs this loop; only rank 0 writes files and shows the progress bar, and
the ranks agree every step on whether to stop (a signal, a non-finite loss), so none is left
waiting in a collective.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..errors import UserError
from ..files import LOCK_NAME, DiskFullError, copy_file, folder_lock, remove_partials
from ..generate import latents_for_seeds, resolve_device
from ..losses import LOSSES
from ..options import MIN_EVAL_IMAGES, OPTIONS_FILE, TrainOptions, apply_preset
from . import distributed as ddp
from . import runlog
from .checkpoint import LATEST, no_checkpoint_yet, save_checkpoint
from .dataset import ImageSet, load_image_set
from .trainer import Trainer, build_trainer

log = logging.getLogger("dcgan.training")

BEST = "best.pt"
# The loss plot is redrawn with a sample grid but at most this often (and at the end): redraws with
# every grid cost a short run a good share of its time (docs/performance.md).
PLOT_INTERVAL_S = 30.0
RUN_ARTIFACTS = (OPTIONS_FILE, runlog.STATS, runlog.LOG, runlog.LOSS_CURVE, runlog.SAMPLES, LATEST, BEST)


class NonFiniteLoss(UserError):
    """A loss became NaN or infinite: training stops and the last good checkpoint is kept."""


@dataclass
class RunResult:
    step: int
    run_dir: Path
    stopped_by: str | None = None  # "SIGINT"/"SIGTERM" when interrupted
    trainer: Trainer | None = field(default=None, repr=False)  # for callers that embed the loop


@contextlib.contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """Ctrl-C or SIGTERM ask the loop to stop after the current step (a second Ctrl-C aborts)."""

    def handler(signum: int, frame: Any) -> None:
        if trainer.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.stop_signal = signum

    try:
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread (e.g. called from a test thread): no handlers
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def check_run_dir(opts: TrainOptions, overwrite: bool) -> None:
    """Refuse an OUTPUT_DIR we must not use; touches nothing (runs before the images are read)."""
    run_dir = Path(opts.output_dir)
    images = Path(opts.training_images).resolve()
    if run_dir.resolve() == images or images in run_dir.resolve().parents:
        raise UserError(f"{run_dir}: OUTPUT_DIR must not be inside TRAINING_IMAGES ({opts.training_images})")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a folder")
    if run_dir.exists() and any(p.name != LOCK_NAME for p in run_dir.iterdir()) and not overwrite:
        raise UserError(no_checkpoint_yet(run_dir) or
                        f"{run_dir}: not empty; continue that run with `gancontrol.py resume {run_dir}`, "
                        "or pass --overwrite to start over")


def prepare_run_dir(opts: TrainOptions, overwrite: bool) -> Path:
    """Create the run folder; with --overwrite clear our files only (never the user's others).

    Called only once the images have loaded and the options are valid, so a start that fails on
    bad input leaves OUTPUT_DIR as it was: a re-run is not refused, and an old run is not lost.
    The caller holds the run lock, so nothing here deletes the files of a run still going (and the
    lock file itself is not among RUN_ARTIFACTS).
    """
    check_run_dir(opts, overwrite)
    run_dir = Path(opts.output_dir)
    if run_dir.exists() and overwrite:
        for name in RUN_ARTIFACTS:
            p = run_dir / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        for p in run_dir.glob("checkpoint-*.pt"):
            p.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _on_main(dist: ddp.DistInfo, action: Any, *args: Any) -> None:
    """Run a file-system action on rank 0 only; every rank raises rank 0's UserError alike."""
    error = None
    if dist.is_main:
        try:
            action(*args)
        except UserError as err:
            error = str(err)
    error = ddp.broadcast_error(error, dist)
    if error:
        raise UserError(error)


def train(opts: TrainOptions, resume_from: dict[str, Any] | None = None, overwrite: bool = False,
          progress: bool = True) -> RunResult:
    """Train (or continue) a run as `opts` describe; returns where it stopped.

    Order matters for "never lose data": check OUTPUT_DIR, load and validate the images (every
    rank, alike), and only then create or clear the run folder.
    """
    opts.resolve()
    dist = ddp.init_distributed(resolve_device(opts.device))
    handlers = runlog.start_log(dist.is_main)
    run_dir = Path(opts.output_dir)
    held, locks = contextlib.ExitStack(), []  # rank 0's lock on the run folder, for the whole run

    def lock() -> None:
        if not locks:
            locks.append(held.enter_context(folder_lock(run_dir, "training run")))

    try:
        ddp.check_batch(dist, opts.batch_size)
        if run_dir.is_dir():  # a second resume, or --overwrite of a run still going: refused at once
            _on_main(dist, lock)
        if resume_from is None:
            _on_main(dist, check_run_dir, opts, overwrite)
        data = _load_data(opts, resume_from, progress and dist.is_main)
        if resume_from is None:
            _on_main(dist, lock)  # a new folder: created by the lock, once the input is known good
            _on_main(dist, prepare_run_dir, opts, overwrite)
        _on_main(dist, remove_partials, run_dir)
        if dist.is_main:
            handlers = runlog.attach_log_file(run_dir, handlers)
        return _train(opts, run_dir, resume_from, data, progress and dist.is_main, dist)
    finally:
        runlog.detach_log(handlers)
        held.close()
        ddp.shutdown(dist)


def _load_data(opts: TrainOptions, resume_from: dict[str, Any] | None, progress: bool) -> ImageSet:
    """Decode the training images and settle the options that depend on them (preset, classes)."""
    data = load_image_set(opts.training_images, opts.resolution, opts.grayscale, opts.max_memory_gb, progress)
    if resume_from is not None:
        if (data.resolution, data.channels) != (resume_from["resolution"], resume_from["channels"]):
            raise UserError(f"{opts.training_images}: images are now {data.resolution} px x {data.channels} "
                            f"channels, the checkpoint was trained on {resume_from['resolution']} px x "
                            f"{resume_from['channels']}")
    else:
        apply_preset(opts, len(data))
        opts.resolve()  # presets may change values that resolve() checks
    if opts.eval_every and len(data) < MIN_EVAL_IMAGES:
        raise UserError(f"{opts.training_images}: --eval-every needs at least {MIN_EVAL_IMAGES} training "
                        f"images, found {len(data)}")
    if opts.conditional:
        _check_classes(opts, data.class_names, resume_from)
    opts.resolution = data.resolution
    return data


def _train(opts: TrainOptions, run_dir: Path, resume_from: dict[str, Any] | None, data: ImageSet,
           progress: bool, dist: ddp.DistInfo) -> RunResult:
    trainer = build_trainer(opts, data, dist)
    if not LOSSES[opts.loss].uses_targets and opts.label_smoothing != 1.0:
        log.warning("--label-smoothing has no effect with --loss %s", opts.loss)
    if resume_from is not None:
        trainer.load_state_dict(resume_from)
        if dist.is_main:
            runlog.truncate_stats(run_dir, trainer.step)
        log.info("resuming %s at step %d of %d on %d process(es)", run_dir, trainer.step, opts.steps,
                 dist.world)
    else:
        log.info("training on %d images of %dx%d (%s), %d steps of %d on %s x%d; preset %s: %s loss, %s D, "
                 "DiffAugment %s, EMA %s", len(data), data.resolution, data.resolution, opts.training_images,
                 opts.steps, opts.batch_size, trainer.device, dist.world, opts.preset, opts.loss, opts.arch,
                 opts.diffaug, opts.ema)
    log.info("compute: %s", trainer.describe_compute())
    ddp.seed_rank(opts.seed, trainer.step, dist)  # after load_state_dict restored rank 0's stream
    if dist.is_main:
        opts.save(run_dir / OPTIONS_FILE, durable=True)
    with stop_on_signals(trainer):
        _loop(trainer, run_dir, progress, (resume_from or {}).get("best_swd"))
    log.info("%s at step %d", "stopped" if trainer.stop_signal else "finished", trainer.step)
    stopped = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}.get(trainer.stop_signal)  # type: ignore[call-overload]
    return RunResult(trainer.step, run_dir, stopped, trainer)


def _check_classes(opts: TrainOptions, classes: list[str], resume_from: dict[str, Any] | None) -> None:
    if len(classes) < 2 or "" in classes:
        raise UserError(f"{opts.training_images}: --conditional needs one subfolder per class (e.g. benign/ "
                        f"and malignant/) and no images directly in the folder; found classes {classes}")
    if resume_from is not None and resume_from.get("class_names") != classes:
        raise UserError(f"{opts.training_images}: classes are now {classes}, the checkpoint has "
                        f"{resume_from.get('class_names')}")


def grid_inputs(t: Trainer) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fixed latents of the sample grids: seeds 0..grid_size-1, classes cycling row by row."""
    n = t.opts.grid_size
    z = latents_for_seeds(range(n), t.opts.z_dim)
    if not t.num_classes:
        return z, None
    row = max(1, math.ceil(math.sqrt(n)))
    return z, (torch.arange(n) // row) % t.num_classes


def _loop(t: Trainer, run_dir: Path, progress: bool, best_swd: float | None = None) -> None:
    opts, main = t.opts, t.dist.is_main
    grid_z, grid_y = grid_inputs(t)
    evaluator = None
    if opts.eval_every and main:
        from .evaluate import Evaluator

        evaluator = Evaluator(t)
        evaluator.best_swd = best_swd if best_swd is not None else evaluator.best_swd
    samples = run_dir / runlog.SAMPLES
    if t.step == 0 and main:
        runlog.save_grid(t.sample(grid_z, grid_y), samples / "step_0000000.png")
    last_good = t.step
    # tqdm's own rate and remaining time would count the periodic work below: the ETA is ours.
    bar = tqdm(total=opts.steps, initial=t.step, unit="step", disable=not progress, dynamic_ncols=True,
               desc=run_dir.name, bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                             "[{elapsed}{postfix}]")
    clock, losses = runlog.StepClock(), ""
    acc, n_acc, t0 = torch.zeros(4, device=t.device), 0, time.perf_counter()  # summed on the device: no sync
    started = time.perf_counter()
    last_plot = t0
    try:
        while t.step < opts.steps:
            with clock.step():
                values = t.train_step()
                acc += values
                n_acc += 1
                stop = _should_stop(t, values, last_good, run_dir)
            bar.set_postfix_str(clock.eta_text(opts.steps - t.step) + losses, refresh=False)
            bar.update(1)
            if stop:
                break
            at_end = t.step == opts.steps
            if t.step % opts.log_every == 0 or at_end:
                means = ddp.all_mean((acc / n_acc).cpu(), t.dist).tolist()
                record = _stats_record(t, means, (time.perf_counter() - t0) / n_acc)
                if main:
                    runlog.append_stats(run_dir, record)
                    log.info("step %d: loss_d %.4f loss_g %.4f D(x) %.3f D(G(z)) %.3f %.1f images/s", t.step,
                             record["loss_d"], record["loss_g"], record["d_real"], record["d_fake"],
                             record["images_per_sec"] or 0)
                losses = (f", loss_d={record['loss_d']:.3f}, loss_g={record['loss_g']:.3f}, "
                          f"img/s={record['images_per_sec'] or 0:.0f}")
                acc, n_acc, t0 = torch.zeros(4, device=t.device), 0, time.perf_counter()
            if evaluator is not None and (t.step % opts.eval_every == 0 or at_end):
                _evaluate(t, evaluator, run_dir)
            if main and (t.step % opts.sample_every == 0 or at_end):
                runlog.save_grid(t.sample(grid_z, grid_y), samples / f"step_{t.step:07d}.png")
                if at_end or time.perf_counter() - last_plot >= PLOT_INTERVAL_S:
                    runlog.plot_loss_curve(run_dir)
                    last_plot = time.perf_counter()
            if t.step % opts.checkpoint_every == 0 or at_end:
                if not _weights_finite(t):  # never replace a good checkpoint with a broken one
                    raise _non_finite(t, values, last_good, run_dir)
                if main:
                    _checkpoint(t, run_dir, evaluator)
                last_good = t.step
        ddp.sync_buffers([m for m in (t.G, t.D, t.G_ema) if m is not None], t.dist)
        if t.stop_signal is not None and t.step != last_good:
            if not _weights_finite(t):
                raise _non_finite(t, torch.zeros(2), last_good, run_dir)
            if main:
                _checkpoint(t, run_dir, evaluator)
                runlog.plot_loss_curve(run_dir)
            log.info("stopped by signal %d at step %d; checkpoint written", t.stop_signal, t.step)
    finally:
        bar.close()
    if clock.step_seconds:
        log.info("%.1f s in training steps, %.1f s in sample grids, plots, checkpoints and evaluations",
                 clock.step_seconds, time.perf_counter() - started - clock.step_seconds)


def _should_stop(t: Trainer, values: torch.Tensor, last_good: int, run_dir: Path) -> bool:
    """Raise on a non-finite loss; True when a signal asks to stop. All ranks decide alike."""
    check_finite = t.device.type == "cpu" or t.step % t.opts.log_every == 0
    flags = torch.tensor([float(t.stop_signal or 0),
                          float(check_finite and not bool(torch.isfinite(values[:2]).all()))])
    flags = ddp.all_max(flags, t.dist)
    if flags[1] > 0:
        raise _non_finite(t, values, last_good, run_dir)
    if flags[0] > 0 and t.stop_signal is None:
        t.stop_signal = int(flags[0])  # another rank got the signal
    return t.stop_signal is not None


def _non_finite(t: Trainer, values: torch.Tensor, last_good: int, run_dir: Path) -> NonFiniteLoss:
    if not math.isfinite(float(values[0])):
        what = f"loss_d became {float(values[0])}"
    elif not math.isfinite(float(values[1])):
        what = f"loss_g became {float(values[1])}"
    else:
        what = "the weights became non-finite"
    kept = (f"the last good checkpoint (step {last_good}) is kept in {run_dir}" if last_good
            else "no checkpoint had been written yet")
    return NonFiniteLoss(f"{what} at step {t.step}; training stopped and {kept}. "
                         "Try lower learning rates, --arch sngan or a gradient penalty (--gp)")


def _stats_record(t: Trainer, means: list[float], sec_per_step: float) -> dict[str, Any]:
    loss_d, loss_g, d_real, d_fake = means
    images = t.opts.batch_size * t.opts.d_steps
    return {"step": t.step, "images_seen": t.step * images, "epoch": t.order.epoch,
            "loss_d": loss_d, "loss_g": loss_g, "d_real": d_real, "d_fake": d_fake,
            "sec_per_step": sec_per_step, "images_per_sec": images / sec_per_step if sec_per_step else None,
            "time": time.time()}


def _weights_finite(t: Trainer) -> bool:
    params = [p.detach() for m in (t.G, t.D) for p in m.parameters()]
    return bool(torch.stack(torch._foreach_norm(params)).isfinite().all())


def _evaluate(t: Trainer, evaluator: Any, run_dir: Path) -> None:
    """Score EMA-G, log the record, and keep best.pt when the SWD is the lowest so far."""
    record = evaluator(t)
    record["best"] = evaluator.is_best(record)
    runlog.append_stats(run_dir, record)
    log.info("step %d: SWD %.2f precision %.3f recall %.3f%s (%.1f s)", t.step, record["swd"],
             record["precision"], record["recall"], " (best so far)" if record["best"] else "",
             record["eval_seconds"])
    if record["best"]:
        save_checkpoint(run_dir / BEST, {**t.state_dict(), "best_swd": evaluator.best_swd})


def _checkpoint(t: Trainer, run_dir: Path, evaluator: Any = None) -> None:
    extra = {"best_swd": evaluator.best_swd} if evaluator is not None else {}
    try:
        save_checkpoint(run_dir / LATEST, {**t.state_dict(), **extra})
        if t.opts.keep_checkpoints:
            copy_file(run_dir / LATEST, run_dir / f"checkpoint-{t.step:07d}.pt", durable=True)
    except DiskFullError as err:
        then = (f"the previous checkpoint is kept; free some space and `gancontrol.py resume {run_dir}`"
                if (run_dir / LATEST).is_file() else "no checkpoint yet; free some space and start again")
        raise DiskFullError(f"{err} ({then})") from None
