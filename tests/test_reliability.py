"""What survives a kill, a full disk and a second process: real subprocesses, real signals, real tmpfs.

The kill and disk-full tests run gancontrol.py as a separate process on a tiny run (8 noise images of
16 px, batches of 4), so each takes seconds. Disk-full tests mount a small tmpfs (they need root or
CAP_SYS_ADMIN and are skipped with the reason otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from dcgan.files import TEMP_PREFIX
from dcgan.training.checkpoint import load_checkpoint
from gancontrol import cli
from tests.conftest import REPO, make_image

TINY = ["--z-dim", "8", "--g-channels", "4", "--d-channels", "4", "--grid-size", "4", "--quiet",
        "--log-every", "1", "--sample-every", "5"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def noise_images(folder: Path, size: int) -> Path:
    for i in range(8):
        make_image(folder / f"img{i}.png", (size, size), seed=i)
    return folder


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return noise_images(tmp_path / "data", 16)


def gancontrol(*args: object) -> list[str]:
    return [sys.executable, str(REPO / "gancontrol.py"), *(str(a) for a in args)]


def run_cli(*args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(gancontrol(*args), cwd=REPO, capture_output=True, text=True, env=ENV, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one `Error:` line of a failed run, and nothing that looks like a traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "rror" in line]  # besides progress bars
    assert len(errors) == 1 and errors[0].startswith("Error: "), result.stderr
    return errors[0]


def partials(folder: Path) -> list[Path]:
    return list(folder.rglob(TEMP_PREFIX + "*"))


def last_step(run_dir: Path) -> int:
    try:
        lines = (run_dir / "stats.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return -1
    steps = [-1]
    for line in lines:
        with contextlib.suppress(ValueError, KeyError):  # a torn last line
            steps.append(json.loads(line)["step"])
    return max(steps)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(run_dir)
    flat = {f"{part}.{k}": v for part in ("G", "D", "G_ema") for k, v in (ckpt[part] or {}).items()}
    for part in ("opt_g", "opt_d"):
        for pid, st in ckpt[part]["state"].items():
            flat.update({f"{part}.{pid}.{k}": v for k, v in st.items() if torch.is_tensor(v)})
    return flat


# --------------------------------------------------------------------------------------------------
# SIGKILL at random moments: resume each time, end bit-identical to an uninterrupted run


def test_eight_random_kills_resume_to_the_same_weights(tmp_path: Path, data: Path) -> None:
    steps, kills = 40, 8
    # A grid every 2 steps (TINY says 5), so that kills land mid-grid as often as mid-checkpoint.
    every = ["--checkpoint-every", 1, "--sample-every", 2]
    run_cli("training", data, steps, 4, tmp_path / "whole", *TINY, *every)
    run_dir, rng = tmp_path / "killed", random.Random(15)
    targets = sorted(rng.sample(range(1, steps - 2), kills))
    args = ["training", data, steps, 4, run_dir, *TINY, *every]
    killed_at = []
    for target in targets:
        proc = subprocess.Popen(gancontrol(*args), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=ENV)
        deadline = time.time() + 120
        # Each start makes progress of its own before its kill: a target already passed by an
        # earlier start would otherwise kill this one during start-up, at the same step again.
        # The first start must have a checkpoint before its kill, or there is nothing to resume
        # (a loaded machine can be that slow between step 1's stats line and its checkpoint).
        floor = last_step(run_dir) + 1
        while ((last_step(run_dir) < max(target, floor) or not (run_dir / "checkpoint.pt").exists())
               and proc.poll() is None):
            assert time.time() < deadline, "no progress"
            time.sleep(0.01)
        # Anywhere in the next step or two (mid-checkpoint, mid-grid, mid-update): tiny steps take
        # a few milliseconds on an idle machine, so a longer wait would overrun the whole run.
        time.sleep(rng.uniform(0, 0.02))
        proc.kill()
        proc.wait()
        assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        killed_at.append(last_step(run_dir))
        args = ["resume", run_dir, "--quiet"]  # every later start continues from the last checkpoint
    run_cli("resume", run_dir, "--quiet")
    assert len(set(killed_at)) >= 4, killed_at  # the kills did land at different moments
    a, b = weights(tmp_path / "whole"), weights(run_dir)
    assert a.keys() == b.keys() and len(a) > 20
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert load_checkpoint(run_dir)["step"] == steps
    assert partials(run_dir) == []


# --------------------------------------------------------------------------------------------------
# Run-folder lock, and a run killed before its first checkpoint


def _start_long_run(data: Path, run_dir: Path, *extra: object) -> subprocess.Popen[str]:
    proc = subprocess.Popen(gancontrol("training", data, 100000, 4, run_dir, *TINY, *extra), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 120
    while last_step(run_dir) < 2:
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    return proc


def test_a_second_process_on_a_run_folder_is_refused_at_once(tmp_path: Path, data: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _start_long_run(data, run_dir, "--checkpoint-every", 1)
    try:
        while not (run_dir / "checkpoint.pt").exists():
            time.sleep(0.05)
        for args in (["resume", run_dir, "--quiet"],
                     ["training", data, 10, 4, run_dir, *TINY, "--overwrite"]):
            start = time.time()
            msg = one_error_line(run_cli(*args, check=False))
            assert f"in use by another training run (pid {proc.pid}" in msg, msg
            assert time.time() - start < 60
            assert (run_dir / "checkpoint.pt").is_file() and (run_dir / "options.json").is_file()
        assert proc.poll() is None  # the first run goes on
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    assert proc.returncode == 143
    step = load_checkpoint(run_dir)["step"]
    # The lock of a finished (or killed) run is no obstacle; --overwrite keeps the lock file.
    run_cli("training", data, 2, 4, run_dir, *TINY, "--overwrite")
    assert load_checkpoint(run_dir)["step"] == 2 and step >= 2
    assert (run_dir / ".lock").is_file()


def test_killed_before_the_first_checkpoint_says_start_again(tmp_path: Path, data: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _start_long_run(data, run_dir, "--checkpoint-every", 5000)
    proc.kill()
    proc.communicate()
    assert not (run_dir / "checkpoint.pt").exists()
    want = f"{run_dir}: no checkpoint yet (the run stopped before step 5000); start it again with --overwrite"
    assert one_error_line(run_cli("resume", run_dir, check=False)) == f"Error: {want}"
    assert one_error_line(run_cli("training", data, 4, 4, run_dir, *TINY, check=False)) == f"Error: {want}"
    run_cli("training", data, 2, 4, run_dir, *TINY, "--overwrite")
    assert load_checkpoint(run_dir)["step"] == 2


# --------------------------------------------------------------------------------------------------
# Ctrl-C says at once what it does; a second one stops at once


class StderrLines:
    """A process's stderr read line by line in a thread, each line with when it came."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        assert proc.stderr is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append((time.time(), line.rstrip("\n")))

    def wait_for(self, text: str, proc: subprocess.Popen[str], timeout: float = 120) -> float:
        """When the first line holding `text` came (waiting for it)."""
        deadline = time.time() + timeout
        while True:
            found = [t for t, line in self.lines if text in line]
            if found:
                return found[0]
            assert time.time() < deadline and (proc.poll() is None or self._thread.is_alive()), self.text()
            time.sleep(0.005)

    def text(self) -> str:
        self._thread.join(timeout=60)
        return "\n".join(line for _, line in self.lines)


