"""User-facing errors and the CLI convention for them.

A :class:`UserError` is something the user can fix (a bad flag, missing data, an impossible
architecture).  CLIs print it as one line on stderr and exit with code 2; every other
exception is a bug in textsearch and keeps its traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

EXIT_USER_ERROR = 2

F = TypeVar("F", bound=Callable[..., int])


class UserError(Exception):
    """An error caused by input the user controls; the message says what to do."""


class TrialGPUError(UserError):
    """A trial holds a GPU share but cannot train on that GPU (a misconfigured node)."""


def say_error(prog: str, message: object) -> int:
    """A user error as the commands show it: ``prog: error: message`` on stderr; returns
    the exit code that goes with it (2)."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return EXIT_USER_ERROR


def cli_entry(main: F) -> F:
    """Wrap a CLI ``main`` so user errors become one line on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except UserError as err:
            module = main.__module__
            if module == "__main__":  # run as ``python -m textsearch.NAME``
                module = Path(sys.argv[0]).stem
            return say_error(f"textsearch.{module.rsplit('.', 1)[-1]}", err)

    return wrapper  # type: ignore[return-value]


def exit_now(code: int) -> NoReturn:
    """End a finished command at once, without the interpreter's teardown.

    Tearing down torch, torchvision and Lightning takes 1-2 s after the last line is printed,
    and nothing needs it: by then the commands have closed their files (logs, TensorBoard
    writers, the study's journal) and shut Ray down.  Logging and the standard streams are
    flushed here.  ``os._exit`` is Python's documented way to leave without teardown (the
    atexit handlers are skipped too; Python offers no public call that runs them alone).
    For the commands' ``__main__`` only; ``main()`` called from Python returns as usual.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
