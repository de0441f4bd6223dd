"""Find, decode, convert and save images: the one place for image I/O.

Training, analysis and `transform` all load images through `load_image`, so a format that is fixed
once (EXIF rotation, 16-bit TIFF, palette PNG, CMYK JPEG) is fixed everywhere. A folder is read
with `find_images` (which files, in which order) and `decode_images` (each decoded once, unreadable
ones reported by name), so the training set, `quality`, `embedding` and the Turing site agree on
what a folder of images is.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image, ImageOps

from .errors import UserError
from .files import TEMP_PREFIX, atomic_path

if TYPE_CHECKING:
    import torch

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
IMAGE_TYPES = ", ".join(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)  # for messages: "jpg, jpeg, ..."
# `augment` writes this file into its output folder (by default INPUT/output/, inside the real set):
# a folder search skips a folder holding it, so augmented copies never pass for real images.
AUGMENTED_MARKER = "AUGMENTED.txt"

log = logging.getLogger(__name__)


class ImageReadError(UserError):
    """An image file that cannot be decoded (corrupt, truncated, empty, not an image, too large)."""


def is_image_file(path: Path) -> bool:
    """True for a regular file with an image extension (case-insensitive), ignoring temp files."""
    return (
        path.suffix.lower() in IMAGE_EXTENSIONS
        and not path.name.startswith(TEMP_PREFIX)
        and not path.name.startswith(".")
        and path.is_file()
    )


def find_images(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                recursive: bool = True, required: bool = False) -> list[Path]:
    """Return the image files named by `paths` (files, or folders searched for images), sorted.

    Sorting makes every downstream result (batch order, plot order) independent of the file
    system's listing order. A path that does not exist is a `UserError`, and so is finding nothing
    when `required`. Subfolders holding `AUGMENTED_MARKER` are skipped with a warning; a folder
    named in `paths` itself is always read.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found.extend(_images_in(p) if recursive else sorted(q for q in p.iterdir() if is_image_file(q)))
        elif p.is_file():
            found.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    if required and not found:
        named = ", ".join(str(p) for p in paths)
        raise UserError(f"{named}: no images found (looked for {IMAGE_TYPES})")
    return found


