"""`isic_dataset.py augment`: enlarge a folder with random rotations, flips and zooms (Augmentor).

The operations are Augmentor's, with the 2018 tool's settings as defaults. Augmentor's own
`Pipeline.sample` is not used to read and write files, because with it
- its thread pool draws random numbers in whatever order the threads run, so a seed does not
  give reproducible images;
- output names contain a uuid4, so they differ on every run even with a seed;
- it ignores EXIF orientation, writes files non-atomically and, on an unreadable source, crashes
  (it reads `IOError.message`, which Python 3 removed).
Instead this module draws the sources itself with the same `random.choice`, decodes them with
`dcgan.images`, applies the Augmentor pipeline through its public `torch_transform()` callable
and saves the results atomically under deterministic names.

Augmentor 0.2.12 works with Pillow 13 and numpy 2 for the operations used here (rotate,
flip_left_right, flip_top_bottom, zoom_random): they only use names that still exist
(Image.BICUBIC, Image.FLIP_LEFT_RIGHT, ...). Its Image.ANTIALIAS, removed in Pillow 10, is only
reached by `Pipeline.resize`, which is not used, so no workaround is needed.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import Augmentor
import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import UserError
from ..files import write_text
from ..images import AUGMENTED_MARKER, ImageReadError, find_images, is_single_channel, open_image, save_image

AUGMENTOR_OUTPUT = "output"  # Augmentor's default output folder, relative to the source folder
_INDEX = re.compile(r"_aug(\d+)$")
MARKER_TEXT = ("The images in this folder are augmented copies of those in {source}, written by\n"
               "`isic_dataset.py augment`. Training, embedding, quality and turing skip this folder when\n"
               "they search a folder above it, so that the copies never pass for real images; name this\n"
               "folder itself to use them.\n")


@dataclass(frozen=True)
class AugmentOptions:
    """The pipeline's operations; a probability of 0 (or rotate=0, zoom_area=1) leaves one out.

    Defaults are the 2018 tool's: rotate by up to 5 degrees either way always, flip left-right and
    top-bottom half of the time, and half of the time zoom into a random box of 80% of the area.
    Augmentor rotates by whole degrees and rounds `rotate` up.
    """

    rotate: float = 5.0
    rotate_prob: float = 1.0
    flip_lr: float = 0.5
    flip_tb: float = 0.5
    zoom_prob: float = 0.5
    zoom_area: float = 0.8


def build_pipeline(options: AugmentOptions) -> Augmentor.Pipeline:
    """An Augmentor pipeline with the enabled operations, in the 2018 tool's order.

    An operation that is off is not added at all: Augmentor refuses a probability of 0.
    Options out of range, or all operations off, are a UserError.
    """
    _check_options(options)
    p = Augmentor.Pipeline()
    if options.rotate > 0 and options.rotate_prob > 0:
        p.rotate(probability=options.rotate_prob, max_left_rotation=options.rotate,
                 max_right_rotation=options.rotate)
    if options.flip_lr > 0:
        p.flip_left_right(probability=options.flip_lr)
    if options.zoom_prob > 0 and options.zoom_area < 1:
        p.zoom_random(probability=options.zoom_prob, percentage_area=options.zoom_area)
    if options.flip_tb > 0:
        p.flip_top_bottom(probability=options.flip_tb)
    if not p.operations:  # Augmentor's sample() refuses this too: the "augmented" images would be copies
        raise UserError("every augmentation is turned off: nothing to do")
    return p


def _check_options(o: AugmentOptions) -> None:
    """Turn out-of-range options into a UserError instead of Augmentor's ValueError deep inside."""
    for name in ("rotate_prob", "flip_lr", "flip_tb", "zoom_prob"):
        if not 0 <= getattr(o, name) <= 1:
            raise UserError(f"{name} must be a probability between 0 and 1, got {getattr(o, name)}")
    if not 0 <= o.rotate <= 25:
        raise UserError(f"rotate must be between 0 and 25 degrees (Augmentor's limit), got {o.rotate}")
    if not 0.1 <= o.zoom_area <= 1:
        raise UserError(f"zoom_area must be between 0.1 and 1, got {o.zoom_area}")


