"""MNIST through torchvision's downloader: offline, the error says what to put where."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from textsearch.data import MNIST
from textsearch.errors import UserError


def test_offline_mnist_is_one_clear_error(fresh_root, monkeypatch):
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    with pytest.raises(UserError) as err:
        MNIST().prepare_data()
    msg = str(err.value)
    assert "cannot get MNIST" in msg and str(fresh_root / "downloaded" / "MNIST" / "raw") in msg


def test_mnist_files_placed_by_hand_are_used(fresh_root, monkeypatch):
    raw = fresh_root / "downloaded" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 300), ("t10k", 100)):
        x = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr, magic in (("images-idx3", x, 2051), ("labels-idx1", y, 2049)):
            # torchvision reads the unpacked files; it unpacks .gz files itself when needed
            data = struct.pack(f">I{arr.ndim}I", magic, *arr.shape) + arr.tobytes()
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(data)
            with gzip.open(raw / f"{prefix}-{kind}-ubyte.gz", "wb") as f:
                f.write(data)
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    dm = MNIST()
    b = dm.get_bundle()
    assert b.x_trainval.shape == (300, 28, 28) and b.output_dims == (10,)
    dm.setup()
    assert len(dm.data_test) == 100
