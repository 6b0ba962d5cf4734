"""EMNIST ingest, cache and DataModule on tiny synthetic NIST-layout files."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.synthetic import NUM_CLASSES, write_emnist
from textsearch.data import EMNIST, emnist
from textsearch.data.base import DataConfig
from textsearch.data.emnist import NUM_SPECIAL_TOKENS
from textsearch.errors import UserError


def test_ingest_turns_images_upright_and_shifts_labels(fresh_root):
    arrays = write_emnist(fresh_root / "downloaded" / "emnist")
    dm = EMNIST(DataConfig(batch_size=32), balance=False)
    b = dm.get_bundle()
    np.testing.assert_array_equal(b.x_trainval, arrays["x_train"])  # upright again
    np.testing.assert_array_equal(b.y_trainval, arrays["y_train"] + NUM_SPECIAL_TOKENS)
    assert b.mapping[:4] == ["<B>", "<S>", "<E>", "<P>"]
    assert b.mapping[4:14] == list("0123456789")
    assert b.mapping[14] == "A" and b.mapping[40] == "a"
    assert len(b.mapping) == 4 + 62 + 17 and b.output_dims == (83,)
    assert b.input_dims == (1, 28, 28)


def test_balancing_caps_classes_at_the_mean(fresh_root):
    folder = fresh_root / "downloaded" / "emnist"
    write_emnist(folder)
    # labels written by hand: class 0 six times as frequent as each of classes 1-9
    x = emnist.read_idx(folder / emnist.RAW_FILES["x_train"])
    assert len(x) == 600
    y = np.array([0] * 240 + [c for c in range(1, 10) for _ in range(40)], dtype=np.uint8)
    from tests.synthetic import write_idx

    write_idx(folder / emnist.RAW_FILES["y_train"], y)
    yt = np.array([0] * 83 + [c for c in range(1, 10) for _ in range(13)], dtype=np.uint8)
    assert len(yt) == len(emnist.read_idx(folder / emnist.RAW_FILES["y_test"]))
    write_idx(folder / emnist.RAW_FILES["y_test"], yt)
    full = EMNIST(balance=False).get_bundle()
    balanced = EMNIST(balance=True).get_bundle()
    # the mean class is 600 / 10 = 60 images: class 0 is cut from 240 to 60, the others
    # (40 each, under the mean) are kept whole
    counts = np.bincount(balanced.y_trainval - NUM_SPECIAL_TOKENS)
    assert counts.tolist() == [60] + [40] * 9
    assert len(full.y_trainval) == 600
    # the test split is balanced alike (mean 200 / 10 = 20): validation and test share a mix
    test_counts = np.bincount(balanced.y_test - NUM_SPECIAL_TOKENS)
    assert test_counts.tolist() == [20] + [13] * 9
    share = lambda labels: np.bincount(labels - NUM_SPECIAL_TOKENS, minlength=10) / len(labels)  # noqa: E731
    assert abs(share(balanced.y_trainval)[0] - share(balanced.y_test)[0]) < 0.01  # was 0.4 and 0.415
    assert np.abs(share(balanced.y_trainval) - share(balanced.y_test)).max() < 0.05
    # the default is NIST's natural mix, in every split, and each setting has its own cache
    natural = EMNIST().get_bundle()
    np.testing.assert_array_equal(natural.y_test, yt + NUM_SPECIAL_TOKENS)
    np.testing.assert_array_equal(natural.y_trainval, y + NUM_SPECIAL_TOKENS)
    assert emnist.cache_path(True) != emnist.cache_path(False)
    assert emnist.cache_path(True).exists() and emnist.cache_path(False).exists()
    assert abs(share(natural.y_trainval)[0] - share(natural.y_test)[0]) < 0.05


def test_shuffle_follows_the_seed_and_the_epoch(fresh_root):
    write_emnist(fresh_root / "downloaded" / "emnist")

    def order(seed: int, epoch: int) -> list[int]:
        dm = EMNIST(DataConfig(batch_size=480, seed=seed))
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)  # what Lightning calls before every epoch
        return next(iter(loader))[1].tolist()

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(1, 0)  # each run's seed gives its own order
    assert order(0, 0) != order(0, 1)  # each epoch gives its own order
    # a fresh loader at epoch 3 (a resumed run) sees what an uninterrupted run sees
    dm = EMNIST(DataConfig(batch_size=480, seed=0))
    loader = dm.train_dataloader()
    for epoch in range(4):
        loader.sampler.set_epoch(epoch)
        batch = next(iter(loader))[1].tolist()
    assert batch == order(0, 3)
    assert sorted(order(0, 0)) == sorted(order(1, 0))  # the same images, reordered


def test_overfit_mode_validates_on_the_training_batches(fresh_root):
    write_emnist(fresh_root / "downloaded" / "emnist")
    dm = EMNIST(DataConfig(batch_size=32, overfit=True))
    train = [b[1].tolist() for b in dm.train_dataloader()]
    val = [b[1].tolist() for b in dm.val_dataloader()]
    assert train == val


def test_datamodule_batches_are_float_in_unit_range(fresh_root):
    write_emnist(fresh_root / "downloaded" / "emnist")
    dm = EMNIST(DataConfig(batch_size=50, val_fraction=0.2), balance=False)
    dm.setup()
    assert len(dm.data_train) == 480 and len(dm.data_val) == 120 and len(dm.data_test) == 200
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype.is_floating_point is False  # uint8 on the way...
    x, y = dm.on_after_batch_transfer((x, y), 0)  # ...float on the device
    assert x.shape == (50, 1, 28, 28) and float(x.max()) <= 1.0 and float(x.min()) >= 0.0
    assert y.dtype == np.int64 or str(y.dtype) == "torch.int64"
    assert set(np.unique(y.numpy())) <= set(range(4, 4 + NUM_CLASSES))
    # the split is fixed by its seed
    dm2 = EMNIST(DataConfig(batch_size=50, val_fraction=0.2), balance=False)
    dm2.setup()
    np.testing.assert_array_equal(dm.data_val.indices, dm2.data_val.indices)
    assert "train/val/test sizes: 480, 120, 200" in dm.summary()


def test_data_fraction_shrinks_train_and_keeps_enough_val(fresh_root):
    write_emnist(fresh_root / "downloaded" / "emnist", n_train=6000)
    dm = EMNIST(DataConfig(data_fraction=0.25), balance=False)
    dm.setup()
    assert len(dm.data_train) == 1200  # 25% of 4800
    assert len(dm.data_val) == 1000  # 25% of 1200 is 300: the floor of 1000 applies
    full = EMNIST(DataConfig(data_fraction=1.0), balance=False)
    full.setup()
    assert set(dm.data_val.indices) <= set(full.data_val.indices)


def test_gzip_zip_is_extracted_and_used(fresh_root, tmp_path, monkeypatch):
    staging = write_emnist(tmp_path / "gzip")
    archive = fresh_root / "downloaded" / "emnist" / "gzip.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for f in (tmp_path / "gzip").iterdir():
            zf.write(f, f"gzip/{f.name}")
    with pytest.raises(UserError, match="checksum mismatch"):
        EMNIST().prepare_data()  # our archive is not NIST's: the MD5 check refuses it
    # given this archive's own checksum, the same path extracts and ingests it
    from textsearch.data import util

    real = util.load_metadata
    digest = util.file_digest(archive, "md5")
    monkeypatch.setattr(util, "load_metadata", lambda name: {**real(name), "checksum": digest})
    b = EMNIST(balance=False).get_bundle()
    np.testing.assert_array_equal(b.x_test, staging["x_test"])
    assert (archive.parent / emnist.RAW_FILES["x_test"]).exists()


def test_offline_without_files_says_what_to_put_where(fresh_root, monkeypatch):
    monkeypatch.setattr("textsearch.data.util.DOWNLOAD_TIMEOUT_S", 3)
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # nothing listens: fails at once
    with pytest.raises(UserError) as err:
        EMNIST().prepare_data()
    msg = str(err.value)
    assert "cannot download https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip" in msg
    assert str(fresh_root / "downloaded" / "emnist") in msg
    assert not list((fresh_root / "downloaded" / "emnist").glob("*.part"))


def test_truncated_idx_file_is_refused(fresh_root):
    folder = fresh_root / "downloaded" / "emnist"
    write_emnist(folder)
    path = folder / emnist.RAW_FILES["x_train"]
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(UserError, match="damaged or truncated|truncated or damaged"):
        EMNIST().prepare_data()
    # the default (natural mix) is the cache this would have written: it was not, nor any other
    assert not emnist.cache_path(False).exists() and not emnist.cache_path(True).exists()
    assert not list((fresh_root / "processed").rglob("*.h5"))


def test_damaged_cache_is_detected_and_rebuilt(fresh_root, caplog):
    write_emnist(fresh_root / "downloaded" / "emnist")
    good = EMNIST(balance=False).get_bundle()
    path = emnist.cache_path(False)
    # 1) truncated file
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert emnist.read_cache(path, None) is None
    rebuilt = EMNIST(balance=False).get_bundle()
    np.testing.assert_array_equal(rebuilt.x_trainval, good.x_trainval)
    # 2) valid HDF5 whose data changed: the CRC32 catches it
    with h5py.File(path, "r+") as f:
        f["x_test"][0, 0, 0] = f["x_test"][0, 0, 0] ^ 0xFF
    with caplog.at_level("WARNING"):
        assert emnist.read_cache(path, None) is None
    assert "fails its CRC32 check" in caplog.text
    np.testing.assert_array_equal(EMNIST(balance=False).get_bundle().x_test, good.x_test)


def count_cache_reads(monkeypatch) -> tuple[list[Path], list[int]]:
    """(paths the cache is opened at for reading, CRC32s computed), counted around the real
    :func:`emnist.open_cache` and :func:`emnist.crc`."""
    reads: list[Path] = []
    crcs: list[int] = []
    real_open, real_crc = emnist.open_cache, emnist.crc

    def open_cache(path, mode="r"):
        if mode == "r":
            reads.append(Path(path))
        return real_open(path, mode)

    def crc(a):
        crcs.append(real_crc(a))
        return crcs[-1]

    monkeypatch.setattr(emnist, "open_cache", open_cache)
    monkeypatch.setattr(emnist, "crc", crc)
    return reads, crcs


def test_start_up_reads_and_checks_the_cache_once(fresh_root, monkeypatch):
    write_emnist(fresh_root / "downloaded" / "emnist")
    EMNIST(balance=False).get_bundle()  # builds the cache
    reads, crcs = count_cache_reads(monkeypatch)
    dm = EMNIST(DataConfig(batch_size=32), balance=False)
    dm.prepare_data()  # what the search does before its first trial
    bundle = dm.get_bundle()
    dm.setup()
    next(iter(dm.train_dataloader()))
    dm.prepare_data()  # Lightning's fit calls it again
    assert reads == [emnist.cache_path(False)]
    assert len(crcs) == 4  # x/y of train and test, each checked once
    assert dm.get_bundle() is bundle


def test_damaged_cache_is_read_once_and_rebuilt(fresh_root, monkeypatch, caplog):
    write_emnist(fresh_root / "downloaded" / "emnist")
    good = EMNIST(balance=False).get_bundle()
    path = emnist.cache_path(False)
    with h5py.File(path, "r+") as f:
        f["x_train"][0, 0, 0] = f["x_train"][0, 0, 0] ^ 0xFF
    reads, _ = count_cache_reads(monkeypatch)
    dm = EMNIST(balance=False)
    with caplog.at_level("WARNING"):
        dm.prepare_data()
        bundle = dm.get_bundle()
    assert "fails its CRC32 check" in caplog.text
    assert reads == [path]  # the damaged read; the rebuilt arrays are used as they were built
    np.testing.assert_array_equal(bundle.x_trainval, good.x_trainval)
    assert emnist.read_cache(path, None) is not None  # the rebuilt cache is valid on disk


def test_cache_whose_raw_files_moved_away_is_used(fresh_root, monkeypatch):
    folder = fresh_root / "downloaded" / "emnist"
    write_emnist(folder)
    good = EMNIST(balance=False).get_bundle()
    shutil.rmtree(folder)
    reads, _ = count_cache_reads(monkeypatch)
    np.testing.assert_array_equal(EMNIST(balance=False).get_bundle().x_test, good.x_test)
    assert reads == [emnist.cache_path(False)]


def test_stale_cache_from_other_raw_files_is_rebuilt(fresh_root):
    folder = fresh_root / "downloaded" / "emnist"
    write_emnist(folder, n_train=300)
    assert len(EMNIST(balance=False).get_bundle().y_trainval) == 300
    shutil.rmtree(folder)
    write_emnist(folder, n_train=400)
    assert len(EMNIST(balance=False).get_bundle().y_trainval) == 400
    essentials = json.loads(emnist.essentials_path().read_text())
    assert essentials["mapping"][4] == "0"


def test_read_idx_rejects_wrong_magic(tmp_path):
    import gzip
    import struct

    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(struct.pack(">II", 1234, 0))
    with pytest.raises(UserError, match="not an IDX file"):
        emnist.read_idx(bad)


def test_real_sample_slice_has_nist_layout(shared_root, monkeypatch):
    """The real EMNIST sample: headers parse, labels 0..61, upright images."""
    monkeypatch.setenv("TEXTSEARCH_DATA_DIR", str(shared_root))
    y = emnist.read_idx(shared_root / "downloaded" / "emnist" / emnist.RAW_FILES["y_test"])
    assert len(y) == 23_265 and y.max() == 61 and y.min() == 0
    mapping = emnist.read_mapping(shared_root / "downloaded" / "emnist" / emnist.RAW_FILES["mapping"])
    assert mapping[:3] == ["0", "1", "2"] and mapping[-1] == "z"
