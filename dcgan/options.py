"""One options object per training run: defaults, YAML control files, CLI overrides, presets.

`TrainOptions` are what the user asked for. Precedence: dataclass defaults < YAML control file
(`--config`) < flags given on the command line. They are validated here and never changed: the
run's settled values (preset applied, automatic values filled in, the images' size) are a
`dcgan.spec.RunSpec`, which the run folder (`options.json`) and every checkpoint keep, so that
`resume` and `generate` never need a flag repeated.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import UserError
from .names import ARCH_NAMES, GRADIENT_PENALTY_NAMES, LOSS_NAMES


def is_device_name(name: str) -> bool:
    """auto | cpu | cuda | cuda:N: the one rule for --device, on the command line and in a YAML file."""
    head, colon, index = name.partition(":")
    return name in ("auto", "cpu", "cuda") or (head == "cuda" and bool(colon) and index.isdigit())


def opt(default: Any, help: str, low: float | None = None, high: float | None = None,
        low_open: bool = False, high_open: bool = False) -> Any:
    """A dataclass field with a help text and, for numbers, its allowed range.

    The range is checked by `TrainOptions.validate` (so YAML control files and saved runs are held to
    it) and given to click (so `--help` shows it); one declaration, no drift.
    """
    bounds = None if low is None and high is None else Range(low, high, low_open, high_open)
    return field(default=default, metadata={"help": help, "range": bounds})


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric option: low/high (None = unbounded), open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


MIN_EVAL_IMAGES = 4  # k-NN precision/recall (k = 3) needs more than k images of each kind


@dataclass(frozen=True)
class TrainOptions:
    """Everything the user asks of a training run; each field's help is its `--help` text."""

    training_images: str = opt("", "folder of training images (read recursively)")
    steps: int = opt(1000, "training cycles: one D update (or --d-steps) + one G update", 1)
    batch_size: int = opt(64, "images per step (the global batch)", 1)
    output_dir: str = opt("", "the run folder")
    resolution: int | None = opt(None, "crop and resize the images to this size on load (4 or 5 times a "
                                 "power of two: 32, 64, 128, 160, 256, ...) [default: the images' own size]",
                                 16)
    grayscale: bool = opt(False, "train one-channel images")
    z_dim: int = opt(100, "latent size", 1)
    g_channels: int = opt(64, "generator width (channels of its last hidden layer)", 1)
    d_channels: int = opt(64, "discriminator width (channels of its first layer)", 1)
    arch: str = opt("dcgan", "dcgan | sngan (spectral norm on every D layer) | fastgan (few-shot G and D "
                    "after FastGAN: skip-layer excitation, GLU blocks, a full-resolution D that also "
                    "rebuilds the reals; --g-channels / --d-channels are its widths at 128 px; --upsample, "
                    "--upsample-last(-count), --rgb-layer, --g-fine-layers, --g-supersample, "
                    "--noise-per-image, --sparse-noise, --hair-noise, --d-fine-layers, --downsample and "
                    "--mbstd do not apply)")
    upsample: str = opt("transpose", "how G doubles its maps: transpose (4x4 stride-2 transposed convs, "
                        "the DCGAN paper) | resize (nearest x2 + 3x3 conv: no checkerboard artifacts) | blur "
                        "(bilinear x2, i.e. StyleGAN2's [1,3,3,1] low-pass, + 3x3 conv)")
    upsample_last: str = opt("same", "how G makes its last doubling (the one that reaches the image size): "
                             "same (as --upsample) | transpose | resize | blur; blur there with resize "
                             "elsewhere keeps nearest's sharpness inside G but stops the last nearest "
                             "doubling from copying each half-size pixel to a 2x2 block (a 2-pixel lattice)")
    upsample_last_count: int = opt(1, "how many of G's doublings, counted back from the image, "
                                   "--upsample-last makes: 1 = only the last; 2 = the one before too "
                                   "(at 160 px 40 -> 80 px, where a nearest doubling's 2x2 blocks reach a "
                                   "ReLU as a checkerboard that the last doubling carries to the image); "
                                   "more than G has = all", 1, 8)
    rgb_layer: str = opt("up", "G's output layer: up (its last upsampling makes RGB, the DCGAN paper) | conv "
                         "(a 3x3 conv at full size makes RGB from the last upsampling's features) | "
                         "conv-noise (the same, with per-pixel noise added to those features: a random "
                         "source for the finest texture; the noise map is part of each seed's latent)")
    g_fine_layers: int = opt(0, "extra 3x3 conv + BatchNorm + ReLU layers in G at full size, before the "
                             "RGB conv of --rgb-layer conv / conv-noise: capacity at the finest scale, where "
                             "hairs and sharp dots are drawn (without them G has one conv there)", 0, 8)
    g_supersample: bool = opt(False, "G draws its RGB layer at twice the image size (a narrower conv, and "
                              "conv-noise's noise map there) and averages each 2x2 block down, as the reals "
                              "were downscaled from larger photos: texture arrives antialiased, and a hair "
                              "can be thinner than a pixel; needs --rgb-layer conv or conv-noise")
    d_fine_layers: int = opt(0, "3x3 stride-1 conv layers in D at full size before its first strided conv "
                             "(half its first width each): D reads pixel-scale texture before subsampling, "
                             "as the panel's full-res judge does", 0, 8)
    downsample: str = opt("stride", "how D halves its maps: stride (4x4 stride-2 convs, the DCGAN paper) | "
                          "blur (the [1,3,3,1] low-pass first: no aliasing of G's pixel patterns)")
    d_input: str = opt("image", "what D looks at: image | image+fine (also the image's fine detail, the "
                       "image minus a Gaussian low-pass of sigma 1.5 px, as more channels: the texture a "
                       "classifier told fakes by)")
    d_spectrum: bool = opt(False, "D also reads each image's radial power spectrum (log power per colour "
                           "channel in 16 log-spaced rings) through a small MLP whose logit adds to its own: "
                           "G is judged on how its images' energy spreads over scales (Jung & Keuper 2021)")
    d_coarse: int = opt(0, "D gains a second judge that sees only the image area-averaged to 1/N of each "
                        "side (2, 4 or 8; 0 = off): colour, shape and layout, with a loss of its own "
                        "(pix2pixHD's multi-scale discriminators); the DCGAN family (dcgan, sngan) only",
                        0, 8)
    mbstd: int = opt(0, "minibatch-std group size in D (0 = off, 4 = StyleGAN's): shows D each batch's "
                     "spread, against partial mode collapse", 0)
    noise: bool = opt(False, "per-pixel noise inputs in G after its BatchNorms on maps up to a quarter of "
                      "the image size (StyleGAN's, coarse maps only): a random source for texture; the "
                      "noise maps are part of each seed's latent")
    noise_per_image: bool = opt(False, "each image's noise strength (--noise, --rgb-layer conv-noise) is "
                                "also scaled by a factor G computes from its z: texture can be dense in one "
                                "fake and faint in the next, as in the reals (one learned strength gives "
                                "every fake the same amount)")
    sparse_noise: bool = opt(False, "G's noise inputs (--noise, --rgb-layer conv-noise) add a second, sparse "
                             "map too (the noise beyond 2 standard deviations, 4.6% of the pixels), each "
                             "with its own learned strength: a source for isolated dots, where "
                             "Gaussian noise gives an even grain")
    hair_noise: bool = opt(False, "the full-size noise input of --rgb-layer conv-noise also adds thin "
                           "straight strokes (about 2 per image, 10-60% of the side long, drawn from its "
                           "noise map), with their own learned strength: a source for hairs and ruler "
                           "marks, which G does not draw from per-pixel noise")
    mode_seeking: float = opt(0.0, "weight of MSGAN's mode-seeking term in G's loss (Mao et al. 2019): G is "
                              "penalised for giving two latents similar images, against losing the rarer "
                              "looks (recall); 0 = off", 0)
    loss: str = opt("bce", f"{' | '.join(LOSS_NAMES)} (bce: non-saturating; ra*: relativistic average)")
    gp: str = opt("none", f"gradient penalty: {' | '.join(GRADIENT_PENALTY_NAMES)}")
    gp_weight: float = opt(10.0, "weight of the gradient penalty", 0)
    gp_every: int = opt(1, "apply the gradient penalty on every Nth D update only, N times as strong "
                        "(StyleGAN2's lazy regularisation, 16 with r1: the penalty's double backward "
                        "costs about as much as the rest of D's step)", 1)
    label_smoothing: float = opt(1.0, "one-sided: target for real images (0.9 = smoothing)", 0, 1,
                                 low_open=True)
    lr_g: float = opt(2e-4, "generator learning rate", 0, low_open=True)
    lr_d: float = opt(2e-4, "discriminator learning rate", 0, low_open=True)
    beta1: float = opt(0.5, "Adam beta1", 0, 1, high_open=True)
    beta2: float = opt(0.999, "Adam beta2", 0, 1, high_open=True)
    d_steps: int = opt(1, "D updates per G update", 1)
    ema: float = opt(0.999, "decay of the EMA generator that samples and generate use (0 = off); unless "
                     "given, the preset's: 0.95 with small-data and 0 (off) with classic (auto picks one of "
                     "the two), 0.995 with few-shot, 0.999 with sngan-diffaug or none. It warms up as "
                     "min(ema, (1+step)/(10+step))", 0, 1, high_open=True)
    seed: int = opt(0, "seeds weights, batch order and latents", 0, 2**32 - 1)
    log_every: int = opt(0, "steps between stats.jsonl lines (0 = auto)", 0)
    sample_every: int = opt(0, "steps between sample grids (0 = auto: about 20, at least 10 steps apart)", 0)
    checkpoint_every: int = opt(0, "steps between checkpoints (0 = STEPS/10, at least 10)", 0)
    keep_checkpoints: bool = opt(False, "keep every checkpoint instead of overwriting the latest")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    precision: str = opt("auto", "auto | bf16 | fp32 (auto: bf16 where the hardware is fast at it)")
    channels_last: bool = opt(True, "channels_last memory format (faster convolutions)")
    grid_size: int = opt(64, "images in each sample grid (fixed latents)", 1, 1024)
    max_memory_gb: float = opt(4.0, "GiB of memory for the decoded images (N x C x R x R bytes); a "
                               "larger set is decoded again from disk for every batch", 0)
    preset: str = opt("auto", "a recipe that fills in the options you did not set; auto = small-data "
                      "below 5,000 training images, else classic (measured in docs/quality.md)")
    diffaug: str = opt("none", "DiffAugment policy, e.g. color,translation,cutout (none = off)")
    ada_target: float = opt(0.0, "adaptive augmentation (StyleGAN2-ADA): each --diffaug transform applies "
                            "to an image with a probability p, raised while D's sign on the reals averages "
                            "above this and lowered below it (0 = off: every transform always; ADA's is "
                            "0.6); p is in stats.jsonl", 0, 1, high_open=True)
    ada_kimg: float = opt(10.0, "with --ada-target: thousands of images over which p can go from 0 to 1 "
                          "(StyleGAN2-ADA's 500 suits its millions of images; a CPU run sees tens of "
                          "thousands)", 0, low_open=True)
    conditional: bool = opt(False, "class-conditional GAN on the class subfolders of TRAINING_IMAGES")
    eval_every: int = opt(0, "steps between SWD / precision / recall evaluations of EMA-G (0 = off)", 0)
    eval_images: int = opt(256, "generated and real images used by each evaluation", MIN_EVAL_IMAGES)
    sync_bn: bool = opt(False, "with torchrun: SyncBatchNorm across processes")
    compile: bool = opt(False, "torch.compile G and D (fastest on GPUs; slow first steps)")
    user_set: list[str] = field(default_factory=list, metadata={"help": "options given explicitly"})

    def validate(self, label: Callable[[str], str] | None = None) -> TrainOptions:
        """Check the names and ranges; a `UserError` naming the option, else `self` (unchanged).

        `label` names an option in the message (default: its flag, `--loss`); `merge_options` passes
        one that names the control file and key for a value that came from the file.
        """
        from .losses import GRADIENT_PENALTIES, LOSSES

        name = label or flag_of

        def check(ok: bool, key: str, msg: str) -> None:
            if not ok:
                raise UserError(f"{name(key)} {msg}")

        check(self.loss in LOSSES, "loss", f"{self.loss!r}: unknown, choose from {', '.join(LOSSES)}")
        check(self.gp in GRADIENT_PENALTIES, "gp",
              f"{self.gp!r}: unknown, choose from {', '.join(GRADIENT_PENALTIES)}")
        check(self.arch in ARCH_NAMES, "arch", f"{self.arch!r}: choose {', '.join(ARCH_NAMES)}")
        from .models import UPSAMPLING

        check(self.upsample in UPSAMPLING, "upsample", f"{self.upsample!r}: choose {' or '.join(UPSAMPLING)}")
        check(self.upsample_last == "same" or self.upsample_last in UPSAMPLING, "upsample_last",
              f"{self.upsample_last!r}: choose same, {', '.join(UPSAMPLING)}")
        check(is_device_name(self.device), "device", f"{self.device!r}: choose auto, cpu, cuda or cuda:N")
        check(self.precision in ("auto", "bf16", "fp32"), "precision",
              f"{self.precision!r}: auto, bf16, fp32")
        self.check_ranges(name)
        from .models import DOWNSAMPLING, RGB_LAYERS, size_plan

        if self.resolution is not None:
            size_plan(self.resolution, name("resolution"), self.arch)

        check(self.rgb_layer in RGB_LAYERS, "rgb_layer",
              f"{self.rgb_layer!r}: choose {', '.join(RGB_LAYERS)}")

        from .models import D_INPUTS

        check(self.d_input in D_INPUTS, "d_input", f"{self.d_input!r}: choose {' or '.join(D_INPUTS)}")
        check(self.downsample in DOWNSAMPLING, "downsample",
              f"{self.downsample!r}: choose {' or '.join(DOWNSAMPLING)}")
        check(self.d_coarse in (0, 2, 4, 8), "d_coarse", f"{self.d_coarse}: choose 0 (off), 2, 4 or 8")
        problem = coarse_problem(self.d_coarse, self.arch, self.resolution)
        check(problem is None, "d_coarse", problem or "")
        check(self.mbstd != 1, "mbstd", "1: must be 0 (off) or a group size of at least 2")
        from .diffaug import parse_policy

        parse_policy(self.diffaug, name("diffaug"))
        check(self.preset in PRESETS or self.preset == "auto", "preset",
              f"{self.preset!r}: choose auto, {', '.join(PRESETS)}")
        return self

    def check_ranges(self, label: Callable[[str], str] | None = None) -> None:
        """Every numeric option within its declared range (and finite), or a `UserError` naming it
        (by `label`, as in `validate`).

        Called before anything is created, so a bad value never leaves a half-made run folder.
        """
        for f in fields(self):
            bounds, value = f.metadata.get("range"), getattr(self, f.name)
            if bounds is None or value is None:
                continue
            if value not in bounds:
                finite = "" if math.isfinite(value) else "a finite number "
                raise UserError(f"{(label or flag_of)(f.name)} {value}: must be {finite}{bounds}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "options") -> TrainOptions:
        """Build from a dict, refusing unknown keys (a typo in a control file must not pass)."""
        known = {f.name for f in fields(cls)}
        norm = {str(k).replace("-", "_"): v for k, v in data.items()}
        norm = {k: v for k, v in norm.items() if k not in RETIRED}
        unknown = sorted(set(norm) - known)
        if unknown:
            raise UserError(f"{source}: unknown option(s) {', '.join(unknown)}")
        hints = typing.get_type_hints(cls)
        return cls(**{k: _coerce(v, hints[k], k, source) for k, v in norm.items()})


def flag_of(name: str) -> str:
    """How the command line spells an option: `lr_g` -> `--lr-g`, the positional `steps` -> `STEPS`."""
    return name.upper() if name in ("steps", "batch_size") else "--" + name.replace("_", "-")


OPTIONS_FILE = "options.json"
# Options of earlier versions that are now derived, accepted and ignored: saved runs and control
# files that name them keep loading (channels follows --grayscale and the images).
RETIRED = frozenset({"channels"})


def base_type(hint: Any) -> Any:
    """The type of an option without its `| None` (`int | None` -> int); others unchanged."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _coerce(value: Any, hint: Any, name: str, source: str) -> Any:
    """`value` as the field's type, or a one-line error naming the option.

    YAML reads `lr-d: 4e-4` as a string and `steps: 1e4` as a float (PyYAML follows YAML 1.1), so
    values from a control file are converted here instead of failing later inside PyTorch.
    """
    if value is None and typing.get_origin(hint) in (typing.Union, types.UnionType):
        return None
    kind = base_type(hint)
    if typing.get_origin(kind) is list:
        if isinstance(value, list):
            return [str(v) for v in value]
        kind = None
    try:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and not isinstance(value, bool):
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, int | float) and float(number).is_integer():
                return int(number)
        if kind is float and not isinstance(value, bool) and isinstance(value, int | float | str):
            return float(value)
        if kind is str and isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    except (TypeError, ValueError):
        pass
    wanted = {bool: "true or false", int: "a whole number", float: "a number", str: "a text"}.get(
        kind, "a list")
    raise UserError(f"{source}: option {name.replace('_', '-')} must be {wanted}, not {value!r}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML control file into a dict of option names (dashes or underscores)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such control file") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a control file must be a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def merge_options(defaults: TrainOptions, yaml_values: dict[str, Any], cli_values: dict[str, Any],
                  source: str = "control file") -> TrainOptions:
    """Apply YAML values, then the flags given on the command line, over `defaults`.

    The names given in either are remembered (`user_set`), so that a preset fills in only what
    the user left open. A bad value is a `UserError` naming where it came from: `source` and the
    key for a value from the control file, the flag for one from the command line.
    """
    merged = defaults.to_dict()
    TrainOptions.from_dict(yaml_values, source)  # validates the keys
    merged.update(yaml_values)
    merged.update(cli_values)
    merged["user_set"] = sorted(set(yaml_values) | set(cli_values))
    from_file = set(yaml_values) - set(cli_values)

    def label(name: str) -> str:
        return f"{source}: {name.replace('_', '-')}" if name in from_file else flag_of(name)

    return TrainOptions.from_dict(merged).validate(label)


# Presets: recipes that set the options a user did not set. Measured in bench/quality.py; the figures,
# and the variants that did not help, are in docs/quality.md.
SMALL_DATA_LIMIT = 5000  # `auto` picks small-data below this many training images, classic from it

PRESETS: dict[str, dict[str, Any]] = {
    # The 2018 tool's recipe: DCGAN, non-saturating BCE, no EMA, no augmentation, lr 2e-4.
    "classic": {"arch": "dcgan", "loss": "bce", "ema": 0.0, "diffaug": "none", "lr_g": 2e-4, "lr_d": 2e-4,
                "gp": "none", "upsample": "transpose"},
    # For a few hundred to a few thousand images (`auto` below 5,000): classic + DiffAugment translation
    # (D cannot memorise the few reals), resize-conv (translation alone left a checkerboard), a faster G
    # and a short EMA (smoother samples; a long one averages away the rarer looks, losing recall); then
    # noise inputs on the coarse maps and in a full-size RGB layer: random sources for texture, which G
    # otherwise paints as a grain that a classifier tells from the reals' skin; D shown the fine detail
    # that still gave the fakes away, and mode seeking on the looks, which wins back the recall a
    # sharper D alone costs (at 0.6: at 0.3 some seeds drew a lattice of dark marks). The DCGAN at every
    # size: the few-shot networks measured no better at 64 px nor at 160 px (docs/quality.md).
    "small-data": {"arch": "dcgan", "loss": "bce", "ema": 0.95, "diffaug": "translation", "lr_g": 4e-4,
                   "lr_d": 2e-4, "gp": "none", "upsample": "resize", "rgb_layer": "conv-noise",
                   "noise": True, "d_input": "image+fine", "mode_seeking": 0.6},
    # The literature's recipe for small sets at long budgets (SNGAN discriminator, hinge loss,
    # DiffAugment, EMA; Zhao et al. 2020); not better at the CPU budget of docs/quality.md.
    "sngan-diffaug": {"arch": "sngan", "loss": "hinge", "diffaug": "color,translation,cutout", "ema": 0.999,
                      "lr_g": 2e-4, "lr_d": 2e-4},
    # FastGAN's recipe for 100-1,000 images at 128 px and up (Liu et al. 2021; `dcgan.fastgan`): its
    # networks with noise inputs, hinge loss, DiffAugment colour + translation, a long EMA; widths for a
    # CPU budget (its 64 is 4x the work per image).
    "few-shot": {"arch": "fastgan", "loss": "hinge", "diffaug": "color,translation", "ema": 0.995,
                 "lr_g": 2e-4, "lr_d": 2e-4, "gp": "none", "noise": True, "d_input": "image",
                 "mode_seeking": 0.0, "g_channels": 32, "d_channels": 32},
    "none": {},
}

# What a preset adds at and below a resolution (the small band) or above it (the large band), over
# its values: each band's values measured better at one size in it (docs/quality.md: 64 px, "A
# seventh seed for the default's choice"; 160 px, "small-data's pick above 64 px").
# Preset name -> (largest resolution of the small band, values up to it, values above it).
PRESETS_BY_SIZE: dict[str, tuple[int, dict[str, Any], dict[str, Any]]] = {
    # Up to 64 px: G's capacity at full size (where hairs and sharp dots are drawn) and D as fast as G:
    # the panel's strongest judge lower on five seeds of six at 64 px; SWD and recall within the seeds'
    # spread. Above 64 px (measured at 160): a coarse judge in D (colour and layout, which the one D
    # missed there) and a bilinear last doubling in G (the nearest one drew a lattice on the
    # 1/4 diagonals); at 64 px the bilinear doubling cost recall and the fine layers drew lines at 160.
    "small-data": (64, {"g_fine_layers": 2, "lr_d": 4e-4}, {"d_coarse": 4, "upsample_last": "blur"}),
}

# Size-bound values that only the DCGAN family's networks have: left out for --arch fastgan.
DCGAN_ONLY = ("g_fine_layers", "d_coarse", "upsample_last", "upsample_last_count")


def preset_values(preset: str, resolution: int) -> dict[str, Any]:
    """The values `preset` sets for images of `resolution` px."""
    largest, small, large = PRESETS_BY_SIZE.get(preset, (0, {}, {}))
    return {**PRESETS[preset], **(small if resolution <= largest else large)}


def coarse_problem(factor: int, arch: str, resolution: int | None) -> str | None:
    """Why `--d-coarse factor` cannot be used with `arch` at `resolution` px (None: unknown yet), or
    None where it can: the DCGAN family only, and a whole coarse image of 8 px or more. Asked when the
    options are validated and again once the preset and the images' size are settled."""
    if not factor:
        return None
    if arch == "fastgan":
        return ("is for the DCGAN family's D (--arch dcgan or sngan); fastgan's D already reads a "
                "downscaled view")
    if resolution is not None and (resolution % factor or resolution // factor < 8):
        return f"{factor}: {resolution} px / {factor} must be a whole size of at least 8 px"
    return None


def lacks_full_size_rgb_layer(opts: TrainOptions) -> bool:
    """The DCGAN G with `--rgb-layer up`: its last upsampling makes the RGB image, so there is no
    full-size layer for `--g-fine-layers` or `--g-supersample` to build on (fastgan has its own G)."""
    return opts.rgb_layer == "up" and opts.arch != "fastgan"


def apply_preset(opts: TrainOptions, num_images: int, resolution: int) -> TrainOptions:
    """`opts` with `auto` resolved by the number of training images and the preset's values for
    `resolution` px filled in where the user set none."""
    preset = opts.preset
    if preset == "auto":
        preset = "small-data" if num_images < SMALL_DATA_LIMIT else "classic"
    values = {k: v for k, v in preset_values(preset, resolution).items() if k not in opts.user_set}
    out = dataclasses.replace(opts, preset=preset, **values)
    if out.arch == "fastgan":  # the user's FastGAN has none of these layers: left out, not an error
        plain = TrainOptions()
        out = dataclasses.replace(out, **{k: getattr(plain, k) for k in DCGAN_ONLY if k in values})
    elif "g_fine_layers" in values and lacks_full_size_rgb_layer(out):
        # The user's G has no full-size layer for the preset's fine layers to join: left out, not an error.
        out = dataclasses.replace(out, g_fine_layers=0)
    return out


def option_help() -> dict[str, str]:
    """Field name -> help text (one source of truth for `--help` and the README)."""
    return {f.name: f.metadata.get("help", "") for f in fields(TrainOptions)}
