"""Declaring a config option once: its default, its help text and its valid values.

A config dataclass declares each field with :func:`option`; the command-line flags of
``textsearch.train`` (and ``--set`` in the debug run) are generated from these fields, so
adding a model option means editing its dataclass and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


def option(default: Any, help: str, *, minimum: float | None = None, above: bool = False,
           below: float | None = None, fraction: bool = False, choices: Sequence[Any] | None = None,
           flag_const: Any = None) -> Any:
    """A dataclass field with its help text and what values it takes.

    minimum: smallest allowed value (``above=True``: values must be strictly greater).
    below: values must be strictly smaller than this (a probability below 1).
    fraction: a share in (0, 1]. choices: the allowed values. flag_const: the value the flag
    means when given without one (``--fast_dev_run`` alone is 1).
    """
    meta = {"help": help, "minimum": minimum, "above": above, "below": below, "fraction": fraction,
            "choices": list(choices) if choices is not None else None, "flag_const": flag_const}
    return dataclasses.field(default=default, metadata=meta)


def options_of(config_cls: type) -> list[dataclasses.Field]:
    """The fields of a config dataclass that are options (declared with :func:`option`)."""
    return [f for f in dataclasses.fields(config_cls) if "help" in f.metadata]


def subset(config_cls: type, values: Any) -> Any:
    """``config_cls`` built from the same-named attributes of ``values`` (a wider config)."""
    return config_cls(**{f.name: getattr(values, f.name) for f in dataclasses.fields(config_cls)})
