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


def fresh_copy(dest: Path) -> Path:
    """The files a clone would have: tracked and not-ignored ones (no .venv, demo/, caches)."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO, capture_output=True, check=True).stdout.decode()
    for name in filter(None, listing.split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def test_the_typical_session_runs_as_written(tmp_path: Path) -> None:
    commands = readme_session()
    assert [c.split()[1:3] for c in commands] == [
        ["isic_dataset.py", "download"], ["isic_dataset.py", "transform"], ["gancontrol.py", "training"],
        ["gancontrol.py", "generate"], ["img2dist.py", "embedding"], ["img2dist.py", "quality"]]
    clone = fresh_copy(tmp_path / "clone")
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
