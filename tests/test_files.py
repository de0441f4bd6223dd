"""Atomic writes give ordinary file modes; partials are found in subfolders; folder locks refuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dcgan.errors import UserError
from dcgan.files import (
    TEMP_PREFIX,
    copy_file,
    folder_lock,
    remove_partials,
    write_bytes,
    write_text,
)


def test_atomic_write_gets_the_mode_of_a_plain_open(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    write_text(tmp_path / "atomic.txt", "x")
    write_bytes(tmp_path / "durable.bin", b"x", durable=True)
    want = plain.stat().st_mode & 0o777
    assert want & 0o044, "test needs a umask that lets others read"
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == want
    assert (tmp_path / "durable.bin").stat().st_mode & 0o777 == want


def test_copy_file_is_atomic_and_exact(tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(3 << 20))
    copy_file(src, tmp_path / "b.bin", durable=True)
    assert (tmp_path / "b.bin").read_bytes() == src.read_bytes()
    assert not list(tmp_path.glob(TEMP_PREFIX + "*"))


def test_remove_partials_looks_in_subfolders(tmp_path: Path) -> None:
    (tmp_path / "samples").mkdir()
    (tmp_path / f"{TEMP_PREFIX}1.pt").write_bytes(b"x")
    (tmp_path / "samples" / f"{TEMP_PREFIX}2.png").write_bytes(b"x")
    (tmp_path / "samples" / "keep.png").write_bytes(b"x")
    assert remove_partials(tmp_path) == 2
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["keep.png"]


def test_folder_lock_refuses_a_second_holder_and_names_the_pid(tmp_path: Path) -> None:
    code = (
        "import sys, time; from dcgan.files import folder_lock\n"
        "with folder_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with (
            pytest.raises(UserError, match=rf"in use by another download \(pid {child.pid}"),
            folder_lock(tmp_path, "download"),
        ):
            pass
    finally:
        child.kill()
        child.wait()
    # The holder died without cleaning up: its stale lock is taken over.
    with folder_lock(tmp_path) as lock:
        assert lock.read_text().strip() == str(os.getpid())
