"""Build the "Real or Fake?" site: a shuffled mix of real and generated images behind a static page.

What `build_site` writes to OUTPUT_DIR::

    README.txt                  what to send, what to keep, how to score
    key.json                    which image is which: KEEP IT, never send it
    site/                       the page, complete: index.html, app.js, style.css, items.js, images/
    real-or-fake-<site id>.zip  site/ zipped, ready to send to raters

The key lives *beside* the site folder, not in it, so sending `site/` or the zip can never leak it,
and the page never loads it (a `fetch` of a JSON file fails on file:// anyway, which is why the list
of images is a script, `items.js`). A random site id is in both the page and the key, so answers
are only ever scored against the site they were given on.

What could give an image away without looking at it, and what is done about it:

* Names: every image is renamed to a random 8-hex-digit id drawn from the seeded RNG.
* Order: `items.js` lists the images in a shuffled order, the page shuffles again for each rater,
  images are written in shuffled order and every file of the site gets the same modification time.
* Format and pixel size: every image is decoded and re-encoded as an 8-bit RGB PNG of one size with
  the same encoder settings. That size is the smaller of the two sets' most common sizes (370 px
  fakes and 160 px reals are both shown at 160 px): images of another size are center-cropped to
  its aspect and resized to it with Lanczos. Downscaling is harmless; upscaling beyond 2x
  (`MAX_UPSCALE`) is refused, since a blurry image gives itself away as surely as a name.
* Metadata: images are rebuilt from their pixel arrays, so no EXIF, ICC profile, text chunk or
  time stamp of the source survives.
* File size: a PNG's size follows its content (a JPEG-derived photo compresses differently from GAN
  output), so every file is padded to the same byte size with a private ancillary PNG chunk of
  random bytes, which every decoder skips. Random rather than zero bytes, so that a zip of the folder
  has equal compressed sizes too. Pixels are never altered beyond the resize: noise would change
  what the rater is asked to judge.

The in-page score (the default; `score_in_page=False` turns it off): to show raters their score at
the end, `items.js` carries the answers XOR-masked with random bytes. That keeps them from being
read at a glance, and the page reveals the score only once every image is answered and the answers
are locked, but it is not secrecy: a rater who reads the page source can recover them. The score
that counts is the one `turing-score` computes from key.json; for a study where that matters, build
the site with `score_in_page=False` (`--no-score-in-page`), and the page only thanks the rater.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import secrets
import shutil
import struct
import time
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import UserError
from ..files import TEMP_PREFIX, atomic_path, copy_file, write_bytes, write_json, write_text
from ..images import center_crop_box, crop_resize, decode_images, find_images

SITE_DIR = "site"
IMAGES_DIR = "images"
KEY_FILE = "key.json"
README_FILE = "README.txt"
ITEMS_FILE = "items.js"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
ASSET_FILES = ("index.html", "app.js", "style.css")
KEY_FORMAT = "isic-gan-turing-key"
ANSWERS_FORMAT = "isic-gan-turing-answers"
FORMAT_VERSION = 1
LABELS = ("real", "fake")

# Private, ancillary, safe-to-copy PNG chunk type (lower/lower/UPPER/lower): decoders skip it.
PAD_CHUNK = b"paDd"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
CHUNK_OVERHEAD = 12  # length, type, CRC

# The most an image is enlarged to the common size: beyond 2x, Lanczos only makes blur.
MAX_UPSCALE = 2.0


@dataclass(frozen=True)
class SiteOptions:
    """How many images, in what mix, and whether the page may show a score."""

    n: int = 40
    seed: int | None = None
    fake_share: float = 0.5
    score_in_page: bool = True
    overwrite: bool = False


@dataclass
class Item:
    """One chosen image: where it came from, what it is, and its pixels as they will be shown."""

    source: Path
    label: str
    image: Image.Image
    original_size: tuple[int, int]
    resized: bool
    id: str = ""


@dataclass
class SiteSummary:
    """What `build_site` wrote, for the CLI to report."""

    site_id: str
    seed: int
    n_real: int
    n_fake: int
    size: tuple[int, int]
    resized: int
    output_dir: Path
    site_dir: Path
    key_path: Path
    zip_path: Path
    skipped: list[str] = field(default_factory=list)


def split_count(n: int, fake_share: float) -> tuple[int, int]:
    """(reals, fakes) for `n` images of which a share `fake_share` is fake (rounded half to even)."""
    if n < 1:
        raise UserError(f"-n must be at least 1, got {n}")
    if not 0 <= fake_share <= 1:
        raise UserError(f"--fake-share must be between 0 and 1, got {fake_share}")
    n_fake = round(n * fake_share)
    return n - n_fake, n_fake


def find_candidates(real_path: str | os.PathLike[str], fake_path: str | os.PathLike[str],
                    output_dir: str | os.PathLike[str] | None = None) -> tuple[list[Path], list[Path]]:
    """The images of both folders; an image in both would be scored as both, so it is refused.

    Images under `output_dir` are left out: a site built inside REAL_PATH must not feed its own
    images back in when it is rebuilt.
    """
    reals, fakes = find_images(real_path), find_images(fake_path)
    if output_dir is not None:
        out = Path(output_dir).resolve()
        reals = [p for p in reals if not p.resolve().is_relative_to(out)]
        fakes = [p for p in fakes if not p.resolve().is_relative_to(out)]
    both = sorted({p.resolve() for p in reals} & {p.resolve() for p in fakes})
    if both:
        raise UserError(f"{both[0]}: is under both REAL_PATH and FAKE_PATH "
                        f"({len(both)} such image(s)); give two separate folders")
    return reals, fakes


def upscale_factor(size: tuple[int, int], target: tuple[int, int]) -> float:
    """How much `crop_resize` enlarges an image of `size` to `target` (below 1: it shrinks it).

    The center crop to the target's aspect comes first, so the factor is that of the crop box.
    """
    left, top, right, bottom = center_crop_box(*size, *target)
    return max(target[0] / (right - left), target[1] / (bottom - top))


def fit(image: Image.Image, size: tuple[int, int], source: Path) -> Image.Image:
    """`image` center-cropped and resized to `size`; a `UserError` if that means upscaling beyond 2x."""
    factor = upscale_factor(image.size, size)
    if factor > MAX_UPSCALE + 1e-9:
        w, h = image.size
        shown = math.ceil(round(factor * 100, 6)) / 100  # rounded up: never "2.00x" for a refused 2.001x
        raise UserError(f"{source}: is {w}x{h}, would need {shown:.2f}x upscaling to the common size "
                        f"{size[0]}x{size[1]} (at most {MAX_UPSCALE:g}x, beyond that it is visibly blurry); "
                        f"leave it out or use larger images")
    return crop_resize(image, *size)


def _decode_some(paths: list[Path], count: int, label: str, rng: random.Random,
                 size: tuple[int, int] | None, skipped: list[str]) -> list[Item]:
    """Decode `count` images drawn at random from `paths`, skipping (and noting) unreadable ones.

    With `size`, images are center-cropped and resized to it (Lanczos, from the full decode, for
    the best downscale; an image that would need more than 2x upscaling is refused); without, they
    are kept as they are.
    """
    items: list[Item] = []
    for path, original, error in decode_images(rng.sample(paths, len(paths)), as_array=False, limit=count):
        if error is not None:
            skipped.append(error)
            continue
        image = original if size is None else fit(original, size, path)
        items.append(Item(path, label, image, original.size, image.size != original.size))
    if len(items) < count:
        folder = "REAL_PATH" if label == "real" else "FAKE_PATH"
        raise UserError(f"{folder} has {len(items)} readable image(s), {count} {label} ones needed: "
                        f"lower -n or change --fake-share")
    return items


def common_size(items: list[Item]) -> tuple[int, int]:
    """The most frequent size among `items`; a tie goes to the larger, so fewer are upscaled."""
    counts = Counter(item.image.size for item in items)
    return max(counts, key=lambda s: (counts[s], s[0] * s[1], s))


def _fit_to(items: list[Item], size: tuple[int, int]) -> None:
    """Center-crop and resize (Lanczos) the items that are not `size` already (at most 2x up)."""
    for item in items:
        if item.image.size != size:
            item.image = fit(item.image, size, item.source)
            item.resized = True


def choose_items(real_path: str | os.PathLike[str], fake_path: str | os.PathLike[str],
                 options: SiteOptions, rng: random.Random, skipped: list[str],
                 output_dir: str | os.PathLike[str] | None = None) -> tuple[list[Item], tuple[int, int]]:
    """Draw the reals and fakes, bring them to one size, shuffle them; returns (items, size).

    The size is the smaller (in pixels) of the fakes' and the reals' most common sizes: bringing
    both sets down to it only ever downscales the typical image of either, whichever set is the
    larger, and only an odd small image is upscaled (at most 2x, else refused). A set that is
    empty (--fake-share 0 or 1) has no say.
    """
    n_real, n_fake = split_count(options.n, options.fake_share)
    reals, fakes = find_candidates(real_path, fake_path, output_dir)
    fake_items = _decode_some(fakes, n_fake, "fake", rng, None, skipped)
    real_items = _decode_some(reals, n_real, "real", rng, None, skipped)
    sizes = [common_size(group) for group in (fake_items, real_items) if group]
    size = min(sizes, key=lambda s: (s[0] * s[1], s))
    items = real_items + fake_items
    _fit_to(items, size)
    rng.shuffle(items)
    return items, size


def unique_ids(count: int, rng: random.Random) -> list[str]:
    """`count` distinct random ids of 8 hex digits: opaque names that say nothing about the image."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        candidate = f"{rng.getrandbits(32):08x}"
        if candidate not in seen:
            seen.add(candidate)
            ids.append(candidate)
    return ids


