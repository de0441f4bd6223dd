"""Training images decoded once into memory as uint8, and a resumable, seeded batch order.

Batches are drawn by index from one (N, C, H, W) uint8 tensor: a 64 px batch of 64 images is a
0.8 MB gather, far cheaper than a DataLoader decoding JPEGs every epoch. A folder too large for
`max_memory_gb` streams from disk instead (decoded per batch). The batch order is a permutation per
epoch that depends only on (seed, epoch), so a resumed run (or any number of DDP ranks, each
taking its slice of the global batch) sees exactly the batches a single uninterrupted run would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..compression import LOSSLESS, Compression, common_compression
from ..errors import UserError
from ..images import decode_images, find_images, load_array

log = logging.getLogger(__name__)


def _class_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else ""


@dataclass
class ImageSet:
    """The training images: uint8 pixels in memory (or paths to stream), plus their class folder."""

    paths: list[Path]
    resolution: int
    channels: int
    pixels: torch.Tensor | None  # (N, C, R, R) uint8, None when streaming
    class_names: list[str]
    labels: torch.Tensor  # (N,) int64 index into class_names
    compression: Compression = LOSSLESS  # how most of the files store the pixels trained on

    def __len__(self) -> int:
        return len(self.paths)

    def describe_classes(self) -> str:
        """For log.txt: the classes and how many images each has (the rare class is the point)."""
        counts = torch.bincount(self.labels, minlength=len(self.class_names)).tolist()
        parts = [f"{name or '(top folder)'} {n}" for name, n in zip(self.class_names, counts, strict=True)]
        return f"{len(self.class_names)} classes, images per class: {', '.join(parts)}"

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, R, R) images at `indices`."""
        if self.pixels is not None:
            return self.pixels[indices]
        arrays = [load_array(self.paths[i], self.resolution, self.channels == 1) for i in indices.tolist()]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _size_error(path: Path, arr: np.ndarray, res: int | None) -> UserError:
    """The one-line error for an image that is not square, or not the size of the others."""
    h, w = arr.shape[:2]
    fix = f"make them square and equal with `isic_dataset.py transform INPUT OUTPUT {min(w, h)} {min(w, h)}`"
    if res is None:
        return UserError(f"{path}: images must be square, this one is {w}x{h}; {fix} or pass --resolution")
    return UserError(f"{path}: is {w}x{h}, the images before it are {res}x{res}; {fix} or pass --resolution")


def load_image_set(root: str | Path, resolution: int | None = None, grayscale: bool = False,
                   max_memory_gb: float = 4.0, progress: bool = True) -> ImageSet:
    """Find the images under `root` (recursively), check their size, decode them once.

    Unreadable files are skipped with a warning naming each. Sub-folders of `root` are classes
    (e.g. benign/ and malignant/); images directly in `root` belong to the class "".
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder")
    paths = find_images(root, required=True)
    res, channels = resolution, 1 if grayscale else 3
    streaming = False
    kept: list[Path] = []
    arrays: list[np.ndarray] = []
    decoded = decode_images(paths, resolution, grayscale)
    for p, arr, error in tqdm(decoded, total=len(paths), desc="decoding images", unit="img",
                              disable=not progress, leave=False):
        if error is not None:
            log.warning("skipped %s", error)
            continue
        if arr.shape[0] != arr.shape[1] or (res is not None and arr.shape[0] != res):
            raise _size_error(p, arr, res)
        res = arr.shape[0]
        kept.append(p)
        if streaming:  # checked like the others (size, readable), decoded again per batch later
            continue
        arrays.append(arr)
        streaming = len(paths) * channels * res * res > max_memory_gb * 2**30
        if streaming:
            arrays.clear()
            log.warning("%d images of %dx%d do not fit in --max-memory-gb %.1f: streaming them from disk",
                        len(paths), res, res, max_memory_gb)
    if not kept:
        raise UserError(f"{root}: none of the images could be read")
    classes = sorted({_class_of(p, root) for p in kept})
    labels = torch.tensor([classes.index(_class_of(p, root)) for p in kept], dtype=torch.int64)
    pixels = None if streaming else torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    assert res is not None
    return ImageSet(kept, res, channels, pixels, classes, labels, common_compression(kept, res))


class BatchOrder:
    """Seeded per-epoch permutations, consumed batch by batch; its state is two integers.

    The global batch crosses epoch boundaries when needed, so every image is seen once per epoch
    even when N is not a multiple of the batch size (or smaller than it).
    """

    def __init__(self, n: int, seed: int, epoch: int = 0, position: int = 0):
        self.n, self.seed, self.epoch, self.position = n, seed, epoch, position
        self._perm = self._permutation(epoch)

    def _permutation(self, epoch: int) -> torch.Tensor:
        seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1, np.uint64)[0] >> 1)
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(seed))

    def next(self, batch_size: int) -> torch.Tensor:
        """The indices of the next global batch."""
        parts, need = [], batch_size
        while need:
            take = min(need, self.n - self.position)
            parts.append(self._perm[self.position:self.position + take])
            self.position += take
            need -= take
            if self.position == self.n:
                self.epoch, self.position = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
        return torch.cat(parts)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "n": self.n, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if int(state.get("n", self.n)) != self.n:  # the folder changed: start a fresh epoch
            log.warning("the training folder now has %d images instead of %d; the batch order restarts "
                        "at a new epoch", self.n, state["n"])
            self.epoch, self.position = self.epoch + 1, 0
        self._perm = self._permutation(self.epoch)
