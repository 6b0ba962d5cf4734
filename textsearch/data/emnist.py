"""EMNIST ByClass: NIST's IDX files -> upright uint8 arrays cached in HDF5.

Raw files are looked for in ``<data root>/downloaded/emnist/``: first the IDX files
unpacked from NIST's ``gzip.zip``, then ``gzip.zip`` itself (its ByClass members are
extracted, refusing any path that escapes the folder), and only then is ``gzip.zip``
downloaded from NIST and MD5-checked.

Class mix: by default every split keeps NIST's natural class mix (the setting of the
published EMNIST ByClass benchmark).  With ``balance`` the lab's balancing (each class
capped at the mean class count) is applied to the training file *and* the test file, so
validation (cut from the training file) and test always follow the same distribution.

The processed cache (``processed/emnist/byclass_<balanced|natural>.h5``) stores a key of the
raw files it was built from and a CRC32 of every array; a cache whose key or CRC does not
match, or that cannot be read, is rebuilt with a warning, never used.

Nothing here imports torch: :func:`load_bundle` gives the arrays, and
:class:`textsearch.data.modules.EMNIST` serves them to Lightning.
``python -m textsearch.data.emnist`` prepares the data and prints a summary.
"""

from __future__ import annotations

import gzip
import json
import logging
import struct
import zlib
from pathlib import Path

import h5py
import numpy as np

from textsearch.config import DataConfig
from textsearch.data.bundle import DataBundle
from textsearch.data.util import ensure_download, load_metadata, safe_extract
from textsearch.errors import UserError
from textsearch.paths import atomic_path, downloaded_dir, processed_dir

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 3: balancing applies to the test split too
SPLIT = "byclass"
RAW_FILES = {
    "x_train": f"emnist-{SPLIT}-train-images-idx3-ubyte.gz",
    "y_train": f"emnist-{SPLIT}-train-labels-idx1-ubyte.gz",
    "x_test": f"emnist-{SPLIT}-test-images-idx3-ubyte.gz",
    "y_test": f"emnist-{SPLIT}-test-labels-idx1-ubyte.gz",
    "mapping": f"emnist-{SPLIT}-mapping.txt",
}
SPECIAL_TOKENS = ["<B>", "<S>", "<E>", "<P>"]  # blank, start, end, padding (as in the lab)
NUM_SPECIAL_TOKENS = len(SPECIAL_TOKENS)
# Punctuation of the IAM handwriting database, appended so EMNIST Lines can share the mapping.
IAM_CHARACTERS = [" ", "!", '"', "#", "&", "'", "(", ")", "*", "+", ",", "-", ".", "/", ":", ";", "?"]
IDX_MAGIC = {2049: 1, 2051: 3}  # labels: 1-d, images: 3-d


# -- raw files ------------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (NIST/MNIST format, big-endian header), gzipped (``.gz``) or not, as
    a uint8 array."""
    try:
        with (gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"{path} is damaged or truncated ({err}): delete it and run again") from None
    if len(data) < 8:
        raise UserError(f"{path} is too short to be an IDX file: delete it and run again")
    magic, = struct.unpack(">I", data[:4])
    if magic not in IDX_MAGIC:
        raise UserError(f"{path} is not an IDX file (magic number {magic}): delete it")
    ndim = IDX_MAGIC[magic]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise UserError(
            f"{path} holds {len(data) - offset} bytes of data, header says {expected}: "
            "the file is truncated or damaged; delete it and run again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def read_mapping(path: Path) -> list[str]:
    """NIST's ``label ascii_code`` lines -> the list of characters, indexed by label."""
    pairs = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            label, code = (int(v) for v in line.split())
        except ValueError:
            raise UserError(f"{path}:{line_no}: expected 'label ascii_code', got {line!r}") from None
        pairs.append((label, chr(code)))
    pairs.sort()
    if [p[0] for p in pairs] != list(range(len(pairs))):
        raise UserError(f"{path}: labels are not 0..{len(pairs) - 1}")
    return [c for _, c in pairs]


def raw_dir() -> Path:
    return downloaded_dir("emnist")


def locate_raw_files() -> dict[str, Path]:
    """Paths of the ByClass IDX files, extracting or downloading ``gzip.zip`` if needed."""
    folder = raw_dir()
    paths = {k: folder / name for k, name in RAW_FILES.items()}
    if all(p.exists() for p in paths.values()):
        return paths
    meta = load_metadata("emnist")
    hint = (
        f"Without network access, put NIST's {meta['filename']} or the files unpacked from it "
        f"({', '.join(RAW_FILES.values())}) into {folder}/"
    )
    archive = ensure_download("emnist", folder, hint=hint)
    members = {m: Path(m).name for m in meta["members"]}
    log.info("extracting %d files from %s", len(members), archive)
    safe_extract(archive, members, folder)
    return paths


def raw_key(paths: dict[str, Path]) -> str:
    """Identifies the raw files a cache was built from (names and sizes)."""
    return json.dumps({k: [p.name, p.stat().st_size] for k, p in sorted(paths.items())})


# -- processing -----------------------------------------------------------------------------
def full_mapping(characters: list[str]) -> list[str]:
    """The lab's mapping: 4 special tokens, the EMNIST characters, IAM punctuation."""
    return [*SPECIAL_TOKENS, *characters, *IAM_CHARACTERS]


