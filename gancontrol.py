#!/usr/bin/env python3
"""gancontrol.py: train a GAN on a folder of images, resume it exactly, generate new images.

\b
  training (train)  start a run:      gancontrol.py training ./data 20000 64 ./runs/r1
  resume            continue a run:   gancontrol.py resume ./runs/r1 --steps 40000
  generate          new images:       gancontrol.py generate ./runs/r1 100 ./fakes
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from typing import Any, ClassVar, get_type_hints

try:
    import click

    from dcgan.cli import DeviceName, leave, user_errors
    from dcgan.options import TrainOptions, base_type, load_yaml, merge_options, option_help
except ModuleNotFoundError as err:  # started by a Python without the set-up: one line, not a traceback
    from dcgan.errors import exit_on_missing_dependency

    exit_on_missing_dependency(err)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
POSITIONAL = ("training_images", "steps", "batch_size", "output_dir")
DERIVED = ("user_set",)
CHOICES = {"precision": ["auto", "bf16", "fp32"]}


class AliasedGroup(click.Group):
    """A click group that also answers to `train` for `training` (the 2018 tool's name)."""

    ALIASES: ClassVar[dict[str, str]] = {"train": "training"}

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, self.ALIASES.get(name, name))


@click.group(cls=AliasedGroup, help=__doc__, context_settings=CONTEXT)
def cli() -> None:
    pass


def _click_type(tp: Any, bounds: Any = None) -> Any:
    """The click type of an option: its declared range (TrainOptions checks it again, for YAML)."""
    kind = {int: int, float: float, str: str, bool: bool}[base_type(tp)]
    if bounds is None:
        return kind
    make = click.IntRange if kind is int else click.FloatRange
    return make(bounds.low, bounds.high, min_open=bounds.low_open, max_open=bounds.high_open)


class PositiveCount(click.ParamType):
    """A whole number >= 1 for a positional argument, whose error says which argument goes where
    (click's own, "is not a valid integer range", does not tell a swapped argument order)."""

    name = "integer"

    def __init__(self, what: str, usage: str) -> None:
        self.what, self.usage = what, usage

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if number < 1:
            self.fail(f"{value!r} is not {self.what} (a whole number, at least 1); the arguments go in "
                      f"this order: {self.usage}", param, ctx)
        return number


TRAINING_USAGE = ("training TRAINING_IMAGES STEPS BATCH_SIZE OUTPUT_DIR, "
                  "e.g. training ./data 20000 64 ./runs/r1")


def train_options(func: Any) -> Any:
    """Add one click option per TrainOptions field (so the CLI, YAML and saved runs never drift)."""
    from dcgan.names import (
        ARCH_NAMES,
        D_INPUT_NAMES,
        DOWNSAMPLING_NAMES,
        GRADIENT_PENALTY_NAMES,
        LOSS_NAMES,
        RGB_LAYER_NAMES,
        UPSAMPLING_NAMES,
    )
    from dcgan.options import PRESETS, PRESETS_BY_SIZE, preset_values

    choices = {**CHOICES, "arch": list(ARCH_NAMES), "loss": list(LOSS_NAMES),
               "gp": list(GRADIENT_PENALTY_NAMES),
               "upsample": list(UPSAMPLING_NAMES), "upsample_last": ["same", *UPSAMPLING_NAMES],
               "downsample": list(DOWNSAMPLING_NAMES),
               "rgb_layer": list(RGB_LAYER_NAMES), "d_input": list(D_INPUT_NAMES),
               "preset": ["auto", *PRESETS]}
    helps, hints = option_help(), get_type_hints(TrainOptions)
    by_preset = {k for name in PRESETS for size in (1, 10**6) for k in preset_values(name, size)}
    def shown(v: Any) -> str:  # a flag reads as on / off (bool only: 0.0 == False in Python)
        return ("on" if v else "off") if isinstance(v, bool) else str(v)

    def listed(values: dict[str, Any]) -> str:
        return ", ".join(f"{k.replace('_', '-')} {shown(v)}" for k, v in values.items())

    def up_to(name: str) -> str:
        if name not in PRESETS_BY_SIZE:
            return ""
        largest, small, large = PRESETS_BY_SIZE[name]
        return f" (up to {largest} px also {listed(small)}; above {largest} px also {listed(large)})"

    recipes = "; ".join(f"{name}: {listed(values)}{up_to(name)}"
                        for name, values in PRESETS.items() if values)
    for f in reversed(dataclasses.fields(TrainOptions)):
        if f.name in POSITIONAL or f.name in DERIVED:
            continue
        flag = "--" + f.name.replace("_", "-")
        tp = _click_type(hints[f.name], f.metadata.get("range"))
        text = helps[f.name]  # an option without a default (None) says in its help what happens
        if f.default is not None:
            text += f" [default: {f.default}" + (", or the preset's]" if f.name in by_preset else "]")
        if f.name == "preset":
            text += f". {recipes}"
        if tp is bool:
            func = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=text)(func)
        else:
            ptype = (DeviceName() if f.name == "device" else
                     click.Choice(choices[f.name]) if f.name in choices else tp)
            func = click.option(flag, f.name, type=ptype, default=None, help=text)(func)
    return func