def _images_in(folder: Path) -> list[Path]:
    """The images under `folder`, recursively, leaving out augmented-output subfolders."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):  # followlinks: as Path.glob("**") did
        here = Path(root)
        for d in sorted(dirs):
            if (here / d / AUGMENTED_MARKER).is_file():
                dirs.remove(d)
                log.warning("skipped the folder %s: augmented copies written by `augment` (%s); name it "
                            "itself to use them", here / d, AUGMENTED_MARKER)
        found.extend(q for f in files if is_image_file(q := here / f))
    return sorted(found)


def _to_mode(img: Image.Image, grayscale: bool) -> Image.Image:
    """Convert any Pillow mode (L, LA, P, RGBA, CMYK, I;16, F, ...) to RGB, or L when grayscale.

    Transparent pixels are composited on black, as a dermoscopy background would be.
    16-bit images (I;16 and 32-bit I, which is how 16-bit data usually arrives) map the fixed range
    0..65535 to 0..255 (divided by 257, clipped), never each image's own min and max: a uniform
    image keeps its gray level, and intensities stay comparable across the images of a series.
    Float images (F) in [0, 1] map to 0..255; float data outside [0, 1] has no natural range and is
    stretched by its own min and max.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0.0 and hi <= 1.0:
            lo, hi = 0.0, 1.0
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = Image.fromarray(np.clip(np.rint((arr - lo) * scale), 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    target = "L" if grayscale else "RGB"
    return img if img.mode == target else img.convert(target)


def open_image(path: str | os.PathLike[str], draft_size: tuple[int, int] | None = None,
               grayscale: bool = False) -> Image.Image:
    """Decode `path` once, apply its EXIF orientation and convert it to RGB (or L).

    `draft_size` lets the JPEG decoder skip work: a 6000x4000 original that will end up as
    160x160 is decoded at 1/8 scale (DCT scaling), still at least `draft_size` in each dimension.
    Raises `ImageReadError` naming the file for anything that is not a readable image.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if draft_size is not None and img.format == "JPEG":
                # EXIF rotation by 90 degrees swaps the axes: ask for the larger side in both.
                side = max(draft_size)
                img.draft(img.mode if img.mode in ("RGB", "L") else "RGB", (side, side))
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_mode(img, grayscale)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(f"{path}: refused, larger than Pillow's decompression-bomb limit "
                             f"({Image.MAX_IMAGE_PIXELS} pixels): {err}") from None
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except (OSError, ValueError, SyntaxError, Image.UnidentifiedImageError) as err:
        if path.exists() and path.stat().st_size == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes)") from None
        raise ImageReadError(f"{path}: not a readable image ({err})") from None


SINGLE_CHANNEL_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def is_single_channel(path: str | os.PathLike[str]) -> bool:
    """True when `path` stores one (gray) channel, read from its header without decoding.

    Lets a step that rewrites images (augment) keep grayscale sources grayscale instead of
    tripling them into RGB. Anything unreadable gives False; `open_image` then reports it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.mode in SINGLE_CHANNEL_MODES
    except Exception:  # any decoder error: the caller's open_image gives the message
        return False


def center_crop_box(width: int, height: int, aspect_x: int, aspect_y: int) -> tuple[int, int, int, int]:
    """The largest box of aspect `aspect_x:aspect_y` centered in a `width`x`height` image."""
    if width * aspect_y > height * aspect_x:  # too wide: keep full height
        w, h = round(height * aspect_x / aspect_y), height
    else:
        w, h = width, round(width * aspect_y / aspect_x)
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def crop_resize(img: Image.Image, width: int, height: int) -> Image.Image:
    """Center-crop `img` to the aspect of `width`x`height`, then resize with Lanczos.

    The crop is a real crop: `resize(box=...)` would let the filter reach pixels outside the box,
    tinting the edges with content that the crop removed.
    """
    box = center_crop_box(img.width, img.height, width, height)
    if box != (0, 0, img.width, img.height):
        img = img.crop(box)
    if img.size == (width, height):
        return img
    return img.resize((width, height), Image.Resampling.LANCZOS)


def load_image(path: str | os.PathLike[str], size: int | tuple[int, int] | None = None,
               grayscale: bool = False) -> Image.Image:
    """Open an image and, when `size` is given, center-crop and resize it to that size."""
    if size is None:
        return open_image(path, grayscale=grayscale)
    w, h = (size, size) if isinstance(size, int) else size
    return crop_resize(open_image(path, draft_size=(w, h), grayscale=grayscale), w, h)


def load_array(path: str | os.PathLike[str], size: int | tuple[int, int] | None = None,
               grayscale: bool = False) -> np.ndarray:
    """`load_image` as a uint8 array of shape (H, W, C), C = 1 or 3."""
    arr = np.asarray(load_image(path, size, grayscale))
    return arr[..., None] if arr.ndim == 2 else arr


class Decoded(NamedTuple):
    """One file of `decode_images`: its pixels, or why it could not be read (never both)."""

    path: Path
    image: np.ndarray | Image.Image | None  # None when unreadable
    error: str | None  # the `ImageReadError` message, naming the file


def decode_images(paths: Sequence[str | os.PathLike[str]], size: int | tuple[int, int] | None = None,
                  grayscale: bool = False, *, as_array: bool = True, limit: int | None = None,
                  workers: int = 1) -> Iterator[Decoded]:
    """Decode each of `paths` once, in their order, yielding its pixels or the reason it was skipped.

    Each image goes through `load_image` (EXIF rotation, RGB or L, and with `size` the center crop and
    Lanczos resize), as a uint8 array (H, W, C) by default or, with `as_array=False`, a Pillow image.
    Unreadable files are yielded with their message, not raised, so each caller decides whether to
    skip, warn or collect them. Lazy: a caller may stop early, and `limit` stops after that many
    readable images, so that a random draw from a large folder decodes only what it keeps.
    `workers` > 1 decodes in threads (Pillow releases the GIL while decoding), at most 2 x `workers`
    images ahead of the consumer, which bounds the memory held for a caller that streams.
    """
    def decode(path: str | os.PathLike[str]) -> Decoded:
        try:
            image = load_array(path, size, grayscale) if as_array else load_image(path, size, grayscale)
        except ImageReadError as err:
            return Decoded(Path(path), None, str(err))
        return Decoded(Path(path), image, None)

    if workers <= 1:
        yield from _up_to(limit, map(decode, paths))
    else:
        with closing(_decode_ahead(decode, paths, workers)) as results:
            yield from _up_to(limit, results)


def _up_to(limit: int | None, results: Iterable[Decoded]) -> Iterator[Decoded]:
    """`results` up to and including the `limit`-th readable image (all of them for None)."""
    readable = 0
    if limit is not None and limit <= 0:
        return
    for result in results:  # the limit is checked before the next file is decoded
        yield result
        readable += result.error is None
        if limit is not None and readable >= limit:
            return


def _decode_ahead(decode: Callable[[str | os.PathLike[str]], Decoded],
                  paths: Sequence[str | os.PathLike[str]], workers: int) -> Iterator[Decoded]:
    """`map(decode, paths)` on `workers` threads, in order, at most 2 x `workers` results pending."""
    pool = ThreadPoolExecutor(workers)
    pending: deque[Future[Decoded]] = deque()
    try:
        for path in paths:
            pending.append(pool.submit(decode, path))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def to_pil(arr: np.ndarray) -> Image.Image:
    """A uint8 HxW or HxWxC array as a PIL image (HxWx1 as grayscale: Pillow refuses that shape)."""
    return Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)


def save_image(img: Image.Image | np.ndarray, path: str | os.PathLike[str], **save_kwargs) -> None:
    """Save an image (PIL, or uint8 array HxW / HxWxC) atomically; the format follows the suffix."""
    if isinstance(img, np.ndarray):
        img = to_pil(img)
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt == "JPEG" and "qtables" not in save_kwargs:  # Pillow scales given tables by `quality` %
        save_kwargs.setdefault("quality", 95)
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt, **save_kwargs)


