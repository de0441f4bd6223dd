"""Seeds -> latents -> images: reproducible generation from a checkpoint.

Image k of `generate --seed S` comes from the latent drawn by a generator seeded with S + k alone,
so it is the same image whatever NIMAGES or --batch-size, and the sample grids written during
training show exactly the images `generate --seed 0` would give.

Images are stored the way the training images were (dcgan.compression): JPEG with their own tables
and subsampling when they were JPEGs, else PNG, so that no classifier can tell fakes by the file.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from tqdm import tqdm

from .architectures import build_generator
from .compression import LOSSLESS, Compression, jpeg
from .errors import UserError
from .fastgan import FewShotGenerator
from .images import save_grid, to_pil, to_uint8
from .models import Generator, latents_for_seeds
from .spec import RunSpec
from .training.checkpoint import load_checkpoint
from .training.distributed import resolve_device


def load_generator(model: str | Path, use_ema: bool = True,
                   device: str = "cpu") -> tuple[Generator | FewShotGenerator, RunSpec, dict]:
    """The generator of a checkpoint (or run folder), in eval mode, with the run's spec."""
    ckpt = load_checkpoint(model)
    spec = RunSpec.from_checkpoint(ckpt)
    G = build_generator(spec)
    state = ckpt["G_ema"] if use_ema and ckpt.get("G_ema") is not None else ckpt["G"]
    G.load_state_dict(state)
    return G.to(device).eval(), spec, ckpt


def truncated_latents(G: Generator | FewShotGenerator, seeds: list[int], truncation: float) -> torch.Tensor:
    """The latents of `seeds` with z pulled towards its mean (0) by `truncation`, trading variety for
    typicality; noise maps (with --noise) are left as they are, as StyleGAN's truncation does."""
    z = latents_for_seeds(seeds, G.latent_dim)
    z[:, :G.z_dim] *= truncation
    return z


def class_index(spec: RunSpec, name: str | None) -> int | None:
    """The label of class `name` in a conditional model (None for an unconditional one)."""
    classes = spec.class_names
    if not classes:
        if name is not None:
            raise UserError(f"--class {name}: this model is not class-conditional")
        return None
    if name is None:
        raise UserError(f"this model is class-conditional: pass --class ({', '.join(classes)}) or --overview")
    if name not in classes:
        raise UserError(f"--class {name}: unknown, the model knows {', '.join(classes)}")
    return classes.index(name)


def check_output_dir(output_dir: str | Path, overwrite: bool) -> Path:
    """Refuse a non-empty OUTPUT_DIR (hidden files aside) unless `overwrite`: the fakes of two models,
    named alike by seed, would otherwise mix or replace each other unnoticed."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if out.is_dir() and not overwrite and any(not p.name.startswith(".") for p in out.iterdir()):
        raise UserError(f"{out}: not empty; choose a new OUTPUT_DIR, or pass --overwrite to write into it "
                        "(files of the same name are replaced)")
    return out


FORMATS = ("auto", "png", "jpg")


def output_compression(spec: RunSpec, fmt: str = "auto", jpeg_quality: int | None = None) -> Compression:
    """How `generate` stores images: `auto` like the training images (PNG for runs that did not
    record theirs, or trained on resized or lossless files); `jpg` with their tables when they were
    JPEGs, else quality 95; --jpeg-quality picks libjpeg's tables for that quality instead."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose {', '.join(FORMATS)}")
    trained = spec.compression if spec.compression is not None and spec.compression.is_jpeg else None
    if fmt == "png":
        if jpeg_quality is not None:
            raise UserError("--jpeg-quality applies to JPEG output; drop it or pass --format jpg")
        return LOSSLESS
    if jpeg_quality is not None:
        subsampling = trained.subsampling if trained is not None and trained.subsampling else "4:2:0"
        return jpeg(jpeg_quality, subsampling)
    if fmt == "jpg":
        return trained or jpeg(95)
    return trained or LOSSLESS


