"""DataModules: EMNIST, MNIST, EMNIST Lines."""

from textsearch.config import DATA_NAMES
from textsearch.data.base import BaseDataModule, DataBundle, DataConfig
from textsearch.data.emnist import EMNIST
from textsearch.data.emnist_lines import EMNISTLines, LinesConfig
from textsearch.data.mnist import MNIST

DATA_CLASSES = {"EMNIST": EMNIST, "MNIST": MNIST, "EMNISTLines": EMNISTLines}
assert tuple(DATA_CLASSES) == DATA_NAMES

__all__ = ["BaseDataModule", "DATA_CLASSES", "DataBundle", "DataConfig", "EMNIST", "EMNISTLines",
           "LinesConfig", "MNIST"]