# Generator output (floats in [-1, 1]) as pictures: the sample grids, `generate` and the evaluations.
def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] (N, C, H, W) -> uint8 (N, C, H, W)."""
    import torch

    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None,
              row_labels: list[str] | None = None) -> None:
    """Save generator output (N, C, H, W in [-1, 1]) as one near-square grid PNG; `row_labels`
    (e.g. the class of each row) are written in a white margin left of the rows."""
    import math

    from torchvision.utils import make_grid

    n = images.shape[0]
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    grid = make_grid(to_uint8(images.cpu()), nrow=nrow, padding=2, pad_value=255).permute(1, 2, 0).numpy()
    if row_labels:
        grid = _label_rows(grid, row_labels, images.shape[2] + 2)
    save_image(grid, path)


def _label_rows(grid: np.ndarray, labels: list[str], pitch: int) -> np.ndarray:
    """The grid (H, W, C uint8) with `labels` in black in a left margin, each centred on its row."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=max(10, min(16, pitch // 3)))
    width = max(int(font.getlength(t)) for t in labels) + 8
    h, w, c = grid.shape
    canvas = Image.new("RGB", (w + width, h), (255, 255, 255))
    canvas.paste(Image.fromarray(grid if c == 3 else np.repeat(grid, 3, axis=2)), (width, 0))
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(labels):
        draw.text((width - 4, 2 + i * pitch + (pitch - 2) / 2), text, fill=(0, 0, 0), font=font, anchor="rm")
    return np.asarray(canvas)
