"""DataModules: EMNIST, MNIST, EMNIST Lines.

The DataModule classes load on first use (PEP 562), so ``python -m textsearch.data.emnist``
runs its module once, as ``__main__``, and not a second time through this package.
"""

from __future__ import annotations

import importlib
from typing import Any

from textsearch.config import DATA_NAMES
from textsearch.data.base import BaseDataModule, DataBundle, DataConfig

MODULES = {"EMNIST": "emnist", "MNIST": "mnist", "EMNISTLines": "emnist_lines",
           "LinesConfig": "emnist_lines"}
assert tuple(n for n in MODULES if n != "LinesConfig") == DATA_NAMES

__all__ = ["BaseDataModule", "DATA_CLASSES", "DataBundle", "DataConfig", "EMNIST", "EMNISTLines",
           "LinesConfig", "MNIST"]


def __getattr__(name: str) -> Any:
    if name == "DATA_CLASSES":
        return {n: __getattr__(n) for n in DATA_NAMES}
    if name in MODULES:
        return getattr(importlib.import_module(f"textsearch.data.{MODULES[name]}"), name)
    raise AttributeError(f"module 'textsearch.data' has no attribute {name!r}")
