"""The README's "A typical session", run as written in a fresh copy of the repository.

A newcomer copies these lines after `make demo` and `source .venv/bin/activate`: `python` is then
the virtual environment's, which is what PATH gives here. Only the sizes are made small, and the
download goes to the fake ISIC server on 127.0.0.1 (`--api-url`), so that the test is fast and
offline; every other word of each command is the README's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.conftest import REPO
from tests.fake_isic import FakeIsicServer

# README text -> what the test runs instead: sizes only.
SMALLER = {"-n 1000": "-n 8", " 20000 64 ": " 2 4 ", "generate ./runs/mel 500 ": "generate ./runs/mel 8 "}


def readme_session() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## A typical session\n+```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no bash block under '## A typical session'"
    return [re.sub(r"\s+#\s.*$", "", line).strip() for line in block.group(1).splitlines() if line.strip()]


def tracked_files(repo: Path) -> list[str]:
    """What git tracks in `repo` (a clone's files); untracked ones, ignored or not, are left out."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached"], cwd=repo, capture_output=True,
                             check=True).stdout.decode()
    return [name for name in listing.split("\0") if name and (repo / name).is_file()]


def fresh_copy(dest: Path, repo: Path = REPO) -> Path:
    """The files a clone would have: the tracked ones, as they are in the working tree (so that a
    change not yet committed is tested), never the outputs of a session run in the checkout."""
    for name in tracked_files(repo):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, dest / name)
    return dest


def written_but_not_ignored(clone: Path, copied: set[str]) -> list[str]:
    """Files the session wrote into `clone` that the repository's .gitignore does not cover."""
    written = sorted(str(p.relative_to(clone)) for p in clone.rglob("*")
                     if p.is_file() and str(p.relative_to(clone)) not in copied)
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO, text=True,
                             input="\n".join(written), capture_output=True).stdout.split("\n")
    return [name for name in written if name not in ignored]


def test_the_copy_holds_only_tracked_files(tmp_path: Path) -> None:
    """A session's leftovers in the checkout (a non-empty fakes/, untracked, not even ignored) stay
    out of the copy: `generate` there would refuse a non-empty fakes/."""
    repo = tmp_path / "checkout"
    (repo / "dcgan").mkdir(parents=True)
    (repo / "dcgan" / "x.py").write_text("x = 1\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "dcgan/x.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    (repo / "dcgan" / "x.py").write_text("x = 2\n")  # changed, not committed: copied as it is now
    (repo / "fakes").mkdir()
    (repo / "fakes" / "seed000000.jpg").write_bytes(b"leftover")
    (repo / "notes.txt").write_text("untracked")
    clone = fresh_copy(tmp_path / "clone", repo)
    assert sorted(str(p.relative_to(clone)) for p in clone.rglob("*") if p.is_file()) == ["dcgan/x.py"]
    assert (clone / "dcgan" / "x.py").read_text() == "x = 2\n"


def test_the_typical_session_runs_as_written(tmp_path: Path) -> None:
    commands = readme_session()
    assert [c.split()[1:3] for c in commands] == [
        ["isic_dataset.py", "download"], ["isic_dataset.py", "transform"], ["gancontrol.py", "training"],
        ["gancontrol.py", "generate"], ["img2dist.py", "embedding"], ["img2dist.py", "quality"]]
    clone = fresh_copy(tmp_path / "clone")
    copied = set(tracked_files(REPO))
    assert not (clone / ".venv").exists() and not (clone / "demo").exists()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1",
           # what `source .venv/bin/activate` does: the environment's python first on PATH
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "VIRTUAL_ENV": sys.prefix}
    with FakeIsicServer(n_images=120, seed=1) as fake:
        for command in commands:
            run = command
            for long, short in SMALLER.items():
                run = run.replace(long, short)
            if " download " in run:
                run += f" --api-url {fake.api_url}"
            out = subprocess.run(["bash", "-c", run], cwd=clone, env=env, capture_output=True, text=True,
                                 timeout=600)
            assert out.returncode == 0, f"{command}\n{out.stdout}\n{out.stderr}"
            assert "Traceback" not in out.stderr, out.stderr
    reals = sorted(p for p in (clone / "data").iterdir() if p.suffix in (".jpg", ".png"))
    assert len(reals) == 8 and all(Image.open(p).size == (64, 64) for p in reals)
    assert (clone / "runs" / "mel" / "checkpoint.pt").is_file()
    # stored like the training images: `transform` wrote JPEGs at the size trained on
    assert len(list((clone / "fakes").glob("seed*.jpg"))) == 8
    assert (clone / "map.png").is_file() and (clone / "quality.json").is_file()
    # run in a checkout, the session leaves nothing that `git status` or the next copy would pick up
    assert written_but_not_ignored(clone, copied) == []
