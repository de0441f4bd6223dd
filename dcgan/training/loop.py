"""The training loop around `Trainer`: run folder, logging, samples, checkpoints, signals.

`train` (a new run) and `resume` (from a checkpoint) -> `_in_run_folder` (lock and check the folder,
load the images, settle the spec) -> `_run_trainer` (build or restore the trainer, options.json,
signal handlers) -> `_training_loop` (the steps, and the periodic work between them).

Under torchrun every rank runs this loop; only rank 0 writes files and shows the progress bar, and
the ranks agree every step on whether to stop (a signal, a non-finite loss), so none is left
waiting in a collective.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..errors import UserError
from ..files import LOCK_NAME, TEMP_PREFIX, DiskFullError, copy_file, folder_lock, remove_partials
from ..images import save_grid
from ..losses import LOSSES
from ..models import latents_for_seeds, size_plan
from ..options import MIN_EVAL_IMAGES, OPTIONS_FILE, TrainOptions
from ..spec import RunSpec, settle, training_folder
from . import distributed as ddp
from . import runlog
from .checkpoint import LATEST, holds_run, load_checkpoint, no_checkpoint_yet, save_checkpoint
from .dataset import ImageSet, load_image_set
from .trainer import StepStats, Trainer, build_trainer

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
    stopped_by: str | None = None  # "SIGINT"/"SIGTERM"/"SIGUSR1" when interrupted


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)  # SIGUSR1: SLURM's pre-limit warning
STOP_NOTICE = "{name}: the run stops after the current step and writes a checkpoint (at large image sizes " \
              "that can take a minute)."
AGAIN = ("Ctrl-C again stops at once without a checkpoint: the steps since the last one are lost "
         "(`gancontrol.py resume` continues from it).")


@contextlib.contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """Ctrl-C, SIGTERM or SIGUSR1 ask the loop to stop after the current step and write a checkpoint; a
    second Ctrl-C stops at once (KeyboardInterrupt: atomic writes leave no half-written file).

    The handler says so itself, at once: the step and checkpoint can take a minute at 160 px, and a
    user who sees nothing presses Ctrl-C again, which then loses the steps since the last checkpoint.

    SIGUSR1 is what slurm/train.sbatch has SLURM send before the time limit (then it requeues).
    """

    def handler(signum: int, frame: Any) -> None:
        if trainer.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.stop_signal = signum
        if trainer.dist.is_main:
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            again = " " + AGAIN if signum == signal.SIGINT else ""
            say_now(f"\n{STOP_NOTICE.format(name=name)}{again}\n")

    try:
        old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread (e.g. called from a test thread): no handlers
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def say_now(text: str) -> None:
    """Write `text` to stderr from a signal handler: straight to the file descriptor, since the
    interrupted code may be inside a write to sys.stderr (the progress bar), which a buffered
    write from the handler would break with a reentrant-call error."""
    try:
        os.write(sys.stderr.fileno(), text.encode("utf-8", "replace"))
    except (AttributeError, OSError, ValueError):  # no descriptor (a test's captured stream)
        sys.stderr.write(text)


def check_run_dir(opts: TrainOptions, overwrite: bool) -> None:
    """Refuse an OUTPUT_DIR we must not use; touches nothing (runs before the images are read)."""
    run_dir = Path(opts.output_dir)
    images = training_folder(opts)
    if run_dir.resolve() == images or images in run_dir.resolve().parents:
        raise UserError(f"{run_dir}: OUTPUT_DIR must not be inside TRAINING_IMAGES ({images})")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a folder")
    if not run_dir.exists() or overwrite:
        return
    if holds_run(run_dir):
        raise UserError(no_checkpoint_yet(run_dir) or
                        f"{run_dir}: not empty; continue that run with `gancontrol.py resume {run_dir}`, "
                        "or pass --overwrite to start over")
    if not only_leftovers(run_dir):
        raise UserError(f"{run_dir}: not empty, and holds no run to continue; choose another OUTPUT_DIR, "
                        "or pass --overwrite to train in it (files that are not a run's stay)")


def only_leftovers(run_dir: Path) -> bool:
    """True when `run_dir` holds nothing but our own files (of a start that trained no step), or is
    empty: a new run clears them, so that a refused or killed start never blocks the next one."""
    return all(p.name in RUN_ARTIFACTS or p.name == LOCK_NAME or p.name.startswith(TEMP_PREFIX)
               for p in run_dir.iterdir())


def clear_run_files(run_dir: Path) -> None:
    """Delete our files in `run_dir` (never the user's others, nor the lock file)."""
    for name in RUN_ARTIFACTS:
        p = run_dir / name
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    for p in run_dir.glob("checkpoint-*.pt"):
        p.unlink()


def prepare_run_dir(opts: TrainOptions, overwrite: bool) -> Path:
    """Create the run folder; clear our files in it (with --overwrite, or the leftovers of a start
    that trained no step), never the user's others.

    Called only once the images have loaded and the options are valid, so a start that fails on
    bad input leaves OUTPUT_DIR as it was: a re-run is not refused, and an old run is not lost.
    The caller holds the run lock, so nothing here deletes the files of a run still going (and the
    lock file itself is not among RUN_ARTIFACTS).
    """
    check_run_dir(opts, overwrite)
    run_dir = Path(opts.output_dir)
    if run_dir.exists():
        clear_run_files(run_dir)
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


def train(asked: TrainOptions, overwrite: bool = False, progress: bool = True) -> RunResult:
    """Start the run the user asked for; returns where it stopped.

    Order matters for "never lose data": check OUTPUT_DIR, load and check the images (every rank,
    alike), and only then create or clear the run folder.
    """
    asked.validate()

    def settle_on(data: ImageSet) -> RunSpec:
        _check_data(data, asked)
        # before the folder is made
        size_plan(data.resolution, f"{training_folder(asked)}: image size", asked.arch)
        return settle(asked, len(data), data.resolution, data.channels, data.class_names, data.compression)

    return _in_run_folder(asked, settle_on, None, overwrite, progress)


def resume(run_dir: str | Path, steps: int | None = None, progress: bool = True) -> RunResult:
    """Continue the run in `run_dir` from its latest checkpoint, to `steps` in all (None: as planned)."""
    checkpoint = load_checkpoint(run_dir)
    spec = RunSpec.from_checkpoint(checkpoint, f"{run_dir} checkpoint").continued(run_dir, steps)
    if checkpoint["step"] >= spec.options.steps:
        raise UserError(f"{run_dir}: already trained {checkpoint['step']} of {spec.options.steps} steps; "
                        "pass a larger --steps to train further")
    spec.options.validate()  # a saved run is held to the ranges too

    def same_data(data: ImageSet) -> RunSpec:
        _check_data(data, spec.options, spec)
        return spec

    return _in_run_folder(spec.options, same_data, checkpoint, False, progress)


def _in_run_folder(options: TrainOptions, settle_on: Callable[[ImageSet], RunSpec],
                   checkpoint: dict[str, Any] | None, overwrite: bool, progress: bool) -> RunResult:
    """Lock and check the run folder, load the images (settled into the spec by `settle_on`),
    prepare the folder and its log, then train: a new run, or from `checkpoint`."""
    dist = ddp.init_distributed(ddp.resolve_device(options.device))
    handlers = runlog.start_log(dist.is_main)
    run_dir = Path(options.output_dir)
    held, locks = contextlib.ExitStack(), []  # rank 0's lock on the run folder, for the whole run
    existed, started, failed = run_dir.exists(), False, False

    def lock() -> None:
        if not locks:
            locks.append(held.enter_context(folder_lock(run_dir, "training run")))

    try:
        ddp.check_batch(dist, options.batch_size)
        if run_dir.is_dir():  # a second resume, or --overwrite of a run still going: refused at once
            _on_main(dist, lock)
        if checkpoint is None:
            _on_main(dist, check_run_dir, options, overwrite)
        data = load_image_set(training_folder(options), options.resolution, options.grayscale,
                              options.max_memory_gb, progress and dist.is_main)
        spec = settle_on(data)
        if checkpoint is None:
            _on_main(dist, lock)  # a new folder: created by the lock, once the input is known good
            _on_main(dist, prepare_run_dir, options, overwrite)
            started = dist.is_main
        _on_main(dist, remove_partials, run_dir)
        if dist.is_main:
            handlers = runlog.attach_log_file(run_dir, handlers)
        return _run_trainer(spec, run_dir, checkpoint, data, progress and dist.is_main, dist)
    except BaseException:
        failed = started
        raise
    finally:
        runlog.detach_log(handlers)
        if failed and not holds_run(run_dir):
            _undo_start(run_dir, existed, held)
        held.close()
        ddp.shutdown(dist)


def _undo_start(run_dir: Path, existed: bool, held: contextlib.ExitStack) -> None:
    """After a new run failed (or was aborted) before it had anything worth keeping (a checkpoint,
    logged steps), take its files away again: whatever can only go wrong once the folder is made
    (a full disk, a non-finite loss, a second Ctrl-C, a bug) must not leave a folder that refuses
    the corrected command. A folder this run created goes entirely; the user's own stays."""
    clear_run_files(run_dir)
    remove_partials(run_dir)
    if existed:
        return
    (run_dir / LOCK_NAME).unlink(missing_ok=True)  # still held: no other process has it meanwhile
    held.close()
    with contextlib.suppress(OSError):  # not empty: someone put a file there meanwhile
        run_dir.rmdir()


def _check_data(data: ImageSet, options: TrainOptions, saved: RunSpec | None = None) -> None:
    """The images suit the run: enough for --eval-every, class folders for --conditional, and for a
    resumed run (`saved`) the size, channels and classes it was trained on."""
    where = training_folder(options)
    if saved is not None and (data.resolution, data.channels) != (saved.resolution, saved.channels):
        raise UserError(f"{where}: images are now {data.resolution} px x {data.channels} channels, the "
                        f"checkpoint was trained on {saved.resolution} px x {saved.channels}")
    if options.eval_every and len(data) < MIN_EVAL_IMAGES:
        raise UserError(f"{where}: --eval-every needs at least {MIN_EVAL_IMAGES} training images, found "
                        f"{len(data)}")
    if not options.conditional:
        return
    classes = data.class_names
    if len(classes) < 2 or "" in classes:
        raise UserError(f"{where}: --conditional needs one subfolder per class (e.g. benign/ and malignant/) "
                        f"and no images directly in the folder; found classes {classes}")
    if saved is not None and list(saved.class_names) != classes:
        raise UserError(f"{where}: classes are now {classes}, the checkpoint has {list(saved.class_names)}")
    log.info("class-conditional: %s", data.describe_classes())


def _run_trainer(spec: RunSpec, run_dir: Path, checkpoint: dict[str, Any] | None, data: ImageSet,
                 progress: bool, dist: ddp.DistInfo) -> RunResult:
    """Build the trainer (restored from `checkpoint` on a resume), log the start, write the spec to
    options.json and run the training loop under the signal handlers."""
    trainer = build_trainer(spec, data, dist)
    options = spec.options
    if not LOSSES[options.loss].uses_targets and options.label_smoothing != 1.0:
        log.warning("--label-smoothing has no effect with --loss %s", options.loss)
    if checkpoint is not None:
        trainer.load_state_dict(checkpoint)
        if dist.is_main:
            runlog.truncate_stats(run_dir, trainer.step)
        log.info("resuming %s at step %d of %d on %d process(es)", run_dir, trainer.step, options.steps,
                 dist.world)
    else:
        log.info("training on %d images of %dx%d (%s), %d steps of %d on %s x%d; preset %s: %s loss, %s D on "
                 "%s, DiffAugment %s, EMA %s, noise inputs %s, mode seeking %s", len(data), data.resolution,
                 data.resolution, options.training_images, options.steps, options.batch_size, trainer.device,
                 dist.world, options.preset, options.loss, options.arch, options.d_input, options.diffaug,
                 options.ema,
                 "at " + ", ".join(map(str, trainer.G.noise_sizes)) + " px" if trainer.G.noise_sizes
                 else "off", options.mode_seeking or "off")
        if spec.compression is not None:
            log.info("training images stored as %s: generate writes %s", spec.compression.describe(),
                     "JPEGs alike" if spec.compression.is_jpeg else "PNGs")
    log.info("compute: %s", trainer.describe_compute())
    ddp.seed_rank(options.seed, trainer.step, dist)  # after load_state_dict restored rank 0's stream
    if dist.is_main:
        spec.save(run_dir / OPTIONS_FILE, durable=True)
    with stop_on_signals(trainer):
        _training_loop(trainer, run_dir, progress, (checkpoint or {}).get("best_swd"))
    log.info("%s at step %d", "stopped" if trainer.stop_signal else "finished", trainer.step)
    stopped = signal.Signals(trainer.stop_signal).name if trainer.stop_signal else None
    return RunResult(trainer.step, run_dir, stopped)


def grid_inputs(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fixed latents of the sample grids: seeds 0..grid_size-1, classes cycling row by row."""
    n = trainer.options.grid_size
    z = latents_for_seeds(range(n), trainer.G.latent_dim)
    if not trainer.num_classes:
        return z, None
    row = max(1, math.ceil(math.sqrt(n)))
    return z, (torch.arange(n) // row) % trainer.num_classes


def _training_loop(trainer: Trainer, run_dir: Path, progress: bool, best_swd: float | None = None) -> None:
    """Train to STEPS (or a stop signal); between steps write the stats, evaluations, sample grids,
    loss curve and checkpoints, each at its interval, and all of them after the last step."""
    options, main = trainer.options, trainer.dist.is_main
    grid_z, grid_y = grid_inputs(trainer)
    evaluator = None
    if options.eval_every and main:
        from .evaluate import Evaluator

        evaluator = Evaluator(trainer)
        evaluator.best_swd = best_swd if best_swd is not None else evaluator.best_swd
    samples = run_dir / runlog.SAMPLES
    every = {"grid": options.sample_every, "checkpoint": options.checkpoint_every}
    if evaluator is not None:
        every["evaluation"] = options.eval_every
    # The one clock: steps and periodic work (ETA), log intervals, the end-of-run summary.
    clock, losses = runlog.StepClock(options.steps, every), ""
    if trainer.step == 0 and main:
        with clock.periodic("grid"):
            save_grid(trainer.sample(grid_z, grid_y), samples / "step_0000000.png")
    last_good = trainer.step
    # tqdm's own rate and remaining time would not foresee the periodic work below: the ETA is ours.
    bar = tqdm(total=options.steps, initial=trainer.step, unit="step", disable=not progress,
               dynamic_ncols=True, desc=run_dir.name,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
    acc, n_acc = torch.zeros(len(StepStats._fields), device=trainer.device), 0  # summed on the device
    last_plot = clock.now()
    try:
        while trainer.step < options.steps:
            with clock.step():
                values = trainer.train_step()
                acc += values
                n_acc += 1
                stop = _should_stop(trainer, values, last_good, run_dir)
            bar.set_postfix_str(clock.eta_text(trainer.step) + losses, refresh=False)
            bar.update(1)
            if (rate := clock.first_rate()) is not None:
                _say_rate(trainer, rate, clock.eta(trainer.step), progress)
            if stop:
                break
            at_end = trainer.step == options.steps
            if trainer.step % options.log_every == 0 or at_end:
                means = StepStats(*ddp.all_mean((acc / n_acc).cpu(), trainer.dist).tolist())
                record = _stats_record(trainer, means, clock.lap() / n_acc)
                if main:
                    runlog.append_stats(run_dir, record)
                    log.info("step %d: loss_d %.4f loss_g %.4f D(x) %.3f D(G(z)) %.3f %.1f images/s",
                             trainer.step, record["loss_d"], record["loss_g"], record["d_real"],
                             record["d_fake"], record["images_per_sec"] or 0)
                losses = (f", loss_d={record['loss_d']:.3f}, loss_g={record['loss_g']:.3f}, "
                          f"img/s={record['images_per_sec'] or 0:.0f}")
                acc, n_acc = torch.zeros_like(acc), 0
            if evaluator is not None and (trainer.step % options.eval_every == 0 or at_end):
                with clock.periodic("evaluation"):
                    _evaluate(trainer, evaluator, run_dir)
            if main and (trainer.step % options.sample_every == 0 or at_end):
                with clock.periodic("grid"):
                    save_grid(trainer.sample(grid_z, grid_y), samples / f"step_{trainer.step:07d}.png")
                    if at_end or clock.now() - last_plot >= PLOT_INTERVAL_S:
                        runlog.plot_loss_curve(run_dir)
                        last_plot = clock.now()
            if trainer.step % options.checkpoint_every == 0 or at_end:
                with clock.periodic("checkpoint"):
                    if not _weights_finite(trainer):  # never replace a good checkpoint with a broken one
                        raise _non_finite(trainer, values, last_good, run_dir)
                    if main:
                        _checkpoint(trainer, run_dir, evaluator)
                last_good = trainer.step
        ddp.sync_buffers([m for m in (trainer.G, trainer.D, trainer.G_ema) if m is not None], trainer.dist)
        if trainer.stop_signal is not None and trainer.step != last_good:
            if not _weights_finite(trainer):
                raise _non_finite(trainer, None, last_good, run_dir)
            if main:
                _checkpoint(trainer, run_dir, evaluator)
                runlog.plot_loss_curve(run_dir)
            log.info("stopped by signal %d at step %d; checkpoint written", trainer.stop_signal, trainer.step)
    finally:
        bar.close()
    if clock.step_seconds:
        log.info("%.1f s in training steps, %.1f s in sample grids, plots, checkpoints and evaluations",
                 clock.step_seconds, clock.other_seconds())


def _say_rate(trainer: Trainer, sec_per_step: float, eta: float | None, progress: bool) -> None:
    """The measured step time and what it means for the whole run, in the log and (with the progress
    bar) on the console, within a run's first seconds: on a busy machine the steps can take several
    times what the README says, and the ETA then has few steps behind it."""
    options = trainer.options
    text = (f"measured {sec_per_step:.3g} s per step of {options.batch_size} images at {options.resolution} "
            f"px on {trainer.device.type}: with its sample grids and checkpoints the run ends in about "
            f"{runlog.clock_text(eta or 0)} (longer while other jobs share this machine)")
    log.info(text)
    if progress:
        tqdm.write(text, file=sys.stderr)


def _should_stop(trainer: Trainer, values: torch.Tensor, last_good: int, run_dir: Path) -> bool:
    """Raise on a non-finite loss; True when a signal asks to stop. All ranks decide alike."""
    check_finite = trainer.device.type == "cpu" or trainer.step % trainer.options.log_every == 0
    flags = torch.tensor([float(trainer.stop_signal or 0),
                          float(check_finite and not bool(torch.isfinite(values[StepStats.LOSSES]).all()))])
    flags = ddp.all_max(flags, trainer.dist)
    if flags[1] > 0:
        raise _non_finite(trainer, values, last_good, run_dir)
    if flags[0] > 0 and trainer.stop_signal is None:
        trainer.stop_signal = int(flags[0])  # another rank got the signal
    return trainer.stop_signal is not None


def _non_finite(trainer: Trainer, values: torch.Tensor | None, last_good: int,
                run_dir: Path) -> NonFiniteLoss:
    """The error for a non-finite loss in `values` (stacked StepStats), else for non-finite weights."""
    stats = StepStats(*values.tolist()) if values is not None else None
    if stats is not None and not math.isfinite(stats.loss_d):
        what = f"loss_d became {stats.loss_d}"
    elif stats is not None and not math.isfinite(stats.loss_g):
        what = f"loss_g became {stats.loss_g}"
    else:
        what = "the weights became non-finite"
    kept = (f"the last good checkpoint (step {last_good}) is kept in {run_dir}" if last_good
            else "no checkpoint had been written yet")
    return NonFiniteLoss(f"{what} at step {trainer.step}; training stopped and {kept}. "
                         "Try lower learning rates, --arch sngan or a gradient penalty (--gp)")


def _stats_record(trainer: Trainer, means: StepStats[float], sec_per_step: float) -> dict[str, Any]:
    images = trainer.options.batch_size * trainer.options.d_steps
    return {"step": trainer.step, "images_seen": trainer.step * images, "epoch": trainer.order.epoch,
            **means._asdict(), **trainer.augment_stats(), "sec_per_step": sec_per_step,
            "images_per_sec": images / sec_per_step if sec_per_step else None, "time": time.time()}


def _weights_finite(trainer: Trainer) -> bool:
    params = [p.detach() for m in (trainer.G, trainer.D) for p in m.parameters()]
    return bool(torch.stack(torch._foreach_norm(params)).isfinite().all())


def _evaluate(trainer: Trainer, evaluator: Any, run_dir: Path) -> None:
    """Score EMA-G, log the record, and keep best.pt when the SWD is the lowest so far."""
    record = evaluator(trainer)
    record["best"] = evaluator.is_best(record)
    runlog.append_stats(run_dir, record)
    log.info("step %d: SWD %.2f precision %.3f recall %.3f%s (%.1f s)", trainer.step, record["swd"],
             record["precision"], record["recall"], " (best so far)" if record["best"] else "",
             record["eval_seconds"])
    if record["best"]:
        save_checkpoint(run_dir / BEST, {**trainer.state_dict(), "best_swd": evaluator.best_swd})


def _checkpoint(trainer: Trainer, run_dir: Path, evaluator: Any = None) -> None:
    extra = {"best_swd": evaluator.best_swd} if evaluator is not None else {}
    try:
        save_checkpoint(run_dir / LATEST, {**trainer.state_dict(), **extra})
        if trainer.options.keep_checkpoints:
            copy_file(run_dir / LATEST, run_dir / f"checkpoint-{trainer.step:07d}.pt", durable=True)
    except DiskFullError as err:
        then = (f"the previous checkpoint is kept; free some space and `gancontrol.py resume {run_dir}`"
                if (run_dir / LATEST).is_file() else "no checkpoint yet; free some space and start again")
        raise DiskFullError(f"{err} ({then})") from None