@torch.no_grad()
def generate_images(model: str | Path, n: int, output_dir: str | Path, seed: int = 0, batch_size: int = 64,
                    overview: bool = False, truncation: float = 1.0, use_ema: bool = True,
                    device: str = "auto", progress: bool = True, class_name: str | None = None,
                    overwrite: bool = False, fmt: str = "auto",
                    jpeg_quality: int | None = None) -> list[Path]:
    """Write `n` images (one file each, named by seed, stored as `output_compression` says) or one
    overview grid (PNG); return the paths.

    A class-conditional model needs `class_name`, except for the overview, which shows one row per
    class (the same seeds in every row, so rows differ only by class).
    """
    if not 0 < truncation <= 1:
        raise UserError(f"--truncation {truncation}: must be in (0, 1]")
    out = check_output_dir(output_dir, overwrite)
    dev = resolve_device(device)
    G, spec, _ = load_generator(model, use_ema, str(dev))
    store = output_compression(spec, fmt, jpeg_quality)
    classes = list(spec.class_names)
    per_class_rows = overview and bool(classes) and class_name is None
    label = None if per_class_rows else class_index(spec, class_name)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(seed, seed + n))
    jobs = [(c, seeds) for c in range(len(classes))] if per_class_rows else [(label, seeds)]
    images, written = [], []
    tag = f"{class_name}_" if class_name else ""
    total = sum(math.ceil(n / batch_size) for _ in jobs)
    with tqdm(total=total, desc="generating", unit="batch", disable=not progress) as bar:
        for cls, job_seeds in jobs:
            for i in range(0, n, batch_size):
                chunk = job_seeds[i:i + batch_size]
                z = truncated_latents(G, chunk, truncation)
                y = None if cls is None else torch.full((len(chunk),), cls, dtype=torch.int64, device=dev)
                x = G(z.to(dev), y).float().cpu()
                bar.update(1)
                if overview:
                    images.append(x)
                    continue
                for s, img in zip(chunk, to_uint8(x), strict=True):
                    path = out / f"{tag}seed{s:06d}{store.suffix}"
                    store.save(img.permute(1, 2, 0).numpy(), path)
                    written.append(path)
    if overview:
        path = out / f"overview_{tag}seed{seed:06d}-{seed + n - 1:06d}.png"
        save_grid(torch.cat(images), path, nrow=n if per_class_rows else math.ceil(math.sqrt(n)),
                  row_labels=classes if per_class_rows else None)
        written.append(path)
    return written


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latents a and b at fractions t (the path stays where
    Gaussian latents live, at radius ~sqrt(z_dim), unlike a straight line through the origin)."""
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_n * b_n).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega)[:, None] * a + torch.sin(t * omega)[:, None] * b) / so


@torch.no_grad()
def interpolate(model: str | Path, seeds: list[int], frames: int, output_dir: str | Path,
                use_ema: bool = True, device: str = "auto", class_name: str | None = None,
                duration_ms: int = 80, truncation: float = 1.0, batch_size: int = 64,
                overwrite: bool = False) -> tuple[Path, Path]:
    """A latent walk through `seeds` (slerp, `frames` images per leg, looping back to the first):
    an animated GIF and a strip PNG of the frames. Returns (gif, strip)."""

    from .files import atomic_path

    if len(seeds) < 2 or frames < 2:
        raise UserError("--interpolate needs at least 2 frames and at least 2 seeds")
    out = check_output_dir(output_dir, overwrite)
    dev = resolve_device(device)
    G, spec, _ = load_generator(model, use_ema, str(dev))
    label = class_index(spec, class_name)
    z = truncated_latents(G, seeds, truncation)
    t = torch.arange(frames) / frames
    path_z = torch.cat([slerp(z[i], z[(i + 1) % len(seeds)], t) for i in range(len(seeds))])
    y = None if label is None else torch.full((len(path_z),), label, dtype=torch.int64, device=dev)
    x = torch.cat([G(zc.to(dev), None if y is None else y[: len(zc)]).float().cpu()
                   for zc in path_z.split(batch_size)])
    out.mkdir(parents=True, exist_ok=True)
    name = f"interpolation_{class_name + '_' if class_name else ''}seeds{'-'.join(map(str, seeds))}"
    strip = out / f"{name}.png"
    save_grid(x[:: max(1, len(x) // 16)], strip, nrow=16)
    frames_u8 = to_uint8(x).permute(0, 2, 3, 1).numpy()
    pics = [to_pil(f) for f in frames_u8]
    gif = out / f"{name}.gif"
    with atomic_path(gif) as tmp:
        pics[0].save(tmp, format="GIF", save_all=True, append_images=pics[1:], duration=duration_ms, loop=0)
    return gif, strip
