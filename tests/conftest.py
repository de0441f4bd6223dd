"""Shared fixtures: tiny synthetic images so that tests run fast and never need ../shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TRAINING_DATA = REPO / "training_data"


def make_image(path: Path, size: tuple[int, int] = (40, 30), color: tuple[int, int, int] | None = None,
               seed: int = 0, mode: str = "RGB") -> Path:
    """Write a small image: flat `color`, or seeded noise; returns its path."""
    w, h = size
    if color is None:
        arr = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    else:
        arr = np.empty((h, w, 3), np.uint8)
        arr[:] = color
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).convert(mode).save(path)
    return path


def checkpoint_tensors(ckpt: dict) -> dict[str, torch.Tensor]:
    """A checkpoint's weights, buffers and optimiser moments by name, to compare two runs exactly."""
    flat = {}
    for part in ("G", "D", "G_ema"):
        flat.update({f"{part}.{k}": v for k, v in (ckpt[part] or {}).items()})  # no G_ema without EMA
    for part in ("opt_g", "opt_d"):
        for pid, st in ckpt[part]["state"].items():
            flat.update({f"{part}.{pid}.{k}": v for k, v in st.items() if torch.is_tensor(v)})
    return flat


def lesion_images(n: int, size: int = 16, seed: int = 0, *, centre: tuple[float, float] = (0.2, 0.8),
                  radius: tuple[float, float] = (0.15, 0.4), lesion: tuple[float, float] = (40, 120),
                  noise: float = 6, shift: tuple[float, float, float] = (0, 0, 0)) -> np.ndarray:
    """Lesion-like uint8 images (n, size, size, 3): a skin-coloured square with a dark blurred disk of
    random place, size and colour, plus mild noise; `shift` is added to every lesion's colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        cy, cx, r = rng.uniform(*centre), rng.uniform(*centre), rng.uniform(*radius)
        disk = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))[..., None]
        skin, colour = rng.uniform(150, 220, 3), rng.uniform(*lesion, 3) + np.asarray(shift)
        img = skin * (1 - disk) + colour * disk + rng.normal(0, noise, (size, size, 3))
        out[i] = np.clip(img, 0, 255)
    return out


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Six 40x30 noise images (jpg and png) in a folder."""
    folder = tmp_path / "images"
    for i in range(3):
        make_image(folder / f"img{i}.png", seed=i)
        make_image(folder / f"pic{i}.jpg", seed=10 + i)
    return folder
