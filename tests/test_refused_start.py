"""A refused `training` run never blocks the corrected command (issue 31, point 1).

Each row is one way a start fails before its first checkpoint: the bad command exits with its code
and one `Error:` line, leaves no folder (or an empty one the next run accepts), `resume` says there
is no run to continue, and the corrected command then trains in the same OUTPUT_DIR, without
--overwrite. A folder that holds a real run (a checkpoint, or logged steps) is still refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dcgan.training.checkpoint import load_checkpoint
from gancontrol import cli
from tests.conftest import TRAINING_DATA, make_image

TINY = ["--z-dim", "8", "--g-channels", "4", "--d-channels", "4", "--grid-size", "4", "--quiet", "--preset",
        "classic"]  # no EMA to calibrate: a corrected run takes about a second


@dataclass
class Case:
    """A failing start: `bad` and `fixed` get (the test's folders, OUTPUT_DIR) and give the arguments."""

    bad: Callable[[dict[str, Path], Path], list[object]]
    code: int
    message: str  # in the one `Error:` line
    fixed: Callable[[dict[str, Path], Path], list[object]] = field(
        default=lambda d, out: ["training", d["good"], 1, 4, out, *TINY])


def start(data: Path, out: Path, *extra: object) -> list[object]:
    return ["training", data, 1, 4, out, *TINY, *extra]


def control_file(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


CASES = {
    "resolution not 4 or 5 times a power of two": Case(
        lambda d, out: start(d["good"], out, "--resolution", 100), 1,
        "--resolution 100: must be 4 or 5 times a power of two"),
    "images of a size the models cannot take": Case(
        lambda d, out: start(d["size100"], out), 1, "image size 100: must be 4 or 5 times a power of two",
        lambda d, out: start(d["size100"], out, "--resolution", 16)),
    "resolution below the range": Case(
        lambda d, out: start(d["good"], out, "--resolution", 8), 2, "--resolution"),
    "images not square": Case(lambda d, out: start(d["oblong"], out), 1, "must be square"),
    "images of two sizes": Case(
        lambda d, out: start(d["mixed"], out), 1, "the images before it are",
        lambda d, out: start(d["mixed"], out, "--resolution", 16)),
    "too few images for --eval-every": Case(
        lambda d, out: start(d["three"], out, "--eval-every", 1), 1, "needs at least 4 training images",
        lambda d, out: start(d["three"], out)),
    "no such data folder": Case(
        lambda d, out: start(d["good"].with_name("missing"), out), 1, "no such folder"),
    "empty data folder": Case(lambda d, out: start(d["empty"], out), 1, "no images found"),
    "no readable image": Case(lambda d, out: start(d["broken"], out), 1, "none of the images could be read"),
    "data folder is a file": Case(lambda d, out: start(d["good"] / "i0.png", out), 2, "is a file"),
    "--conditional without class folders": Case(
        lambda d, out: start(d["good"], out, "--conditional"), 1,
        "--conditional needs one subfolder per class"),
    "batch size 0": Case(lambda d, out: ["training", d["good"], 1, 0, out, *TINY], 2, "is not a batch size"),
    "OUTPUT_DIR inside the images": Case(
        lambda d, out: start(out.parent, out), 1, "must not be inside TRAINING_IMAGES"),
    "control file missing": Case(
        lambda d, out: start(d["good"], out, "--config", d["yaml"] / "none.yaml"), 1, "no such control file"),
    "control file not YAML": Case(
        lambda d, out: start(d["good"], out, "--config", control_file(d["yaml"], "bad.yaml", "loss: [")),
        1, "not valid YAML"),
    "control file with an unknown key": Case(
        lambda d, out: start(d["good"], out, "--config", control_file(d["yaml"], "key.yaml", "los: bce")),
        1, "unknown option(s) los"),
    "control file with a wrong type": Case(
        lambda d, out: start(d["good"], out, "--config", control_file(d["yaml"], "type.yaml", "z-dim: many")),
        1, "z-dim must be a whole number"),
    "control file with a bad value": Case(
        lambda d, out: start(d["good"], out, "--config",
                             control_file(d["yaml"], "value.yaml", "loss: ragen")),
        1, "'ragen'"),
    # After the folder was made: a loss that overflows before anything was logged or checkpointed.
    "non-finite loss before the first checkpoint": Case(
        lambda d, out: ["training", TRAINING_DATA, 20, 8, out, *TINY, "--resolution", 16, "--loss", "wgan",
                        "--lr-d", "1e12", "--precision", "fp32", "--log-every", 100,
                        "--checkpoint-every", 100],
        1, " became "),
}
if not torch.cuda.is_available():
    CASES["--device cuda without a GPU"] = Case(
        lambda d, out: start(d["good"], out, "--device", "cuda"), 1, "no CUDA GPU")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    names = ("good", "size100", "oblong", "mixed", "three", "empty", "broken", "yaml")
    d = {name: root / name for name in names}
    for i in range(4):
        make_image(d["good"] / f"i{i}.png", (16, 16), seed=i)
        make_image(d["size100"] / f"i{i}.png", (100, 100), seed=i)
        make_image(d["mixed"] / f"i{i}.png", (16, 16) if i < 2 else (32, 32), seed=i)
    for i in range(3):
        make_image(d["three"] / f"i{i}.png", (16, 16), seed=i)
    make_image(d["oblong"] / "i0.png", (20, 16))
    (d["broken"] / "x.jpg").parent.mkdir()
    (d["broken"] / "x.jpg").write_bytes(b"\xff\xd8\xff not a JPEG")
    d["empty"].mkdir()
    d["yaml"].mkdir()
    return d


def invoke(args: list[object]) -> tuple[int, list[str], str]:
    """Exit code, the `Error:` lines, and the whole output of one gancontrol.py command."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.exit_code, [line for line in result.output.splitlines() if "Error" in line], result.output


# An OUTPUT_DIR made beforehand (empty) for the errors found before, while and after the images load.
PREMADE = ("resolution not 4 or 5 times a power of two", "images of a size the models cannot take",
           "non-finite loss before the first checkpoint")


@pytest.mark.parametrize(("name", "premade"), [(name, False) for name in sorted(CASES)] +
                         [(name, True) for name in PREMADE])
def test_a_refused_start_leaves_nothing_that_blocks_the_corrected_command(
        name: str, premade: bool, folders: dict[str, Path], tmp_path: Path) -> None:
    case = CASES[name]
    out = tmp_path / "runs" / "x1"
    if premade:
        out.mkdir(parents=True)
    code, errors, output = invoke(case.bad(folders, out))
    assert code == case.code, output
    assert len(errors) == 1 and errors[0].startswith("Error: ") and case.message in errors[0], output
    # No folder, or the folder as it was: empty (the lock file of the refused run aside).
    assert (not out.exists()) if not premade else {p.name for p in out.iterdir()} <= {".lock"}

    code, errors, output = invoke(["resume", out, "--quiet"])
    assert code == (1 if premade else 2) and len(errors) == 1, output
    assert ("does not exist" if not premade else f"{out}: no training run here") in errors[0], output

    code, _, output = invoke(case.fixed(folders, out))
    assert code == 0, output
    assert load_checkpoint(out)["step"] == case.fixed(folders, out)[2]


def files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}


def test_a_folder_holding_a_real_run_is_still_refused(folders: dict[str, Path], tmp_path: Path) -> None:
    """A checkpoint, or logged steps without one, are not cleared by a start without --overwrite."""
    trained = tmp_path / "trained"
    assert invoke(start(folders["good"], trained, "--log-every", 1))[0] == 0
    logged = tmp_path / "logged"
    logged.mkdir()
    for name in ("options.json", "stats.jsonl", "log.txt"):
        (logged / name).write_bytes((trained / name).read_bytes())
    for out, message in ((trained, "not empty; continue that run with `gancontrol.py resume"),
                         (logged, "no checkpoint yet (the run stopped before step 1); start it again with "
                                  "--overwrite")):
        before = files(out)
        for args in (start(folders["good"], out, "--resolution", 100), start(folders["good"], out)):
            code, errors, output = invoke(args)
            assert code == 1 and len(errors) == 1, output
        assert message in errors[0], errors[0]
        assert files(out) == before


def test_leftovers_of_a_start_that_trained_no_step_are_cleared(folders: dict[str, Path],
                                                               tmp_path: Path) -> None:
    """A start killed before its first logged step (or refused by an older version) left its own
    files only: `resume` says to start again, and the same command does, without --overwrite."""
    out = tmp_path / "run"
    assert invoke(start(folders["good"], out))[0] == 0
    (out / "checkpoint.pt").unlink()
    (out / "stats.jsonl").write_text("")
    (out / "samples" / ".partial-x.png").write_bytes(b"")
    (out / ".partial-y.pt").write_bytes(b"")  # the first checkpoint, killed mid-write
    code, errors, _ = invoke(["resume", out])
    assert code == 1 and "start it again with `gancontrol.py training` (it trained no step" in errors[0]
    code, _, output = invoke(start(folders["good"], out))
    assert code == 0, output
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_0000000.png", "step_0000001.png"]
    (out / "mine.txt").write_text("the user's")  # not ours: the folder is refused as before
    (out / "checkpoint.pt").unlink()
    (out / "stats.jsonl").write_text("")
    code, errors, _ = invoke(start(folders["good"], out))
    assert code == 1 and "start it again with --overwrite" not in errors[0] and "not empty" in errors[0]
