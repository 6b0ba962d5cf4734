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

from textsearch.config import DATA_NAMES, DataConfig
from textsearch.data.bundle import DataBundle

if TYPE_CHECKING:
    from textsearch.config import TrainConfig

# each dataset's module, which prepares and loads it (and is its python -m command)
MODULES = {"EMNIST": "emnist", "MNIST": "mnist", "EMNISTLines": "emnist_lines"}
assert tuple(MODULES) == DATA_NAMES
# what loads on first use: the DataModules (Lightning) and LinesConfig
LAZY = {"BaseDataModule": "base", **{n: "modules" for n in DATA_NAMES},
        "LinesConfig": "emnist_lines"}

__all__ = ["BaseDataModule", "DATA_CLASSES", "DataBundle", "DataConfig", "EMNIST", "EMNISTLines",
           "LinesConfig", "MNIST", "load_bundle"]


def load_bundle(cfg: TrainConfig) -> DataBundle:
    """The data a run's config names, prepared (downloaded, checked, cached) and in memory,
    the same arrays its DataModule loads; torch and Lightning are not imported (MNIST's
    downloader, torchvision, aside)."""
    source = importlib.import_module(f"textsearch.data.{MODULES[cfg.data_class]}")
    if cfg.data_class == "EMNIST":
        return source.load_bundle(cfg.balance)
    if cfg.data_class == "EMNISTLines":
        return source.load_bundle(cfg.lines_config())
    return source.load_bundle()


def __getattr__(name: str) -> Any:
    if name == "DATA_CLASSES":
        return {n: __getattr__(n) for n in DATA_NAMES}
    if name in LAZY:
        return getattr(importlib.import_module(f"textsearch.data.{LAZY[name]}"), name)
    raise AttributeError(f"module 'textsearch.data' has no attribute {name!r}")