NOTICE = "Ctrl-C: the run stops after the current step and writes a checkpoint"
# Steps of a few tenths of a second, and a checkpoint of as much (the EMA generator's statistics
# are recomputed for it): a second Ctrl-C sent once the notice is read lands before the stop is done.
SLOW = ["--z-dim", "32", "--g-channels", "32", "--d-channels", "32", "--grid-size", "4", "--quiet",
        "--log-every", "1", "--preset", "small-data"]


@pytest.fixture
def data_64(tmp_path: Path) -> Path:
    return noise_images(tmp_path / "data64", 64)


def _until_stepping(run_dir: Path, *args: object) -> tuple[subprocess.Popen[str], StderrLines]:
    """Start gancontrol.py with `args` and wait until `run_dir` logged step 4."""
    proc = subprocess.Popen(gancontrol(*args), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=ENV)
    err = StderrLines(proc)
    deadline = time.time() + 120
    while last_step(run_dir) < 4:
        assert time.time() < deadline and proc.poll() is None, err.text()
        time.sleep(0.02)
    return proc, err


def test_ctrl_c_says_at_once_that_the_run_stops_after_the_step(tmp_path: Path, data_64: Path) -> None:
    run_dir = tmp_path / "run"
    proc, err = _until_stepping(run_dir, "training", data_64, 100000, 8, run_dir, *SLOW,
                                "--checkpoint-every", 100000)
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    noticed = err.wait_for(NOTICE, proc)
    stopped = err.wait_for("Stopped by SIGINT at step", proc)
    proc.wait(timeout=120)
    text = err.text()
    assert proc.returncode == 130 and "Traceback" not in text, text
    assert sent <= noticed < stopped  # from the handler, before the step and its checkpoint are done
    assert "Ctrl-C again stops at once without a checkpoint" in text
    step = load_checkpoint(run_dir)["step"]
    assert f"Stopped by SIGINT at step {step}; checkpoint written" in text and step > 4