def encode_png(image: Image.Image) -> bytes:
    """The image as an 8-bit RGB PNG with fixed encoder settings and no metadata at all.

    Rebuilding the image from its pixel array drops `info` (EXIF, ICC profile, text, dpi), which
    Pillow would otherwise carry over into the PNG.
    """
    clean = Image.fromarray(np.asarray(image.convert("RGB"), dtype=np.uint8), mode="RGB")
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", compress_level=9, optimize=False)
    return buffer.getvalue()


def pad_png(data: bytes, total: int, rng: random.Random) -> bytes:
    """`data` grown to exactly `total` bytes by a padding chunk of random bytes just before IEND."""
    if not data.endswith(PNG_IEND):
        raise ValueError("not a PNG ending in IEND")
    length = total - len(data) - CHUNK_OVERHEAD
    if length < 0:
        raise ValueError(f"cannot pad {len(data)} bytes to {total}")
    body = rng.randbytes(length)
    chunk = struct.pack(">I", length) + PAD_CHUNK + body + struct.pack(">I", zlib.crc32(PAD_CHUNK + body))
    return data[:-len(PNG_IEND)] + chunk + PNG_IEND


def encode_all(items: list[Item], rng: random.Random) -> list[bytes]:
    """Every item as a PNG, all padded to the same byte size (the largest plus one padding chunk)."""
    encoded = [encode_png(item.image) for item in items]
    total = max(len(data) for data in encoded) + CHUNK_OVERHEAD
    return [pad_png(data, total, rng) for data in encoded]


