"""Datasets: EMNIST, MNIST, EMNIST Lines.

Each dataset module prepares its data (download, checksum, cache) and loads it as a
:class:`DataBundle` of numpy arrays without importing torch or Lightning
(:func:`load_bundle`); :mod:`textsearch.data.modules` serves those arrays to Lightning.
The DataModule classes load on first use (PEP 562), so importing this package stays cheap
and ``python -m textsearch.data.emnist`` runs its module once, as ``__main__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from textsearch.config import DATA_NAMES, DataConfig, LinesConfig
from textsearch.data.bundle import DataBundle

if TYPE_CHECKING:
    from textsearch.config import TrainConfig

# each dataset's module, which prepares and loads it (and is its python -m command)
MODULES = {"EMNIST": "emnist", "MNIST": "mnist", "EMNISTLines": "emnist_lines"}
assert tuple(MODULES) == DATA_NAMES
# what loads on first use: the DataModules (Lightning)
LAZY = {"BaseDataModule": "base", **{n: "modules" for n in DATA_NAMES}}

__all__ = ["BaseDataModule", "DATA_CLASSES", "DataBundle", "DataConfig", "EMNIST", "EMNISTLines",
           "LinesConfig", "MNIST", "load_bundle"]


def load_dataset(name: str, *args: Any) -> DataBundle:
    """Dataset ``name`` (``EMNIST``, ``MNIST``, ``EMNISTLines``) prepared (downloaded,
    checked, cached) and in memory: its module's ``load_bundle(*args)``, the module imported
    now (the DataModules call this too, so no dataset module imports them)."""
    return importlib.import_module(f"textsearch.data.{MODULES[name]}").load_bundle(*args)


def load_bundle(cfg: TrainConfig) -> DataBundle:
    """The data a run's config names, in memory, the same arrays its DataModule loads;
    neither torch nor Lightning is imported."""
    if cfg.data_class == "EMNIST":
        return load_dataset("EMNIST", cfg.balance)
    if cfg.data_class == "EMNISTLines":
        return load_dataset("EMNISTLines", cfg.lines_config())
    return load_dataset("MNIST")


def __getattr__(name: str) -> Any:
    if name == "DATA_CLASSES":
        return {n: __getattr__(n) for n in DATA_NAMES}
    if name in LAZY:
        return getattr(importlib.import_module(f"textsearch.data.{LAZY[name]}"), name)
    raise AttributeError(f"module 'textsearch.data' has no attribute {name!r}")
