"""Argument parsing shared by the command-line tools.

Bad flag values end in one line on stderr (``prog: error: ...``) and exit code 2.
Every option is spelled with underscores like the lab (``--max_epochs``) and also accepts
hyphens (``--max-epochs``).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from textsearch.errors import EXIT_USER_ERROR


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR)

    def add_flag(self, name: str, **kwargs: Any) -> argparse.Action:
        names = [f"--{name}"]
        if "_" in name:
            names.append(f"--{name.replace('_', '-')}")
        kwargs.setdefault("dest", name)
        return self.add_argument(*names, **kwargs)


def _number(kind: Callable[[str], Any], label: str, minimum: float | None, strict: bool):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {label}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if minimum is not None and (value <= minimum if strict else value < minimum):
            op = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"must be {op} {minimum:g}, got {text}")
        return value

    parse.__name__ = label
    return parse


def positive_int(text: str) -> int:
    return _number(int, "a positive integer", 0, True)(text)


def nonnegative_int(text: str) -> int:
    return _number(int, "an integer >= 0", 0, False)(text)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An integer type refusing values below ``minimum``."""
    return _number(int, f"an integer >= {minimum}", minimum, False)


def positive_float(text: str) -> float:
    return _number(float, "a positive number", 0, True)(text)


def nonnegative_float(text: str) -> float:
    return _number(float, "a number >= 0", 0, False)(text)


def fraction(text: str) -> float:
    value = _number(float, "a fraction in (0, 1]", 0, True)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], got {text}")
    return value


def nonempty_str(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def folder_name(text: str) -> str:
    """A plain folder name (runs and searches are written under it): no path separators."""
    text = nonempty_str(text)
    if text in (".", "..") or "/" in text or "\\" in text:
        raise argparse.ArgumentTypeError(f"must be a plain folder name, got {text!r}")
    return text


def folder_path(text: str) -> str:
    """A folder on a filesystem (on a cluster, one every node shares), not a URI."""
    text = nonempty_str(text)
    if "://" in text:
        raise argparse.ArgumentTypeError(
            f"must be a folder path (on a cluster: one every node shares, e.g. over NFS), "
            f"not a URI: {text}")
    return text


def port(text: str) -> int:
    value = _number(int, "a port number", 0, True)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (1-65535), got {text}")
    return value
