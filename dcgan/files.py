"""Atomic file writes and folder locks: a reader, a crash or Ctrl-C never sees a half-written file.

Every file the toolkit writes goes through `atomic_path`: the content is written under a temporary
name in the same folder and renamed onto the final name only once complete (rename is atomic on
POSIX within one file system). `folder_lock` keeps two processes from working in one folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UserError

TEMP_PREFIX = ".partial-"
LOCK_NAME = ".lock"


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once at import, before any worker thread exists.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()


class DiskFullError(UserError, OSError):
    """No space left while writing a file: one line naming the file. Still an OSError, so that
    callers that tolerate a failed write (a cache) go on tolerating it."""


def is_disk_full(err: OSError) -> bool:
    """ENOSPC, or a quota's EDQUOT: the two ways a write finds no room."""
    return err.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def disk_full_names(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn ENOSPC (or a quota's EDQUOT) in the block into a `DiskFullError` naming `path`."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as err:
        if not is_disk_full(err):
            raise
        full = DiskFullError(f"disk full while writing {path}; nothing was half-written")
        full.errno = err.errno
        raise full from None


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries to disk, so that a rename survives a power loss."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    The temporary file keeps the final suffix so that libraries that pick a format from the
    extension (Pillow, matplotlib, torch) still do the right thing. The result gets the mode a
    plain `open()` would give (mkstemp's 0600 would hide it from colleagues and web servers).
    `durable` fsyncs the file before and the folder after the rename (checkpoints, ledgers), so
    that a power loss leaves the old or the new file, never an empty one.
    """
    path = Path(path)
    with disk_full_names(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with disk_full_names(path):
            yield tmp_path
            os.chmod(tmp_path, _FILE_MODE)
            if durable:
                with open(tmp_path, "rb+") as f:
                    os.fsync(f.fileno())
            os.replace(tmp_path, path)
            if durable:
                fsync_folder(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = False) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str, *, durable: bool = False) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"), durable=durable)


def write_json(path: str | os.PathLike[str], obj: Any, *, durable: bool = False) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", durable=durable)


def copy_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, durable: bool = False) -> None:
    """Copy `src` to `dst` atomically (a kill mid-copy leaves no truncated `dst`)."""
    with atomic_path(dst, durable=durable) as tmp:
        shutil.copyfile(src, tmp)


def remove_partials(folder: str | os.PathLike[str]) -> int:
    """Delete temporary files left by a killed process (SIGKILL skips cleanup), in the folder and
    its subfolders; return the count."""
    count = 0
    for p in Path(folder).rglob(TEMP_PREFIX + "*"):
        if p.is_file():
            p.unlink(missing_ok=True)
            count += 1
    return count


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], what: str = "run") -> Iterator[Path]:
    """Hold an exclusive lock on `folder` (its `.lock` file) for the block, or refuse at once.

    The lock is an flock on `.lock`, which the kernel releases when its holder dies however it
    dies, so a stale lock of a killed process is simply taken over; the file holds the holder's
    pid only to name it in the error. The folder is created if missing.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise UserError(
                f"{folder} is in use by another {what} (pid {holder}, lock {lock_path}); "
                "wait for it to finish or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield lock_path
    finally:
        os.close(fd)  # closing releases the flock
