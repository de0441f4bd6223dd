"""On-disk cache of per-image features, keyed by the image file's content and the parameters.

Features are the slow part of an embedding (decoding and k-means for every image); the plot itself
is cheap. Caching them makes a second plot of the same folders (another method, other labels,
another group of fakes added) near-instant.

Layout: one `.npz` file per feature kind and parameter set (`color-k5-s0.3-seed0-v1.npz`), holding
the content digests of the images and one feature row per digest. One file instead of one per image
keeps a cached run to a single read even for 10,000 images. Writes go through `dcgan.files`
(atomic rename), so a crash or two concurrent runs never leave a corrupt file: at worst the last
writer wins and the other run's new entries are computed again next time.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..files import atomic_path

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/isic-gan`, or `~/.cache/isic-gan` when XDG_CACHE_HOME is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "isic-gan"


def file_digest(path: str | os.PathLike[str]) -> str:
    """BLAKE2b-128 of the file's bytes as hex: a renamed or moved image stays a cache hit."""
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


class FeatureCache:
    """Feature rows by content digest for one feature kind and parameter set.

    `folder=None` disables caching: lookups miss and `save` does nothing, so callers need no
    special case for `--no-cache`. With `row_shape`, a stored row of another shape, or holding a
    NaN or an infinity (a damaged or foreign file), is a miss: it is computed again and replaced.
    """

    def __init__(self, folder: str | os.PathLike[str] | None, namespace: str,
                 row_shape: tuple[int, ...] | None = None) -> None:
        self.path = None if folder is None else Path(folder) / f"{namespace}-v{CACHE_VERSION}.npz"
        self.row_shape = row_shape
        self._rows: dict[str, np.ndarray] = {}
        self._dirty = False
        self.hits = 0
        if self.path is not None and self.path.is_file():
            self._rows = _read(self.path)

    def get(self, digests: Sequence[str]) -> list[np.ndarray | None]:
        """The cached row for each digest, or None where there is none."""
        found = [self._valid(self._rows.get(d)) for d in digests]
        self.hits += sum(f is not None for f in found)
        return found

    def _valid(self, row: np.ndarray | None) -> np.ndarray | None:
        if row is None or (self.row_shape is not None and row.shape != self.row_shape):
            return None
        if row.dtype.kind in "fc" and not np.isfinite(row).all():
            return None
        return row

    def put(self, digests: Sequence[str], rows: np.ndarray | Sequence[np.ndarray]) -> None:
        """Remember one row per digest (written to disk by `save`)."""
        for digest, row in zip(digests, rows, strict=True):
            self._rows[digest] = np.asarray(row)
        self._dirty = self._dirty or len(digests) > 0

    def save(self) -> None:
        """Write the cache file atomically if anything was added."""
        if self.path is None or not self._dirty or not self._rows:
            return
        rows = {k: v for k, v in self._rows.items() if self._valid(v) is not None}  # drop damaged ones
        if not rows:
            return
        keys = np.array(sorted(rows), dtype="S32")
        values = np.stack([rows[k.decode()] for k in keys])
        try:
            with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
                np.savez(f, keys=keys, values=values)
        except OSError:
            # A read-only or full cache folder must not fail the analysis itself.
            return
        self._dirty = False


def _read(path: Path) -> dict[str, np.ndarray]:
    """Load a cache file; a corrupt or foreign file is treated as empty and overwritten later."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys, values = data["keys"], data["values"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return {}
    if len(keys) != len(values) or values.dtype.kind not in "biufc":
        return {}
    return {k.decode(): v for k, v in zip(keys, values, strict=True)}
