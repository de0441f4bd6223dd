"""A run's settings, settled once: the user's options resolved against the training images.

`TrainOptions` keep what the user asked for (defaults < control file < flags): validated, never
changed. Once the images are decoded, `settle` makes the one `RunSpec` a run uses: the preset
applied, the automatic values (0 = auto) filled in, the image size, channels, classes and file
compression taken from the data. The trainer, the checkpoints and `generate` read only the spec,
and nothing changes it afterwards (a resume may move the folder and extend `steps`, nothing else).

`options.json` and every checkpoint record both: the settled options, under the keys runs have
always written, and the options as given (`asked`). Runs saved before `asked` was kept load alike,
with `asked` None: their saved options were already the settled ones.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compression import Compression
from .diffaug import parse_policy
from .errors import UserError
from .options import OPTIONS_FILE, TrainOptions, apply_preset, coarse_problem, lacks_full_size_rgb_layer

AUTO_MIN_INTERVAL = 10  # steps; the shortest automatic interval between sample grids or checkpoints


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run, settled; see the module docstring."""

    options: TrainOptions  # settled: preset applied, automatic values filled, the images' resolution
    channels: int  # of the training images: 1 (grayscale) or 3
    class_names: tuple[str, ...] = ()  # the classes of a class-conditional run, () otherwise
    asked: TrainOptions | None = None  # the options the run was started with (None: not recorded)
    # How the training files were compressed, which `generate` copies (None: not recorded, PNG).
    compression: Compression | None = None

    @property
    def resolution(self) -> int:
        assert self.options.resolution is not None  # settle and the loaders always set it
        return self.options.resolution

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def continued(self, run_dir: str | Path, steps: int | None = None) -> RunSpec:
        """The spec of a resume: the run folder where it is now, and `steps` in all (None: as before)."""
        options = dataclasses.replace(self.options, output_dir=str(run_dir),
                                      steps=self.options.steps if steps is None else steps)
        return dataclasses.replace(self, options=options)

    def to_dict(self) -> dict[str, Any]:
        """What options.json holds: the settled options at the top level, as it always has."""
        return {**self.options.to_dict(), "channels": self.channels, "class_names": list(self.class_names),
                "asked": None if self.asked is None else self.asked.to_dict(), **self._compression_field()}

    def save(self, path: str | Path, durable: bool = False) -> None:
        from .files import write_json

        write_json(path, self.to_dict(), durable=durable)

    def checkpoint_fields(self) -> dict[str, Any]:
        """The spec's part of a checkpoint (the keys and layout checkpoints have always had, + asked and
        compression)."""
        return {"options": self.options.to_dict(), "resolution": self.resolution, "channels": self.channels,
                "class_names": list(self.class_names),
                "asked": None if self.asked is None else self.asked.to_dict(), **self._compression_field()}

    def _compression_field(self) -> dict[str, Any]:
        return {"compression": None if self.compression is None else self.compression.to_dict()}

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], source: str = "checkpoint") -> RunSpec:
        """The spec a checkpoint was trained with (any version's: see the module docstring)."""
        options = TrainOptions.from_dict(ckpt["options"], source)
        options = dataclasses.replace(options, resolution=ckpt["resolution"])
        return cls(options, ckpt["channels"], _class_names(ckpt.get("class_names"), options, source),
                   _asked(ckpt.get("asked"), source), _compression(ckpt.get("compression"), source))

    @classmethod
    def load(cls, run_dir: str | Path) -> RunSpec:
        """The spec in a run folder's options.json (any version's; those written before the spec did
        not record the class names, which come back as (): only checkpoints are trained from)."""
        path = Path(run_dir) / OPTIONS_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{run_dir}: not a training run folder (no {OPTIONS_FILE})") from None
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: unreadable ({err})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: unreadable (not a mapping of option: value)")
        asked, names = data.pop("asked", None), data.pop("class_names", None)
        channels, compression = data.pop("channels", None), data.pop("compression", None)
        options = TrainOptions.from_dict(data, str(path))
        if not isinstance(channels, int):  # written by every version so far; derived if ever missing
            channels = 1 if options.grayscale else 3
        classes = () if names is None else _class_names(names, options, str(path))
        return cls(options, channels, classes, _asked(asked, str(path)), _compression(compression, str(path)))


