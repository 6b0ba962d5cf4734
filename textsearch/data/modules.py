"""The LightningDataModules: each dataset's arrays (:mod:`textsearch.data.emnist`,
:mod:`~textsearch.data.mnist`, :mod:`~textsearch.data.emnist_lines`) served in batches."""

from __future__ import annotations

import numpy as np

from textsearch.data import emnist, emnist_lines, mnist
from textsearch.data.base import BaseDataModule, DataConfig
from textsearch.data.bundle import DataBundle
from textsearch.data.emnist_lines import LinesConfig


class EMNIST(BaseDataModule):
    """EMNIST ByClass characters, 28x28, classes = the lab's 83-token mapping.

    balance: cap every class at the mean class count (the lab's balancing), in the
    training file and the test file alike; off by default (NIST's natural class mix).
    """

    name = "EMNIST"

    def __init__(self, config: DataConfig | None = None, bundle: DataBundle | None = None,
                 balance: bool = False):
        super().__init__(config, bundle)
        self.balance = balance

    def download_and_cache(self) -> DataBundle:
        """Checking the cache reads all of it (its CRC32s cover every byte): the arrays are kept."""
        return self.load()

    def load(self) -> DataBundle:
        return emnist.load_bundle(self.balance)


class MNIST(BaseDataModule):
    """MNIST handwritten digits, 28x28, 10 classes."""

    name = "MNIST"

    def download_and_cache(self) -> DataBundle:
        """torchvision reads both splits whenever it checks them: the arrays are kept."""
        return self.load()

    def load(self) -> DataBundle:
        return mnist.load_bundle()


class EMNISTLines(BaseDataModule):
    """Lines of EMNIST characters; targets are token sequences of length ``max_length``."""

    name = "EMNISTLines"

    def __init__(self, config: DataConfig | None = None, bundle: DataBundle | None = None,
                 lines: LinesConfig | None = None):
        super().__init__(config, bundle)
        self.lines = lines or LinesConfig()
        self.lines.validate()

    def download_and_cache(self) -> DataBundle:
        """Generating or checking the lines, then reading them: the arrays are kept."""
        return self.load()

    def load(self) -> DataBundle:
        return emnist_lines.load_bundle(self.lines)

    def split_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """The first ``num_train`` lines train, the next ``num_val`` validate."""
        train = np.arange(self.lines.num_train)
        val = np.arange(self.lines.num_train, self.lines.num_train + self.lines.num_val)
        if self.config.data_fraction < 1.0:
            train = train[: max(1, int(round(len(train) * self.config.data_fraction)))]
        return train, val
