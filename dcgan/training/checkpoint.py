"""Checkpoints: one file with everything a run needs to continue bit for bit.

A checkpoint holds G, D, the EMA generator, both optimizers, the step, every RNG state (torch,
numpy, python, the latent generator, the batch order) and the options. It is written under a
temporary name and renamed, and read with `torch.load(weights_only=True)`: only tensors and plain
containers are unpickled, so a checkpoint file can never execute code.
"""

from __future__ import annotations

import pickle
import random
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import UserError
from ..files import TEMP_PREFIX, atomic_path
from .runlog import read_stats

if TYPE_CHECKING:
    from ..spec import RunSpec

FORMAT = "isic-gan-checkpoint"
VERSION = 1
LATEST = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    """Torch, numpy and python RNG states in a form `weights_only` loading accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` (plus format tag and version) atomically and durably (fsync, rename, fsync).

    torch.save gets an open file, not a path: given a path, a full disk surfaces as torch's
    RuntimeError "unexpected pos"; through a Python file it is the OSError that `atomic_path` turns
    into one line ("disk full while writing ..."), leaving the previous checkpoint in place.
    """
    with atomic_path(path, durable=True) as tmp, open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, f)


def holds_run(run_dir: str | Path) -> bool:
    """True when `run_dir` holds a run worth keeping: a checkpoint, or trained steps in stats.jsonl.

    Anything less (the options, a log, the step-0 grid of a start that failed or was killed early)
    is no loss, so a new `training` may clear it without --overwrite.
    """
    run_dir = Path(run_dir)
    # checkpoint.pt, best.pt, checkpoint-NNNNNNN.pt; not the temporary file of one killed mid-write
    if any(not p.name.startswith(TEMP_PREFIX) for p in run_dir.glob("*.pt")):
        return True
    return any("step" in r for r in read_stats(run_dir))


def no_checkpoint_yet(run_dir: str | Path) -> str | None:
    """The message for a run folder stopped before its first checkpoint (options.json but no
    checkpoint.pt), else None: it cannot be resumed, only started again (with --overwrite when
    steps were logged, which a new run must not silently delete)."""
    from ..options import OPTIONS_FILE
    from ..spec import RunSpec

    run_dir = Path(run_dir)
    if (run_dir / LATEST).exists() or not (run_dir / OPTIONS_FILE).is_file():
        return None
    try:
        first = f"before step {RunSpec.load(run_dir).options.checkpoint_every}"
    except UserError:
        first = "before its first checkpoint"
    again = ("with --overwrite" if holds_run(run_dir)
             else "with `gancontrol.py training` (it trained no step, so no --overwrite is needed)")
    return f"{run_dir}: no checkpoint yet (the run stopped {first}); start it again {again}"


# What every checkpoint holds, and of which type (checked before anything is built from it).
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "step": int, "options": dict, "resolution": int, "channels": int, "G": dict, "D": dict,
    "opt_g": dict, "opt_d": dict, "rng": dict, "latent_rng": torch.Tensor, "batch_order": dict,
}


def _load_error(err: BaseException) -> str:
    """What went wrong, in a few words; never torch's advice to retry with weights_only=False."""
    text = str(err)
    for line in text.splitlines():
        if "Unsupported global: GLOBAL " in line:
            name = line.split("GLOBAL ", 1)[1].split()[0]
            return f"it holds a Python object ({name}), not only tensors"
    if "weights_only" in text or isinstance(err, pickle.UnpicklingError):
        return "not a torch tensor file"
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return first.split(". This is an internal")[0][:160]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; a missing, foreign or damaged file is a one-line `UserError`.

    `path` may be a checkpoint file or a run folder (its latest checkpoint). Beyond the format tag,
    the keys, their types and every weight's shape (against the models its options describe) are
    checked, so a damaged file is named here rather than failing later inside PyTorch.
    """
    path = Path(path)
    if path.is_dir():
        folder, path, why = path, path / LATEST, no_checkpoint_yet(path)
        if why:
            raise UserError(why)
        if not path.is_file():
            raise UserError(f"{folder}: no training run here (no {LATEST}); start one with "
                            f"`gancontrol.py training TRAINING_IMAGES STEPS BATCH_SIZE {folder}`")
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as err:
        raise UserError(f"{path}: not a gancontrol checkpoint, or damaged ({_load_error(err)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not a gancontrol checkpoint (a torch file of another kind)")
    if not isinstance(ckpt.get("version"), int) or ckpt["version"] > VERSION:
        raise UserError(f"{path}: written by a newer version of this toolkit (format {ckpt.get('version')})")
    check_contents(ckpt, path)
    return ckpt


def check_contents(ckpt: dict[str, Any], path: str | Path) -> None:
    """Every required key of the right type, and weights of the shapes the stored options give."""
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise UserError(f"{path}: damaged checkpoint, missing {', '.join(missing)}")
    wrong = [f"{k} ({type(ckpt[k]).__name__})" for k, kind in REQUIRED.items()
             if not isinstance(ckpt[k], kind) or isinstance(ckpt[k], bool)]
    if wrong:
        raise UserError(f"{path}: damaged checkpoint, wrong type of {', '.join(wrong)}")
    from ..spec import RunSpec

    G, D = _models(RunSpec.from_checkpoint(ckpt, f"{path} options"), path)
    for name, model in (("G", G), ("D", D), ("G_ema", G)):
        state = ckpt.get(name)
        if state is None and name == "G_ema":
            continue
        if not isinstance(state, dict):
            raise UserError(f"{path}: damaged checkpoint, {name} is not a set of weights")
        _check_shapes(model.state_dict(), state, f"{path}: {name}")
    for name, model in (("opt_g", G), ("opt_d", D)):
        _check_optimizer(ckpt[name], model, f"{path}: {name}")


def _models(spec: RunSpec, path: str | Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """G and D as the spec describes them, on the meta device (shapes only, no memory, no init)."""
    from ..architectures import build_models

    try:
        with torch.device("meta"):
            G, D = build_models(spec)
    except (UserError, ValueError, RuntimeError, KeyError) as err:
        raise UserError(f"{path}: damaged checkpoint, its options describe no model ({err})") from None
    return G, D


def _check_shapes(want: dict[str, torch.Tensor], got: dict[str, Any], what: str) -> None:
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    if missing or extra:
        detail = (f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(extra[:3])}")
        raise UserError(f"{what} weights do not fit the model its options describe ({detail})")
    for k, v in want.items():
        if not torch.is_tensor(got[k]) or got[k].shape != v.shape:
            shape = tuple(got[k].shape) if torch.is_tensor(got[k]) else type(got[k]).__name__
            raise UserError(f"{what} weight {k} has shape {shape}, the model needs {tuple(v.shape)}")


def _check_optimizer(state: dict[str, Any], model: torch.nn.Module, what: str) -> None:
    """Adam moments of the parameters' shapes (torch checks only the counts, and fails later)."""
    params = list(model.parameters())
    per_param = state.get("state")
    if not isinstance(per_param, dict) or not isinstance(state.get("param_groups"), list):
        raise UserError(f"{what}: damaged optimizer state")
    for index, moments in per_param.items():
        if not isinstance(index, int) or not 0 <= index < len(params) or not isinstance(moments, dict):
            raise UserError(f"{what}: optimizer state for parameter {index!r}, the model has {len(params)}")
        for key in ("exp_avg", "exp_avg_sq"):
            value = moments.get(key)
            if value is not None and (not torch.is_tensor(value) or value.shape != params[index].shape):
                shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
                raise UserError(f"{what}: {key} of parameter {index} has shape {shape}, "
                                f"the parameter {tuple(params[index].shape)}")
