"""The LightningDataModules: each dataset's arrays (:mod:`textsearch.data.emnist`,
:mod:`~textsearch.data.mnist`, :mod:`~textsearch.data.emnist_lines`) served in batches."""

from __future__ import annotations

import numpy as np

from textsearch.config import DataConfig, LinesConfig
from textsearch.data import load_dataset
from textsearch.data.base import BaseDataModule
from textsearch.data.bundle import DataBundle


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

    def load(self) -> DataBundle:
        """Checking the cache reads all of it (its CRC32s cover every byte): one read."""
        return load_dataset("EMNIST", self.balance)


class MNIST(BaseDataModule):
    """MNIST handwritten digits, 28x28, 10 classes."""

    name = "MNIST"

    def load(self) -> DataBundle:
        return load_dataset("MNIST")


class EMNISTLines(BaseDataModule):
    """Lines of EMNIST characters; targets are token sequences of length ``max_length``."""

    name = "EMNISTLines"

    def __init__(self, config: DataConfig | None = None, bundle: DataBundle | None = None,
                 lines: LinesConfig | None = None):
        super().__init__(config, bundle)
        self.lines = lines or LinesConfig()
        self.lines.validate()

    def load(self) -> DataBundle:
        """Generating or checking the lines, then reading them."""
        return load_dataset("EMNISTLines", self.lines)

    def split_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """The first ``num_train_lines`` lines train, the next ``num_val_lines`` validate."""
        n_train, n_val = self.lines.num_train_lines, self.lines.num_val_lines
        train, val = np.arange(n_train), np.arange(n_train, n_train + n_val)
        if self.config.data_fraction < 1.0:
            train = train[: max(1, int(round(len(train) * self.config.data_fraction)))]
        return train, val