def _class_names(names: Any, options: TrainOptions, source: str) -> tuple[str, ...]:
    if not options.conditional:
        return ()
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UserError(f"{source}: damaged, the class names of a class-conditional run are missing")
    return tuple(names)


def _asked(data: Any, source: str) -> TrainOptions | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise UserError(f"{source}: damaged, `asked` is not a mapping of option: value")
    return TrainOptions.from_dict(data, f"{source} (asked)")


def _compression(data: Any, source: str) -> Compression | None:
    if data is None:
        return None
    try:
        return Compression.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UserError(f"{source}: damaged, `compression` is not a format with its tables") from None


def training_folder(options: TrainOptions) -> Path:
    """TRAINING_IMAGES as an absolute path (what the spec keeps, so `resume` works from anywhere)."""
    return Path(options.training_images).resolve()


def fill_automatic(options: TrainOptions) -> TrainOptions:
    """`options` with the automatic values (0 = auto) derived from STEPS, and TRAINING_IMAGES absolute."""
    steps = options.steps
    # Auto grids and checkpoints come no closer than AUTO_MIN_INTERVAL steps (the last step always
    # gets both): in a short run one per step cost more than the training (docs/performance.md).
    return dataclasses.replace(
        options,
        training_images=str(training_folder(options)),
        log_every=options.log_every if options.log_every > 0 else max(1, min(50, steps // 20)),
        sample_every=(options.sample_every if options.sample_every > 0
                      else max(min(AUTO_MIN_INTERVAL, steps), steps // 20)),
        checkpoint_every=(options.checkpoint_every if options.checkpoint_every > 0
                          else max(min(AUTO_MIN_INTERVAL, steps), steps // 10)))


def settle(asked: TrainOptions, num_images: int, resolution: int, channels: int,
           class_names: Sequence[str], compression: Compression | None = None) -> RunSpec:
    """The spec of a new run: `asked` (validated) with its preset applied and its automatic values
    filled in, for `num_images` training images of `resolution` px and `channels`, in `class_names`,
    stored with `compression`."""
    options = fill_automatic(apply_preset(asked, num_images, resolution))
    if options.g_fine_layers and lacks_full_size_rgb_layer(options):
        raise UserError(f"--g-fine-layers {options.g_fine_layers}: needs --rgb-layer conv or conv-noise "
                        "(with up, G's last upsampling makes the RGB image: there is no full-size layer to "
                        "add to)")
    if options.g_supersample and lacks_full_size_rgb_layer(options):
        raise UserError("--g-supersample: needs --rgb-layer conv or conv-noise (with up, G's last upsampling "
                        "makes the RGB image: there is no RGB layer to draw at twice the size)")
    if options.hair_noise and options.arch != "fastgan" and options.rgb_layer != "conv-noise":
        raise UserError("--hair-noise: needs --rgb-layer conv-noise (the strokes go into its full-size noise "
                        "input)")
    has_noise_input = options.noise or options.rgb_layer == "conv-noise"
    for flag, on in (("--noise-per-image", options.noise_per_image),
                     ("--sparse-noise", options.sparse_noise)):
        if on and options.arch != "fastgan" and not has_noise_input:
            raise UserError(f"{flag}: needs --noise or --rgb-layer conv-noise (G has no noise input to "
                            "apply it to)")
    if options.ada_target and not parse_policy(options.diffaug):
        raise UserError(f"--ada-target {options.ada_target:g}: needs a --diffaug policy to apply adaptively "
                        "(e.g. --diffaug translation,color,cutout)")
    problem = coarse_problem(options.d_coarse, options.arch, resolution)  # the preset may pick fastgan
    if problem:
        raise UserError(f"--d-coarse {problem}")
    options = dataclasses.replace(options, resolution=resolution)
    return RunSpec(options, channels, tuple(class_names) if options.conditional else (), asked, compression)
