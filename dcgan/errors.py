"""The one exception type that the CLIs turn into a one-line error message.

Package code raises `UserError` for anything a user can fix (a bad path, a wrong option, an
unreadable file); the CLIs print its message without a traceback and exit with status 1.
"""

from __future__ import annotations

import sys
import typing


class UserError(Exception):
    """A problem with the user's input, reported as one line, never as a traceback."""


# Top-level import names of requirements.txt: a ModuleNotFoundError for one of these means the
# toolkit was started by a Python without its set-up, not a bug.
DEPENDENCIES = frozenset({"torch", "torchvision", "PIL", "numpy", "scipy", "sklearn", "threadpoolctl",
                          "matplotlib", "click", "requests", "urllib3", "Augmentor", "tqdm", "yaml", "piqa"})


def missing_dependency(err: ModuleNotFoundError) -> str | None:
    """The one line telling how to set up when `err` is a missing dependency, else None (a bug)."""
    name = (err.name or "").split(".")[0]
    if name not in DEPENDENCIES:
        return None
    return (f"this Python ({sys.executable}) lacks {name}, which the toolkit needs: run `make install`, "
            "then `source .venv/bin/activate` (or start the tools with .venv/bin/python)")


def exit_on_missing_dependency(err: ModuleNotFoundError) -> typing.NoReturn:
    """For a CLI's top-level imports: exit with the one-line set-up hint, or re-raise a real bug."""
    hint = missing_dependency(err)
    if hint is None:
        raise err
    raise SystemExit(f"Error: {hint}")