def augment_folder(input_path: str | os.PathLike[str], n: int, output: str | os.PathLike[str] | None = None,
                   seed: int | None = None, options: AugmentOptions = AugmentOptions()) -> Path:
    """Write `n` augmented images, each drawn at random from the images in `input_path`; return the folder.

    The output folder is `input_path/output` (where Augmentor puts it) unless `output` is given;
    images in either are never used as sources, so a re-run does not augment augmented images.
    Subfolders (classes such as benign/ and malignant/) are mirrored in the output folder.

    Names are `<source stem>_aug<NNNNN>.<source suffix>`, numbered on from the highest number already
    in the output folder: like Augmentor, a re-run adds `n` more images rather than replacing
    earlier ones. With `seed` the images and their names are reproducible (Augmentor draws from
    Python's and numpy's global generators, both seeded here and restored afterwards).
    Unreadable sources are reported on stderr and left out of the draw.
    """
    if n < 1:
        raise UserError(f"n must be at least 1, got {n}")
    if seed is not None and not 0 <= seed < 2**32:
        raise UserError(f"seed must be between 0 and 2**32 - 1 (numpy's range), got {seed}")
    src_root = Path(input_path)
    if not src_root.is_dir():
        raise UserError(f"{src_root}: no such folder")
    out_root = Path(output) if output is not None else src_root / AUGMENTOR_OUTPUT
    sources = _find_sources(src_root, out_root)
    if not sources:
        raise UserError(f"no images found in {src_root}")
    transform = build_pipeline(options).torch_transform()
    first = _next_index(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    # The marker first, so that a stopped run's copies are recognisable too.
    write_text(out_root / AUGMENTED_MARKER, MARKER_TEXT.format(source=src_root))
    with _seeded(seed), tqdm(total=n, unit="img", desc="augment") as bar:
        for i, (src, img) in enumerate(_draw(sources, n)):
            dst = out_root / src.relative_to(src_root).parent / f"{src.stem}_aug{first + i:05d}{src.suffix}"
            save_image(transform(img), dst)
            bar.update()
    return out_root


def _find_sources(src_root: Path, out_root: Path) -> list[Path]:
    """Images under `src_root`, without those in Augmentor's output folder or in `out_root`."""
    excluded = {(src_root / AUGMENTOR_OUTPUT).resolve(), out_root.resolve()}
    return [p for p in find_images(src_root, recursive=True)
            if not excluded.intersection(p.resolve().parents)]


def _next_index(out_root: Path) -> int:
    """One more than the highest `_augNNNNN` number in `out_root`, so a re-run never overwrites."""
    if not out_root.is_dir():
        return 0
    numbers = [int(m.group(1)) for p in out_root.rglob("*") if (m := _INDEX.search(p.stem))]
    return max(numbers, default=-1) + 1


def _report_skipped(message: str) -> None:
    """Tell the user about an unreadable source without stopping the run."""
    print(f"skipped {message}", file=sys.stderr)


def _draw(sources: list[Path], n: int, report: Callable[[str], None] = _report_skipped,
          ) -> Iterator[tuple[Path, Image.Image]]:
    """Yield `n` (source, decoded image) pairs drawn with replacement, as `Pipeline.sample` does.

    An unreadable source is reported once and removed from the pool, and the draw repeated, so the
    run still writes `n` images; only when no source is readable does it stop with a UserError.
    """
    pool = list(sources)
    done = 0
    while done < n:
        if not pool:
            raise UserError("no readable images among the sources")
        src = random.choice(pool)
        try:
            img = open_image(src, grayscale=is_single_channel(src))
        except ImageReadError as err:
            report(str(err))
            pool.remove(src)
            continue
        yield src, img
        done += 1


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed Python's and numpy's global generators (Augmentor uses both), restoring them after.

    Restoring keeps a caller's own random stream (a training loop, a test) unaffected by the seed.
    """
    if seed is None:
        yield
        return
    py_state, np_state = random.getstate(), np.random.get_state()
    Augmentor.Pipeline.set_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
