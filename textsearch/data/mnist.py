"""MNIST digits: four gzipped IDX files (MD5-checked when downloaded), kept as uint8 arrays.

The files live in ``<data root>/downloaded/MNIST/raw/``; ones placed there by hand (gzipped
or unpacked) are used as they are.  ``python -m textsearch.data.mnist`` prepares the data
and prints a summary.
"""

from __future__ import annotations

from textsearch.config import DataConfig
from textsearch.data.bundle import DataBundle
from textsearch.data.emnist import read_idx
from textsearch.data.util import download, load_metadata
from textsearch.errors import UserError
from textsearch.paths import downloaded_dir

SPLITS = {"train": "train", "test": "t10k"}  # split -> file prefix


def raw_dir():
    return downloaded_dir("MNIST") / "raw"


def raw_file(name: str):
    """``name`` (a ``.gz`` file) in the raw folder: gzipped or unpacked, downloaded if
    neither is there."""
    folder = raw_dir()
    for path in (folder / name, folder / name.removesuffix(".gz")):
        if path.is_file():
            return path
    meta = load_metadata("mnist")
    hint = (f"Without network access, put {', '.join(meta['files'])} into {folder}/")
    errors = []
    for mirror in meta["mirrors"]:
        try:
            return download(mirror + name, folder / name, meta["checksum_algorithm"],
                            meta["files"][name], hint=hint)
        except UserError as err:
            errors.append(str(err))
    raise UserError(f"cannot get MNIST: {errors[-1]}")


def load_bundle() -> DataBundle:
    """MNIST handwritten digits in memory, 28x28, 10 classes (downloaded first if needed)."""
    arrays = {}
    for split, prefix in SPLITS.items():
        split_name = "trainval" if split == "train" else "test"
        arrays[f"x_{split_name}"] = read_idx(raw_file(f"{prefix}-images-idx3-ubyte.gz"))
        arrays[f"y_{split_name}"] = read_idx(raw_file(f"{prefix}-labels-idx1-ubyte.gz"))
    return DataBundle(**arrays, mapping=[str(i) for i in range(10)], input_dims=(1, 28, 28),
                      output_dims=(10,))


def main(argv: list[str] | None = None) -> int:
    """``python -m textsearch.data.mnist``: prepare the data and print its summary."""
    from textsearch.data.base import batch_size_parser, summary_main  # torch: only here
    from textsearch.data.modules import MNIST

    prog = "textsearch.data.mnist"
    args = batch_size_parser(prog, "Prepare MNIST and summarise it.").parse_args(argv)
    return summary_main(lambda: MNIST(DataConfig(batch_size=args.batch_size)), prog)


if __name__ == "__main__":
    raise SystemExit(main())