def page_data(site_id: str, items: list[Item], size: tuple[int, int], score_in_page: bool,
              rng: random.Random) -> dict[str, Any]:
    """What the page needs (items.js): ids, pixel size and, when allowed, the masked answers.

    Mask byte XOR (1 for a fake, 0 for a real): not readable at a glance, readable by anyone who
    tries; see the module docstring.
    """
    data: dict[str, Any] = {"version": FORMAT_VERSION, "siteId": site_id, "width": size[0],
                            "height": size[1], "images": [item.id for item in items], "score": None}
    if score_in_page:
        mask = rng.randbytes(len(items))
        bits = bytes(m ^ (item.label == "fake") for m, item in zip(mask, items, strict=True))
        data["score"] = {"mask": mask.hex(), "bits": bits.hex()}
    return data


def items_js(data: dict[str, Any]) -> str:
    """items.js: the page's data as a script, because fetching a JSON file fails on file://."""
    return ("// Written by `img2dist.py turing`: the images of this site, in a shuffled order.\n"
            "// `score` (if present) holds the answers XOR-masked, so the page can show a score at the\n"
            "// end; masked, not secret. The official score is computed by `img2dist.py turing-score`.\n"
            f"window.TURING_SITE = {json.dumps(data, indent=1)};\n")


def key_data(site_id: str, seed: int, items: list[Item], size: tuple[int, int], options: SiteOptions,
             real_path: str | os.PathLike[str], fake_path: str | os.PathLike[str]) -> dict[str, Any]:
    """key.json: the answers, with where every image came from and how the site was built."""
    return {
        "format": KEY_FORMAT, "version": FORMAT_VERSION, "site_id": site_id,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed, "n": len(items), "fake_share": options.fake_share,
        "score_in_page": options.score_in_page, "size": list(size),
        "real_path": str(real_path), "fake_path": str(fake_path),
        "items": [{"id": item.id, "label": item.label, "source": str(item.source),
                   "original_size": list(item.original_size), "resized": item.resized}
                  for item in items],
    }


