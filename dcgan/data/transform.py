"""`isic_dataset.py transform`: center-crop and resize a folder of images, in parallel.

Each image is decoded once, at reduced scale where the format allows it (JPEG draft mode: a
6000x4000 original headed for 160x160 is decoded at 1/8 scale), center-cropped to the largest X:Y
box, resized with Lanczos and written atomically. The 2018 tool decoded every image twice at full
size, which made this step the slowest part of preparing a data set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ..errors import UserError
from ..images import ImageReadError, find_images, load_image, save_image
from ..resources import cpu_count

OUTPUT_SUFFIXES = {"jpg": ".jpg", "jpeg": ".jpg", "png": ".png"}


@dataclass
class TransformSummary:
    """What a run did: how many files were written, and one message per skipped file (naming it)."""

    written: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Job:
    """One source image and where its transformed copy goes (picklable, for worker processes)."""

    src: Path
    dst: Path
    size: tuple[int, int]
    grayscale: bool


def transform_folder(input_path: str | os.PathLike[str], output_path: str | os.PathLike[str], x: int, y: int,
                     recursive: bool = False, fmt: str | None = None, grayscale: bool = False,
                     workers: int | None = None, progress: bool = True) -> TransformSummary:
    """Center-crop every image in `input_path` to the largest `x`:`y` box, resize it to `x`x`y`.

    Outputs go to `output_path` under the same name (and, with `recursive`, the same subfolder, so
    class folders such as benign/ and malignant/ keep their layout). `fmt` ('jpg' or 'png') changes
    the format; None keeps each input's own. Every output is RGB, or one channel with `grayscale`.

    A re-run overwrites existing outputs: the result only depends on the inputs and the options, so
    re-computing is always correct, whereas skipping by name would keep stale files after an option
    (size, format) changed. Unreadable files (corrupt, truncated, empty, not an image, over Pillow's
    decompression-bomb limit) are skipped and reported; they never stop the run.

    `workers` processes share the work (default: all cores); with 1 (or a single image) everything
    runs in this process, which also keeps process-wide settings such as `Image.MAX_IMAGE_PIXELS`.
    """
    if x < 1 or y < 1:
        raise UserError(f"size must be positive, got {x}x{y}")
    suffix = _output_suffix(fmt)
    src_root, dst_root = Path(input_path), Path(output_path)
    if not src_root.is_dir():
        raise UserError(f"{src_root}: no such folder")
    if dst_root.resolve() == src_root.resolve():
        raise UserError(f"{dst_root}: the output folder must differ from the input folder "
                        "(the originals would be overwritten)")
    sources = _find_sources(src_root, dst_root, recursive)
    if not sources:
        raise UserError(f"no images found in {src_root}")
    jobs, summary = _plan(sources, src_root, dst_root, suffix, (x, y), grayscale)
    for error in _run(jobs, workers, progress):
        if error is None:
            summary.written += 1
        else:
            summary.skipped.append(error)
    return summary


def _output_suffix(fmt: str | None) -> str | None:
    """The file suffix for `fmt`, or None to keep each input's suffix."""
    if fmt is None:
        return None
    try:
        return OUTPUT_SUFFIXES[fmt.lower()]
    except KeyError:
        raise UserError(f"unknown output format {fmt!r}: use jpg or png") from None


def _find_sources(src_root: Path, dst_root: Path, recursive: bool) -> list[Path]:
    """The images to transform, leaving out `dst_root` when it lies inside `src_root`.

    Without the exclusion a recursive re-run into `input/out` would read its own previous outputs
    as inputs and nest them one level deeper each time.
    """
    dst = dst_root.resolve()
    return [p for p in find_images(src_root, recursive=recursive) if dst not in p.resolve().parents]


def _plan(sources: Sequence[Path], src_root: Path, dst_root: Path, suffix: str | None,
          size: tuple[int, int], grayscale: bool) -> tuple[list[_Job], TransformSummary]:
    """Map each source to its output path; sources whose output name is already taken are skipped.

    Two inputs can only collide when `--format` changes suffixes (a.jpg and a.png both -> a.png);
    silently letting one overwrite the other would lose an image, so the later one is reported.
    """
    jobs: list[_Job] = []
    summary = TransformSummary()
    taken: dict[Path, Path] = {}
    for src in sources:
        rel = src.relative_to(src_root)
        dst = dst_root / rel.parent / (rel.stem + (suffix or src.suffix))
        key = Path(os.path.normcase(dst))
        if key in taken:
            summary.skipped.append(f"{src}: output {dst} would overwrite the output of {taken[key]}")
            continue
        taken[key] = src
        jobs.append(_Job(src, dst, size, grayscale))
    return jobs, summary


def _transform_one(job: _Job) -> str | None:
    """Transform one image; return None on success or the reason it was skipped.

    Only unreadable inputs are turned into a message: a failure to write (disk full, permissions)
    concerns every file and must stop the run.
    """
    try:
        img = load_image(job.src, job.size, grayscale=job.grayscale)
    except ImageReadError as err:
        return str(err)
    save_image(img, job.dst)
    return None


def _init_worker(max_image_pixels: int | None) -> None:
    """Give a worker process the parent's decompression-bomb limit.

    A forked worker inherits it, but a spawned or forkserver one (macOS, Windows, Python 3.14's
    Linux default) re-imports Pillow with the default limit.
    """
    Image.MAX_IMAGE_PIXELS = max_image_pixels


def _run(jobs: Sequence[_Job], workers: int | None, progress: bool) -> Iterator[str | None]:
    """Yield `_transform_one`'s result for each job, in order, with a progress bar."""
    workers = max(1, min(workers or cpu_count(), len(jobs)))
    bar = tqdm(total=len(jobs), unit="img", desc="transform", disable=not progress)
    with bar:
        if workers == 1:
            for job in jobs:
                yield _transform_one(job)
                bar.update()
            return
        # Chunks amortise the inter-process round trip; 4 chunks per worker keep them all busy
        # until the end even when image sizes (and so decode times) vary.
        chunksize = max(1, min(64, len(jobs) // (workers * 4)))
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                   initargs=(Image.MAX_IMAGE_PIXELS,))
        try:
            for result in pool.map(_transform_one, jobs, chunksize=chunksize):
                yield result
                bar.update()
        except BaseException:
            # Ctrl-C or a write error: drop the queued chunks instead of finishing them.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
