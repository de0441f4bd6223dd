"""How image files are compressed, so that fakes can be written the way the reals were.

A JPEG carries its compression in its pixels: 8x8 blocks quantized by the file's tables, and colour
(chroma) at half resolution under 4:2:0 subsampling. Fakes saved losslessly lack both, and a
classifier learns that difference instead of the lesions (docs/quality.md, "Compression"). So a run
records how its training images were compressed, `generate` writes its fakes with the same
quantization tables and subsampling, and `img2dist.py quality` warns when reals and fakes differ.

Hand-written: Pillow reads and writes the tables but does not name a file's quality; the estimate
below is the IJG scaling that libjpeg (and so Pillow) uses to make tables from a quality.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The IJG base tables (JPEG standard, Annex K) in natural (row-major) order, as Pillow reads them.
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])
_IJG_CHROMA = np.array([17, 18, 24, 47, *[99] * 4, 18, 21, 26, 66, *[99] * 4, 24, 26, 56, *[99] * 5,
                        47, 66, *[99] * 6, *[99] * 32])
_SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}  # Pillow's JpegImagePlugin.get_sampling codes
RESIZED = "resized"  # the training pixels were resized from the files: no file compression left in them


def ijg_table(quality: int, base: np.ndarray = _IJG_LUMA) -> np.ndarray:
    """The table libjpeg makes from `base` for `quality` (1-100)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


def jpeg_quality(luma_table: Sequence[int]) -> int:
    """The IJG quality whose luminance table is nearest to `luma_table` (exact for libjpeg's own)."""
    table = np.asarray(luma_table)
    errors = [np.abs(ijg_table(q) - table).sum() for q in range(1, 101)]
    return int(np.argmin(errors)) + 1


@dataclass(frozen=True)
class Compression:
    """How a set of images is stored. `format` is Pillow's name (JPEG, PNG, ...); for JPEG the
    quantization tables (natural order) and chroma subsampling, which `save` reuses exactly."""

    format: str
    qtables: tuple[tuple[int, ...], ...] = ()
    subsampling: str | None = None  # "4:4:4" | "4:2:2" | "4:2:0"; None for grayscale JPEGs

    @property
    def is_jpeg(self) -> bool:
        return self.format == "JPEG"

    @property
    def quality(self) -> int | None:
        """The IJG quality nearest to the luminance table (for messages; `save` uses the tables)."""
        return jpeg_quality(self.qtables[0]) if self.is_jpeg and self.qtables else None

    @property
    def suffix(self) -> str:
        return ".jpg" if self.is_jpeg else ".png"

    def describe(self) -> str:
        if self.format == RESIZED:
            return "files resized to the training size (no compression left)"
        if not self.is_jpeg:
            return self.format
        return f"JPEG quality {self.quality}" + (f", {self.subsampling}" if self.subsampling else "")

    def save(self, img: Any, path: str | Path) -> None:
        """Save a PIL image (or uint8 HxW / HxWxC array) atomically, compressed like this set."""
        from .images import save_image, to_pil

        img = to_pil(img) if isinstance(img, np.ndarray) else img
        save_image(img, path, **(self._jpeg_kwargs(img) if self.is_jpeg else {}))

    def roundtrip(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) images as they read back after `save` (in memory; for evaluations)."""
        if not self.is_jpeg:
            return images
        from PIL import Image

        from .images import to_pil

        out = np.empty_like(images)
        for i, arr in enumerate(images):
            img, buf = to_pil(arr), io.BytesIO()
            img.save(buf, format="JPEG", **self._jpeg_kwargs(img))
            out[i] = np.asarray(Image.open(buf)).reshape(arr.shape)
        return out

    def _jpeg_kwargs(self, img: Any) -> dict[str, Any]:
        """Pillow's save arguments for `img` (PIL): a grayscale image takes the luminance table alone."""
        gray = img.mode in ("L", "1")
        kwargs: dict[str, Any] = {"qtables": [list(t) for t in self.qtables[:1 if gray else 2]]}
        if not gray and self.subsampling:
            kwargs["subsampling"] = self.subsampling
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "quality": self.quality, "subsampling": self.subsampling,
                "qtables": [list(t) for t in self.qtables]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Compression:
        return cls(str(data["format"]), tuple(tuple(int(v) for v in t) for t in data.get("qtables") or ()),
                   data.get("subsampling"))


LOSSLESS = Compression("PNG")


def jpeg(quality: int, subsampling: str = "4:2:0") -> Compression:
    """JPEG with libjpeg's tables for `quality` (what `generate --jpeg-quality` writes)."""
    from .errors import UserError

    if not 1 <= quality <= 100:
        raise UserError(f"--jpeg-quality {quality}: must be 1-100")
    tables = tuple(tuple(int(v) for v in ijg_table(quality, base)) for base in (_IJG_LUMA, _IJG_CHROMA))
    return Compression("JPEG", tables, subsampling)


def file_compression(path: str | Path, resolution: int | None = None) -> Compression:
    """How one file is compressed (its header only); RESIZED when it is not `resolution` px wide,
    as the pixels trained on then are a resampling of it."""
    from PIL import Image, JpegImagePlugin

    with Image.open(path) as img:
        if resolution is not None and img.size != (resolution, resolution):
            return Compression(RESIZED)
        if img.format != "JPEG":
            return Compression(img.format or "PNG")
        tables = tuple(tuple(int(v) for v in img.quantization[k]) for k in sorted(img.quantization))
        code = JpegImagePlugin.get_sampling(img) if img.mode not in ("L", "1") else -1
        return Compression("JPEG", tables, _SUBSAMPLING.get(code))


def common_compression(paths: Sequence[str | Path], resolution: int | None = None,
                       sample: int = 256) -> Compression:
    """The most common compression among up to `sample` of `paths`, spread evenly (headers only)."""
    if not paths:
        return LOSSLESS
    picks = np.unique(np.linspace(0, len(paths) - 1, min(sample, len(paths))).round().astype(int))
    counts: Counter[Compression] = Counter()
    for i in picks:
        try:
            counts[file_compression(paths[i], resolution)] += 1
        except OSError:  # unreadable files are reported by whoever decodes them
            continue
    return counts.most_common(1)[0][0] if counts else LOSSLESS