def readme_text(summary: SiteSummary, score_in_page: bool) -> str:
    """README.txt for the study organiser: what to send, what to keep, how to score."""
    w, h = summary.size
    page_score = (
        "The page shows each rater a score at the end, from answers masked inside the page: a\n"
        "rater who reads the page source could find them. Build with --no-score-in-page to leave\n"
        "them out. The score that counts is turing-score's, from key.json.\n"
        if score_in_page else
        "The page shows no score (built with --no-score-in-page); it holds no answers at all.\n")
    return (
        f'"Real or Fake?" site {summary.site_id}, built by img2dist.py turing (seed {summary.seed})\n'
        f"{summary.n_real + summary.n_fake} images shown at {w}x{h}: {summary.n_real} real, "
        f"{summary.n_fake} generated.\n\n"
        f"  site/\n"
        f"      The page. Send this folder, or the zip below, to each rater: they unzip it and\n"
        f"      open index.html in a browser (no server, no internet needed).\n"
        f"  {summary.zip_path.name}\n"
        f"      site/ zipped.\n"
        f"  key.json\n"
        f"      Which image is real. KEEP IT; never send it. The page never loads it.\n\n"
        f"Each rater enters a name, answers every image and downloads an answers file\n"
        f"(turing-answers-{summary.site_id}-NAME.json) to send back. Score them all with:\n\n"
        f"  python img2dist.py turing-score {summary.output_dir} answers/*.json\n\n"
        f"{page_score}")


def _check_output(output_dir: Path, overwrite: bool) -> str | None:
    """Refuse to replace an existing site unless asked; returns the old site id, if any.

    Replacing a site replaces its key, and answers already collected on the old site could then
    never be scored: hence --overwrite.
    """
    key, site = output_dir / KEY_FILE, output_dir / SITE_DIR
    if not key.exists() and not site.exists():
        return None
    if not overwrite:
        raise UserError(f"{output_dir}: already holds a turing site; answers given on it can only be "
                        f"scored with its {KEY_FILE}: use another OUTPUT_DIR, or --overwrite to replace it")
    if site.exists() and not (site / ITEMS_FILE).is_file():
        raise UserError(f"{site}: exists and is not a turing site; not replacing it")
    try:
        return str(json.loads(key.read_text(encoding="utf-8"))["site_id"]) if key.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_site_files(folder: Path, items: list[Item], pngs: list[bytes], data: dict[str, Any]) -> None:
    """The page, its data and the images, into `folder`, every file with one modification time."""
    for name in ASSET_FILES:
        copy_file(ASSETS_DIR / name, folder / name)
    write_text(folder / ITEMS_FILE, items_js(data))
    for item, png in zip(items, pngs, strict=True):
        write_bytes(folder / IMAGES_DIR / f"{item.id}.png", png)
    stamp = time.time()
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (stamp, stamp))


