"""Argument parsing shared by the command-line tools.

Bad flag values end in one line on stderr (``prog: error: ...``) and exit code 2.
Every option is spelled with underscores like the lab (``--max_epochs``) and also accepts
hyphens (``--max-epochs``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import typing
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from textsearch.config import TrainConfig
from textsearch.errors import say_error
from textsearch.options import options_of


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise SystemExit(say_error(self.prog, message))

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


def number_below(upper: float) -> Callable[[str], float]:
    """A number in ``[0, upper)`` (a probability or share that must stay below ``upper``)."""
    at_least_zero = _number(float, f"a number in [0, {upper:g})", 0, False)

    def parse(text: str) -> float:
        value = at_least_zero(text)
        if value >= upper:
            raise argparse.ArgumentTypeError(f"must be < {upper:g}, got {text}")
        return value

    parse.__name__ = at_least_zero.__name__
    return parse


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


# -- flags from the declared options (textsearch.options) ------------------------------------
def flag_type(f: dataclasses.Field, typ: type):
    """The argparse type of an option, from its Python type and declared range."""
    m = f.metadata
    if m["fraction"]:
        return fraction
    if typ is int:
        if m["above"]:
            return positive_int
        if m["minimum"] is None:
            return int
        return nonnegative_int if m["minimum"] == 0 else int_at_least(int(m["minimum"]))
    if typ is float and m.get("below") is not None and m["minimum"] == 0:
        return number_below(m["below"])
    if typ is float:
        return positive_float if m["above"] else nonnegative_float if m["minimum"] == 0 else float
    return nonempty_str


def add_config_flags(parser: Any,
                     config_cls: type = TrainConfig, names: Iterable[str] | None = None,
                     defaults: Any = None, unset: bool = False, suppress: bool = False,
                     help_suffix: str = "") -> None:
    """On ``parser`` (a parser or an argument group), one flag per option of ``config_cls`` (TrainConfig or one of its parts), or of those
    in ``names``: type, range, choices and help text as the option declares them.

    ``defaults``: a config whose values are the flags' defaults (None: the declared ones);
    ``unset``: every default is None (the caller takes its own where a flag is absent);
    ``suppress``: absent flags stay out of the namespace; ``help_suffix``: added to each help.
    """
    types = typing.get_type_hints(config_cls)
    fields = options_of(config_cls)
    if names is not None:
        wanted = list(names)
        fields = sorted((f for f in fields if f.name in wanted), key=lambda f: wanted.index(f.name))
    for f in fields:
        name, typ, m = f.name, types[f.name], f.metadata
        if suppress:
            default = argparse.SUPPRESS
        elif unset:
            default = None
        else:
            default = getattr(defaults, name) if defaults is not None else f.default
        names_ = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        common = {"dest": name, "default": default, "help": m["help"] + help_suffix}
        if typ is bool:
            parser.add_argument(*names_, action=argparse.BooleanOptionalAction, **common)
        elif m["flag_const"] is not None:
            parser.add_argument(*names_, type=flag_type(f, typ), nargs="?",
                                const=m["flag_const"], metavar="N", **common)
        else:
            parser.add_argument(*names_, type=flag_type(f, typ), choices=m["choices"],
                                metavar=name.upper() if not m["choices"] else None, **common)


def given_options(prog: str, argv: list[str] | None, config_cls: type = TrainConfig) -> set[str]:
    """The options of ``config_cls`` spelled out on the command line ``argv``."""
    probe = Parser(prog=prog, add_help=False)
    add_config_flags(probe, config_cls, suppress=True)
    known, _ = probe.parse_known_args(argv)
    return set(vars(known))


# Lightning's package loggers, and the ones its info lines ("GPU available", tips) are logged
# through: importing Lightning sets its package loggers back to INFO, so a command that
# imports it later (the search's driver, to test the best checkpoint) keeps quiet only
# through the rank_zero loggers, whose level the import leaves alone.
LIBRARY_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric",
                   "pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")


def quiet_library_logs() -> None:
    """A command's output is its own: Lightning's info lines (devices found, model summary
    hints) are not shown, its warnings are, whether Lightning is imported before this call or
    after it.  Called by the commands, not on import."""
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
