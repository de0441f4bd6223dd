"""Shared plumbing for the three click CLIs: one-line errors instead of tracebacks."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from .errors import UserError, missing_dependency
from .files import is_disk_full, write_json
from .options import is_device_name

F = TypeVar("F", bound=Callable[..., Any])


class _Notes(logging.Handler):
    """The package's warnings (e.g. a skipped folder of augmented copies) as one line each on stderr,
    for commands that set up no log of their own (training's runlog shows and keeps them itself)."""

    def emit(self, record: logging.LogRecord) -> None:
        if os.environ.get("RANK", "0") != "0":  # under torchrun: once per run, not once per process
            return
        if not any(getattr(h, "console", False) for h in logging.getLogger("dcgan").handlers):
            click.echo(record.getMessage(), err=True)


def tell_torchrun(message: str) -> None:
    """Under torchrun, hand the one-line error to its report of the failed processes, which else
    says only "To enable traceback see ..." (and nothing at all for a rank it stopped first).

    The file is the one torchrun names in TORCHELASTIC_ERROR_FILE, in the format of its
    ErrorHandler; that class's own `record_exception` would put our traceback there instead.
    """
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        write_json(path, {"message": {"message": f"UserError: {message}", "extraInfo": {
            "py_callstack": f"Error: {message}", "timestamp": str(int(time.time()))}}})


def user_errors(func: F) -> F:
    """Turn `UserError` into click's one-line `Error: ...` and Ctrl-C into exit status 130;
    show the package's warnings on stderr. Under torchrun every rank exits with status 1 and no
    traceback, rank 0 prints the line, and torchrun's report of the failed ranks repeats it."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        notes = _Notes(logging.WARNING)
        logger = logging.getLogger("dcgan")
        logger.addHandler(notes)
        try:
            return func(*args, **kwargs)
        except UserError as err:
            tell_torchrun(str(err))
            if os.environ.get("RANK", "0") != "0":  # under torchrun every rank fails alike: say it once
                sys.exit(1)
            raise click.ClickException(str(err)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except ModuleNotFoundError as err:  # a command's own imports, under a Python without the set-up
            if (hint := missing_dependency(err)) is None:
                raise
            raise click.ClickException(hint) from None
        except OSError as err:
            if is_disk_full(err):
                raise click.ClickException(f"disk full while writing {err.filename or ''}".strip()) from None
            raise
        finally:
            logger.removeHandler(notes)

    return wrapper  # type: ignore[return-value]


def leave(done: SystemExit) -> NoReturn:
    """End the command with `done`'s status; a torchrun worker skips the interpreter's teardown.

    After a run, gloo's worker threads may still hold the last reference to the tensors of a
    finished collective (a barrier keeps the broadcasts before it); a thread that frees them once
    the interpreter has begun to tear down cannot take the GIL and aborts the process ("terminate
    called without an active exception", pytorch/pytorch#179291), which turns a finished run into
    a failed one for torchrun and SLURM. Every file is already written and closed by then (atomic
    writes, the run's lock released), so the worker flushes its output and exits at once.
    """
    ddp = sys.modules.get("dcgan.training.distributed")  # loaded only by a command that trains
    if ddp is None or not ddp.joined_a_group:
        raise done
    code = done.code
    if code is not None and not isinstance(code, int):  # sys.exit("message"): Python prints it, status 1
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing more to say
            stream.flush()
    os._exit(code or 0)


class DeviceName(click.ParamType):
    """--device auto | cpu | cuda | cuda:N. A Choice cannot list every GPU index, and a multi-GPU
    machine's user picks one by number."""

    name = "auto|cpu|cuda|cuda:N"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[auto|cpu|cuda|cuda:N]"  # click would print the name upper-cased

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if is_device_name(text):
            return text
        self.fail(f"{value!r}: choose auto, cpu, cuda or cuda:N (N a GPU's number, e.g. cuda:1)", param, ctx)


def comma_list(value: str | None) -> list[str]:
    """Split `a,b , c` into ['a', 'b', 'c']; None or '' gives []."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]