def zip_site(site_dir: Path, zip_path: Path, folder_name: str) -> None:
    """`site_dir` zipped under `folder_name`/, entries in name order with one time stamp.

    Images are stored, not deflated: they are compressed already, and equal stored sizes keep
    the padding's promise that sizes say nothing.
    """
    stamp = time.localtime(site_dir.stat().st_mtime)[:6]
    with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for path in sorted(p for p in site_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(site_dir).as_posix()
            info = zipfile.ZipInfo(f"{folder_name}/{rel}", date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED if path.suffix == ".png" else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())


def _install_site(tmp_site: Path, output_dir: Path, old_site_id: str | None) -> Path:
    """Put the freshly built site folder in place of the old one (if any); returns its path."""
    site = output_dir / SITE_DIR
    if site.exists():
        shutil.rmtree(site)
    if old_site_id:
        (output_dir / f"real-or-fake-{old_site_id}.zip").unlink(missing_ok=True)
    os.replace(tmp_site, site)
    return site


def build_site(real_path: str | os.PathLike[str], fake_path: str | os.PathLike[str],
               output_dir: str | os.PathLike[str], options: SiteOptions | None = None) -> SiteSummary:
    """Write the site, its zip, key.json and README.txt to `output_dir`; see the module docstring.

    The same `seed` and folders give the same images, ids and order; the site id is always new,
    so answers from one build are never scored against another's key by mistake.
    """
    options = options or SiteOptions()
    output_dir = Path(output_dir)
    old_site_id = _check_output(output_dir, options.overwrite)
    seed = options.seed if options.seed is not None else secrets.randbits(32)
    rng = random.Random(seed)
    site_id = secrets.token_hex(6)
    skipped: list[str] = []
    items, size = choose_items(real_path, fake_path, options, rng, skipped, output_dir)
    for item, item_id in zip(items, unique_ids(len(items), rng), strict=True):
        item.id = item_id
    pngs = encode_all(items, rng)
    data = page_data(site_id, items, size, options.score_in_page, rng)

    output_dir.mkdir(parents=True, exist_ok=True)
    tmp_site = output_dir / f"{TEMP_PREFIX}site-{site_id}"
    try:
        (tmp_site / IMAGES_DIR).mkdir(parents=True)
        _write_site_files(tmp_site, items, pngs, data)
        site = _install_site(tmp_site, output_dir, old_site_id)
    except BaseException:
        shutil.rmtree(tmp_site, ignore_errors=True)
        raise
    key_path = output_dir / KEY_FILE
    # Durable: the key is the only record of which image is real, and answers cannot be scored without it.
    write_json(key_path, key_data(site_id, seed, items, size, options, real_path, fake_path), durable=True)
    zip_path = output_dir / f"real-or-fake-{site_id}.zip"
    zip_site(site, zip_path, f"real-or-fake-{site_id}")
    n_fake = sum(item.label == "fake" for item in items)
    summary = SiteSummary(site_id=site_id, seed=seed, n_real=len(items) - n_fake, n_fake=n_fake,
                          size=size, resized=sum(item.resized for item in items), output_dir=output_dir,
                          site_dir=site, key_path=key_path, zip_path=zip_path, skipped=skipped)
    write_text(output_dir / README_FILE, readme_text(summary, options.score_in_page))
    return summary