def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(tmp_path: Path, data_64: Path) -> None:
    run_dir = tmp_path / "run"
    run_cli("training", data_64, 2, 8, run_dir, *SLOW, "--checkpoint-every", 100000)
    proc, err = _until_stepping(run_dir, "resume", run_dir, "--steps", 100000, "--quiet")
    proc.send_signal(signal.SIGINT)
    err.wait_for(NOTICE, proc)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    text = err.text()
    assert proc.returncode == 130 and "Traceback" not in text, text
    assert "Interrupted." in text and "Stopped by SIGINT" not in text
    assert load_checkpoint(run_dir)["step"] == 2  # the last checkpoint, untouched
    assert partials(run_dir) == []
    run_cli("resume", run_dir, "--steps", 3, "--quiet")  # and the run continues from it
    assert load_checkpoint(run_dir)["step"] == 3


# --------------------------------------------------------------------------------------------------
# Damaged checkpoints are named, never torch's advice


def _error(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_checkpoints_with_missing_keys_or_wrong_shapes_are_named(tmp_path: Path, data: Path) -> None:
    run_dir = tmp_path / "run"
    assert CliRunner().invoke(cli, ["training", str(data), "1", "4", str(run_dir), *TINY]).exit_code == 0
    good = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    bad = tmp_path / "bad.pt"

    def refused(ckpt: dict, *wanted: str) -> None:
        torch.save(ckpt, bad)
        msg = _error("generate", bad, 1, tmp_path / "g")
        assert str(bad) in msg and all(w in msg for w in wanted), msg

    refused({k: v for k, v in good.items() if k not in ("options", "G")}, "missing", "options, G")
    refused({**good, "step": "3"}, "wrong type of step")
    last = [k for k, v in good["G"].items() if v.ndim == 4][-1]
    refused({**good, "G": {**good["G"], last: torch.zeros(2, 2)}}, f"G weight {last} has shape (2, 2)")
    last_d = [k for k, v in good["D"].items() if v.ndim == 4][-1]
    refused({**good, "D": {k: v for k, v in good["D"].items() if k != last_d}}, "D weights do not fit",
            f"missing {last_d}")
    moments = {i: dict(st) for i, st in good["opt_d"]["state"].items()}
    moments[0]["exp_avg"] = torch.zeros(7)
    refused({**good, "opt_d": {**good["opt_d"], "state": moments}}, "opt_d", "exp_avg", "shape (7,)")
    # resume reads the same checks
    torch.save({**good, "G_ema": {**good["G_ema"], last: torch.zeros(1)}}, run_dir / "checkpoint.pt")
    assert "G_ema weight" in _error("resume", run_dir, "--steps", 3)


def test_a_foreign_torch_file_never_shows_the_weights_only_advice(tmp_path: Path) -> None:
    module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), module)
    msg = _error("generate", module, 1, tmp_path / "g")
    assert "weights_only" not in msg and "torch.nn.modules.linear.Linear" in msg, msg
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x04 not a checkpoint at all")
    msg = _error("generate", junk, 1, tmp_path / "g")
    assert "weights_only" not in msg and "not a gancontrol checkpoint" in msg, msg


