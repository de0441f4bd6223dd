"""Atomic file writes: a reader (or a crash, or Ctrl-C) never sees a half-written file.

Every file the toolkit writes goes through `atomic_path`: the content is written under a temporary
name in the same folder and renamed onto the final name only once complete (rename is atomic on
POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".partial-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    The temporary file keeps the final suffix so that libraries that pick a format from the
    extension (Pillow, matplotlib, torch) still do the right thing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def remove_partials(folder: str | os.PathLike[str]) -> int:
    """Delete temporary files left by a killed process (SIGKILL skips cleanup); return the count."""
    count = 0
    for p in Path(folder).glob(TEMP_PREFIX + "*"):
        if p.is_file():
            p.unlink(missing_ok=True)
            count += 1
    return count
