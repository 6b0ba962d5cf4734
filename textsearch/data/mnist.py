"""MNIST digits through torchvision's downloader (MD5-checked), kept as uint8 arrays.

torchvision (and with it torch) is imported when the data is loaded, not with this module.
``python -m textsearch.data.mnist`` prepares the data and prints a summary.
"""

from __future__ import annotations

import socket

import numpy as np

from textsearch.data.bundle import DataBundle
from textsearch.data.util import DOWNLOAD_TIMEOUT_S
from textsearch.errors import UserError
from textsearch.paths import data_root


def _root() -> str:
    return str(data_root() / "downloaded")


def _dataset(train: bool):
    """torchvision's MNIST split (imported here: torchvision loads torch)."""
    from torchvision.datasets import MNIST as TorchvisionMNIST

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


def load_bundle() -> DataBundle:
    """MNIST handwritten digits in memory, 28x28, 10 classes (downloaded first if needed)."""
    train, test = _dataset(train=True), _dataset(train=False)
    return DataBundle(
        x_trainval=train.data.numpy(), y_trainval=train.targets.numpy().astype(np.uint8),
        x_test=test.data.numpy(), y_test=test.targets.numpy().astype(np.uint8),
        mapping=[str(i) for i in range(10)], input_dims=(1, 28, 28), output_dims=(10,),
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m textsearch.data.mnist``: prepare the data and print its summary."""
    from textsearch.data.base import summary_main
    from textsearch.data.modules import MNIST

    return summary_main(MNIST, argv)


if __name__ == "__main__":
    raise SystemExit(main())