def balance_classes(y: np.ndarray, seed: int = 42) -> np.ndarray:
    """Indices keeping at most the mean count of examples per class (sorted, fixed seed)."""
    counts = np.bincount(y)
    cap = int(counts[counts > 0].mean())
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.flatnonzero(counts):
        idx = np.flatnonzero(y == label)
        keep.append(idx if len(idx) <= cap else rng.choice(idx, cap, replace=False))
    return np.sort(np.concatenate(keep))


def process(paths: dict[str, Path], balance: bool) -> dict[str, np.ndarray]:
    """Read the raw files into upright images and labels shifted past the special tokens."""
    arrays = {}
    for split in ("train", "test"):
        x, y = read_idx(paths[f"x_{split}"]), read_idx(paths[f"y_{split}"])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise UserError(f"EMNIST {split} files disagree: {x.shape} images, {y.shape} labels")
        x = np.ascontiguousarray(x.transpose(0, 2, 1))  # NIST stores images transposed
        if balance:  # both splits alike, so validation and test share one class mix
            keep = balance_classes(y)
            x, y = x[keep], y[keep]
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = y.astype(np.uint8) + NUM_SPECIAL_TOKENS
    return arrays


def crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).data)


# -- cache ----------------------------------------------------------------------------------
def cache_path(balance: bool) -> Path:
    return processed_dir("emnist") / f"{SPLIT}_{'balanced' if balance else 'natural'}.h5"


def essentials_path() -> Path:
    return processed_dir("emnist") / "emnist_essentials.json"


def open_cache(path: Path, mode: str = "r") -> h5py.File:
    """The HDF5 cache file at ``path``: the one place the cache is opened, to read or write."""
    return h5py.File(path, mode)


def write_cache(path: Path, arrays: dict[str, np.ndarray], key: str) -> None:
    with atomic_path(path) as tmp, open_cache(tmp, "w") as f:
        f.attrs["version"] = CACHE_VERSION
        f.attrs["raw_key"] = key
        for name, a in arrays.items():
            f.create_dataset(name, data=a, compression="lzf", chunks=True)
            f[name].attrs["crc32"] = crc(a)


def read_cache(path: Path, key: str | None) -> dict[str, np.ndarray] | None:
    """The cached arrays, or ``None`` (with the reason logged) if missing, stale or damaged.

    ``key``: the :func:`raw_key` the cache must have been built from (``None``: any).  The
    version and key are attributes, checked before any array is read; every array read is
    CRC-checked.
    """
    if not path.exists():
        return None
    try:
        with open_cache(path) as f:
            if f.attrs.get("version") != CACHE_VERSION:
                log.warning("EMNIST cache %s is from another version: rebuilding", path)
                return None
            if key is not None and f.attrs.get("raw_key") != key:
                log.warning("EMNIST cache %s was built from other raw files: rebuilding", path)
                return None
            arrays = {}
            for name in ("x_train", "y_train", "x_test", "y_test"):
                a = f[name][()]
                if crc(a) != f[name].attrs["crc32"]:
                    raise ValueError(f"{name} fails its CRC32 check")
                arrays[name] = a
    except Exception as err:  # h5py raises OSError/KeyError/ValueError for damaged files
        log.warning("EMNIST cache %s is damaged (%s): rebuilding", path, err)
        return None
    return arrays


def prepare(balance: bool = False) -> dict[str, np.ndarray]:
    """The processed arrays: read from a valid cache, else built from the raw files and cached.

    The cache is read and CRC-checked once, and the arrays it checked are what is returned,
    so a caller never reads it a second time.  With the raw IDX files present the cache must
    have been built from them (their :func:`raw_key`); without them a valid cache is still
    used (the raw files may have been moved away once processed).
    """
    path = cache_path(balance)
    raw = {k: raw_dir() / name for k, name in RAW_FILES.items()}
    key = raw_key(raw) if all(p.exists() for p in raw.values()) else None
    arrays = read_cache(path, key) if essentials_path().exists() else None
    if arrays is not None:
        return arrays
    paths = locate_raw_files()
    key = raw_key(paths)
    log.info("processing EMNIST %s (balance=%s) into %s", SPLIT, balance, path)
    arrays = process(paths, balance)
    mapping = full_mapping(read_mapping(paths["mapping"]))
    write_cache(path, arrays, key)
    essentials = {"mapping": mapping, "input_shape": [28, 28], "split": SPLIT}
    with atomic_path(essentials_path()) as tmp:
        tmp.write_text(json.dumps(essentials, indent=1))
    return arrays


def load_bundle(balance: bool = False) -> DataBundle:
    """EMNIST ByClass in memory, 28x28, classes = the lab's 83-token mapping; prepared first
    (:func:`prepare`).

    balance: cap every class at the mean class count (the lab's balancing), in the
    training file and the test file alike; off by default (NIST's natural class mix).
    """
    arrays = prepare(balance)
    mapping = json.loads(essentials_path().read_text())["mapping"]
    return DataBundle(
        x_trainval=arrays["x_train"], y_trainval=arrays["y_train"],
        x_test=arrays["x_test"], y_test=arrays["y_test"],
        mapping=mapping, input_dims=(1, 28, 28), output_dims=(len(mapping),),
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m textsearch.data.emnist``: prepare the data and print its summary."""
    from textsearch.data.base import batch_size_parser, summary_main  # torch: only here
    from textsearch.data.modules import EMNIST

    prog = "textsearch.data.emnist"
    args = batch_size_parser(prog, "Prepare EMNIST and summarise it.").parse_args(argv)
    return summary_main(lambda: EMNIST(DataConfig(batch_size=args.batch_size)), prog)


if __name__ == "__main__":
    raise SystemExit(main())
