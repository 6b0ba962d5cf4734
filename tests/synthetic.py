"""Tiny synthetic EMNIST: learnable images written exactly as NIST's IDX files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

# NIST's ByClass mapping: label -> ASCII code of digits, upper case, lower case.
BYCLASS_CODES = [*range(48, 58), *range(65, 91), *range(97, 123)]
NUM_CLASSES = 10  # the synthetic images use labels 0..9 (the digits)


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Upright 28x28 uint8 images: class k is a bright bar at a class-specific place + noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % NUM_CLASSES
    rng.shuffle(y)
    x = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, k in enumerate(y):
        r, c = 3 + (k // 5) * 12, 2 + (k % 5) * 5
        x[i, r : r + 9, c : c + 4] = 200 + rng.integers(0, 55)
    return x, y.astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 2051 if array.ndim == 3 else 2049
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_emnist(folder: Path, n_train: int = 600, n_test: int = 200) -> dict[str, np.ndarray]:
    """Write NIST-layout files (images transposed, as NIST stores them) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        x, y = make_images(n, seed)
        write_idx(folder / f"emnist-byclass-{split}-images-idx3-ubyte.gz", x.transpose(0, 2, 1))
        write_idx(folder / f"emnist-byclass-{split}-labels-idx1-ubyte.gz", y)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    (folder / "emnist-byclass-mapping.txt").write_text(
        "".join(f"{i} {code}\n" for i, code in enumerate(BYCLASS_CODES)))
    return arrays