@cli.command()
@click.argument("training_images", type=click.Path(file_okay=False))
@click.argument("steps", type=PositiveCount("a number of training steps", TRAINING_USAGE))
@click.argument("batch_size", type=PositiveCount("a batch size", TRAINING_USAGE))
@click.argument("output_dir", type=click.Path(file_okay=True))
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="YAML control file with any of the options below; flags given here override it.")
@click.option("--overwrite", is_flag=True,
              help="Start over in a non-empty OUTPUT_DIR (removes the old run's files).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@train_options
@user_errors
def training(training_images: str, steps: int, batch_size: int, output_dir: str, config: str | None,
             overwrite: bool, quiet: bool, **flags: Any) -> None:
    """Train a GAN on TRAINING_IMAGES for STEPS cycles of BATCH_SIZE images, writing to OUTPUT_DIR.

    A cycle is one discriminator update (or --d-steps) and one generator update, as in the 2018
    tool. OUTPUT_DIR receives options.json, log.txt, stats.jsonl, loss_curve.png, samples/ and
    checkpoint.pt; `resume` and `generate` read the options back from there.

    Under torchrun (torchrun --nproc_per_node=K gancontrol.py training ...) BATCH_SIZE is the
    global batch, split evenly across the K processes (so it must be a multiple of K).

    \b
    Examples:
      python gancontrol.py training training_data 2000 32 runs/demo --resolution 64
      python gancontrol.py training ./data 200000 16 ./out --loss ragan --arch sngan --lr-d 4e-4
      python gancontrol.py training ./data 20000 64 ./out --config control.yaml
      torchrun --standalone --nproc_per_node=2 gancontrol.py training ./data 20000 64 ./out
    """
    from dcgan.training.loop import train

    cli_values = {k: v for k, v in flags.items() if v is not None}
    cli_values.update(training_images=training_images, steps=steps, batch_size=batch_size,
                      output_dir=output_dir)
    yaml_values = load_yaml(config) if config else {}
    opts = merge_options(TrainOptions(), yaml_values, cli_values, source=config or "")
    _report(train(opts, overwrite=overwrite, progress=not quiet))


@cli.command()
@click.argument("output_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="New total number of steps [default: the run's STEPS].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def resume(output_dir: str, steps: int | None, quiet: bool) -> None:
    """Continue the run in OUTPUT_DIR from its latest checkpoint, with its saved options.

    \b
    Example:
      python gancontrol.py resume runs/demo --steps 4000
    """
    from dcgan.training.loop import resume as resume_run

    _report(resume_run(output_dir, steps, progress=not quiet))


def _report(result: Any) -> None:
    if result.stopped_by:
        click.echo(f"Stopped by {result.stopped_by} at step {result.step}; checkpoint written. "
                   f"Continue with: python gancontrol.py resume {result.run_dir}", err=True)
        sys.exit(128 + signal.Signals[result.stopped_by])  # the shell's code for death by that signal
    if os.environ.get("RANK", "0") == "0":  # under torchrun: one line per run, not per process
        click.echo(f"Trained to step {result.step}: samples, loss curve and checkpoint in {result.run_dir}")


@cli.command()
@click.argument("model", type=click.Path(exists=False))
@click.argument("nimages", type=click.IntRange(min=1))
@click.argument("output_dir", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, show_default=True,
              help="Image k comes from seed SEED+k alone (same image whatever NIMAGES or --batch-size).")
@click.option("--overview", is_flag=True, help="Write one near-square grid of all images instead.")
@click.option("--truncation", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Scale latents towards the mean: less variety, more typical images.")
@click.option("--no-ema", is_flag=True, help="Use the raw generator instead of its moving average.")
@click.option("--class", "class_name", default=None,
              help="Class to generate with a class-conditional model (e.g. malignant).")
@click.option("--interpolate", type=click.IntRange(min=2), default=None, metavar="K",
              help="Write a latent walk instead: K frames between each of the NIMAGES seeds (GIF + strip).")
@click.option("--format", "fmt", type=click.Choice(["auto", "png", "jpg"]), default="auto", show_default=True,
              help="auto: stored like the training images (JPEG with their quality and colour subsampling, "
                   "else PNG), so that a classifier cannot tell the fakes by their compression.")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=None,
              help="JPEG quality of the images (default: the training images' own).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", type=DeviceName(), default="auto", show_default=True)
@click.option("--overwrite", is_flag=True,
              help="Write into a non-empty OUTPUT_DIR (files of the same name are replaced, others stay).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def generate(model: str, nimages: int, output_dir: str, seed: int, overview: bool, truncation: float,
             no_ema: bool, class_name: str | None, interpolate: int | None, fmt: str,
             jpeg_quality: int | None, batch_size: int, device: str, overwrite: bool, quiet: bool) -> None:
    """Generate NIMAGES images with MODEL (a checkpoint file or a run folder) into OUTPUT_DIR.

    OUTPUT_DIR must be empty or new (so that the images of two models never mix), unless --overwrite.

    \b
    Examples:
      python gancontrol.py generate runs/demo 100 fakes/
      python gancontrol.py generate runs/demo/checkpoint.pt 64 fakes/ --overview --seed 100
      python gancontrol.py generate runs/cond 500 melanoma/ --class malignant
      python gancontrol.py generate runs/demo 100 fakes_png/ --format png
      python gancontrol.py generate runs/demo 4 walk/ --interpolate 24
    """
    from dcgan.errors import UserError
    from dcgan.generate import generate_images
    from dcgan.generate import interpolate as walk

    if interpolate:
        if overview:
            raise UserError("--interpolate writes a GIF and a strip; --overview does not apply to it")
        gif, strip = walk(model, list(range(seed, seed + nimages)), interpolate, output_dir,
                          use_ema=not no_ema, device=device, class_name=class_name, truncation=truncation,
                          batch_size=batch_size, overwrite=overwrite)
        click.echo(f"Wrote {gif} and {strip}")
        return
    paths = generate_images(model, nimages, output_dir, seed=seed, batch_size=batch_size, overview=overview,
                            truncation=truncation, use_ema=not no_ema, device=device, progress=not quiet,
                            class_name=class_name, overwrite=overwrite, fmt=fmt, jpeg_quality=jpeg_quality)
    if overview:
        click.echo(f"Wrote {paths[0]}")
        return
    from dcgan.compression import file_compression

    click.echo(f"Wrote {len(paths)} images in {output_dir} ({file_compression(paths[0]).describe()})")


if __name__ == "__main__":
    try:
        cli()
    except SystemExit as done:  # click ends every command, failed or not, by raising SystemExit
        leave(done)