# --------------------------------------------------------------------------------------------------
# Disk full (a small tmpfs)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill ({result.stderr.strip() or 'mount failed'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill `disk` up to `leave` free bytes with one file; returns it (delete it to free the space)."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(small_disk: Path, data: Path) -> None:
    run_dir = small_disk / "run"
    args = [*TINY, "--checkpoint-every", 1, "--sample-every", 1000]
    run_cli("training", data, 2, 4, run_dir, *args)
    size = (run_dir / "checkpoint.pt").stat().st_size
    filler = fill(small_disk, size // 2)  # room for the small files, not for a checkpoint
    msg = one_error_line(run_cli("resume", run_dir, "--steps", 4, "--quiet", check=False))
    assert msg.startswith(f"Error: disk full while writing {run_dir / 'checkpoint.pt'}"), msg
    assert "previous checkpoint is kept" in msg
    assert partials(run_dir) == []
    assert load_checkpoint(run_dir)["step"] == 2
    filler.unlink()
    run_cli("resume", run_dir, "--steps", 4, "--quiet")
    assert load_checkpoint(run_dir)["step"] == 4


def test_disk_full_during_a_sample_grid(small_disk: Path, data: Path) -> None:
    run_dir = small_disk / "run"
    run_dir.mkdir()
    filler = fill(small_disk, 24 * 1024)  # options.json and log.txt fit, a 64-image grid of noise does not
    result = run_cli("training", data, 2, 4, run_dir, *TINY, "--grid-size", 64, check=False)
    msg = one_error_line(result)
    assert msg == (f"Error: disk full while writing {run_dir / 'samples' / 'step_0000000.png'}; "
                   "nothing was half-written"), msg
    assert partials(run_dir) == []
    # The failed start took its files away again: the same command runs once there is room.
    assert [p.name for p in run_dir.iterdir()] == [".lock"]
    filler.unlink()
    run_cli("training", data, 2, 4, run_dir, *TINY, "--grid-size", 64)
    assert load_checkpoint(run_dir)["step"] == 2


def test_disk_full_during_transform(small_disk: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(6):
        make_image(src / f"img{i}.png", (256, 256), seed=i)
    out = small_disk / "out"
    fill(small_disk, 300 * 1024)  # two or three 256 px noise PNGs of ~190 KB
    result = subprocess.run([sys.executable, str(REPO / "isic_dataset.py"), "transform", str(src), str(out),
                             "256", "256"], cwd=REPO, capture_output=True, text=True, env=ENV, timeout=300)
    msg = one_error_line(result)
    assert msg.startswith(f"Error: disk full while writing {out}/img"), msg
    assert partials(out) == []
    from PIL import Image

    for written in out.glob("*.png"):  # whatever was written is whole
        Image.open(written).load()


def test_disk_full_during_a_download(small_disk: Path) -> None:
    from PIL import Image

    from tests.fake_isic import FakeIsicServer

    out = small_disk / "orig"
    with FakeIsicServer(n_images=30) as server:
        fill(small_disk, 12 * 1024)  # room for a few ~2 KB images and their records, not for 30
        result = subprocess.run([sys.executable, str(REPO / "isic_dataset.py"), "download", str(out),
                                 "-n", "30", "--api-url", server.api_url], cwd=REPO, capture_output=True,
                                text=True, env=ENV, timeout=300)
    msg = one_error_line(result)
    assert msg.startswith("Error: disk full while writing") and str(out) in msg, msg
    assert partials(out) == []
    kept = sorted(out.glob("ISIC_*"))
    assert len(kept) < 30
    for written in kept:  # whatever was kept is whole
        Image.open(written).load()
    ledger = out / ".download-state.json"
    if ledger.exists():  # every file the ledger vouches for is on disk with its recorded size
        for entry in json.loads(ledger.read_text())["files"].values():
            assert (out / entry["file"]).stat().st_size == entry["size"]


# --------------------------------------------------------------------------------------------------
# Outputs others can read: the mode a plain open() gives under the user's umask


def test_a_full_quota_reads_as_a_full_disk_everywhere(tmp_path: Path) -> None:
    # EDQUOT (a user's quota, common on clusters) is the same situation as ENOSPC: every place
    # that names a full disk says so for both, and lets other errors through.
    import errno

    from dcgan.data.isic import _disk_error
    from dcgan.files import DiskFullError, disk_full_names

    for code in (errno.ENOSPC, errno.EDQUOT):
        with pytest.raises(DiskFullError, match=r"disk full while writing x\.png"), disk_full_names("x.png"):
            raise OSError(code, os.strerror(code))
        message = str(_disk_error(OSError(code, os.strerror(code)), tmp_path))
        assert message == f"disk full while writing into {tmp_path}"
    with pytest.raises(PermissionError), disk_full_names("x.png"):
        raise PermissionError(errno.EACCES, "denied")
    assert "disk full" not in str(_disk_error(OSError(errno.EACCES, "denied"), tmp_path))


def test_outputs_get_the_mode_of_a_plain_open(tmp_path: Path, data: Path) -> None:
    """Every file of a run folder, a transformed folder and a turing site: 0666 & ~umask (here 002,
    so a group-shared folder works: neither mkstemp's 0600 nor a fixed 0644 would pass)."""
    env = {**ENV}
    umask = 0o002

    def child(*cmd: object) -> None:
        result = subprocess.run([str(c) for c in cmd], cwd=REPO, capture_output=True, text=True, env=env,
                                timeout=300, preexec_fn=lambda: os.umask(umask))
        assert result.returncode == 0, result.stderr

    run_dir, moved, study = tmp_path / "run", tmp_path / "moved", tmp_path / "study"
    child(*gancontrol("training", data, 2, 4, run_dir, *TINY, "--keep-checkpoints", "--checkpoint-every", 1))
    child(sys.executable, REPO / "isic_dataset.py", "transform", data, moved, 16, 16, "--workers", 1)
    child(sys.executable, REPO / "img2dist.py", "turing", data, run_dir / "samples", study, "-n", "4",
          "--seed", "1")
    files = [p for folder in (run_dir, moved, study) for p in folder.rglob("*") if p.is_file()]
    names = {p.relative_to(tmp_path).as_posix() for p in files}
    assert {"run/checkpoint.pt", "run/checkpoint-0000002.pt", "run/options.json", "run/log.txt",
            "run/stats.jsonl", "run/loss_curve.png", "run/samples/step_0000002.png", "run/.lock",
            "moved/img0.png", "study/key.json", "study/README.txt", "study/site/items.js",
            "study/site/index.html"} <= names, names
    assert any(n.startswith("study/site/images/") for n in names)
    want = 0o666 & ~umask
    wrong = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in files
             if p.stat().st_mode & 0o777 != want}
    assert wrong == {}
