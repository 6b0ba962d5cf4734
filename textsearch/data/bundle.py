"""A dataset in memory: plain numpy arrays, no torch.

Each dataset module (:mod:`~textsearch.data.emnist`, :mod:`~textsearch.data.mnist`,
:mod:`~textsearch.data.emnist_lines`) prepares its data (download, checksum, cache) and
loads it as a :class:`DataBundle` without importing torch or Lightning, so a search's
driver gets the data ready while its trial processes are still importing them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DataBundle:
    """Everything a DataModule needs in memory, as plain numpy arrays.

    A bundle is what the search puts into Ray's object store once: numpy arrays come back
    from it zero-copy, so concurrent trials share one copy of the images.
    """

    x_trainval: np.ndarray  # (N, H, W) uint8
    y_trainval: np.ndarray  # (N,) or (N, L) int64
    x_test: np.ndarray
    y_test: np.ndarray
    mapping: list[str]
    input_dims: tuple[int, ...]  # per example, channel first, e.g. (1, 28, 28)
    output_dims: tuple[int, ...]  # (num_classes,) or (max_length,)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.x_trainval, self.y_trainval, self.x_test, self.y_test))
