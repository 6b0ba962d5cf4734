"""MNIST digits through torchvision's downloader (MD5-checked), kept as uint8 arrays.

``python -m textsearch.data.mnist`` prepares the data and prints a summary.
"""

from __future__ import annotations

import socket

import numpy as np
from torchvision.datasets import MNIST as TorchvisionMNIST

from textsearch.data.base import BaseDataModule, DataBundle, summary_main
from textsearch.data.util import DOWNLOAD_TIMEOUT_S
from textsearch.errors import UserError
from textsearch.paths import data_root


def _root() -> str:
    return str(data_root() / "downloaded")


def _dataset(train: bool) -> TorchvisionMNIST:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return TorchvisionMNIST(_root(), train=train, download=True)
    except (RuntimeError, OSError) as err:
        folder = data_root() / "downloaded" / "MNIST" / "raw"
        raise UserError(
            f"cannot get MNIST ({err}). Without network access, put train-images-idx3-ubyte.gz, "
            f"train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
            f"into {folder}/"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


class MNIST(BaseDataModule):
    """MNIST handwritten digits, 28x28, 10 classes."""

    name = "MNIST"

    def download_and_cache(self) -> DataBundle:
        """torchvision reads both splits whenever it checks them: the arrays are kept."""
        return self.load()

    def load(self) -> DataBundle:
        train, test = _dataset(train=True), _dataset(train=False)
        return DataBundle(
            x_trainval=train.data.numpy(), y_trainval=train.targets.numpy().astype(np.uint8),
            x_test=test.data.numpy(), y_test=test.targets.numpy().astype(np.uint8),
            mapping=[str(i) for i in range(10)], input_dims=(1, 28, 28), output_dims=(10,),
        )


if __name__ == "__main__":
    raise SystemExit(summary_main(MNIST))
