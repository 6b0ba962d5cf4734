"""EMNIST Lines: synthetic handwritten lines made of EMNIST characters.

Each line is a Brown-corpus snippet (see :mod:`textsearch.data.sentences`); every character
is drawn as a random EMNIST image of that character (spaces are blank), and consecutive
characters overlap by a random fraction in ``[min_overlap, max_overlap]`` of their width.
Training and validation lines use EMNIST's training images, test lines its test images.
Labels are ``<S> text <E>`` padded with ``<P>`` to ``max_length`` tokens, in the EMNIST
mapping.  Lines are cached in HDF5, keyed by every generation parameter.  Nothing here
imports torch: :class:`textsearch.data.modules.EMNISTLines` serves the lines to Lightning.

``python -m textsearch.data.emnist_lines`` generates (or loads) lines and prints a summary.
"""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
from tqdm.auto import tqdm

from textsearch import cli
from textsearch.config import DataConfig, LinesConfig
from textsearch.data import emnist
from textsearch.data.bundle import DataBundle
from textsearch.data.sentences import SentenceGenerator
from textsearch.paths import atomic_path, processed_dir

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CHAR_SIZE = 28


def samples_by_char(x: np.ndarray, y: np.ndarray, mapping: list[str]) -> dict[str, np.ndarray]:
    """EMNIST images grouped by the character they show."""
    order = np.argsort(y, kind="stable")
    ys = y[order]
    bounds = np.flatnonzero(np.diff(ys)) + 1
    groups = {}
    for chunk in np.split(order, bounds):
        if len(chunk):
            groups[mapping[int(y[chunk[0]])]] = x[chunk]
    return groups


def render_line(text: str, by_char: dict[str, np.ndarray], overlap: float, width: int,
                rng: np.random.Generator) -> np.ndarray:
    """Draw ``text`` as one 28-pixel-high uint8 line ``width`` pixels wide."""
    canvas = np.zeros((CHAR_SIZE, width), dtype=np.uint16)
    step = CHAR_SIZE - int(overlap * CHAR_SIZE)
    x = 0
    for ch in text:
        images = by_char.get(ch)
        if images is not None:
            canvas[:, x : x + CHAR_SIZE] += images[rng.integers(len(images))]
        x += step
    return np.minimum(canvas, 255).astype(np.uint8)


def encode(text: str, inverse: dict[str, int], length: int) -> np.ndarray:
    tokens = ["<S>", *text, "<E>"]
    labels = np.full(length, inverse["<P>"], dtype=np.uint8)
    labels[: len(tokens)] = [inverse[t] for t in tokens]
    return labels


def generate(config: LinesConfig, char_bundle: DataBundle, num: int, split: str,
             sentences: SentenceGenerator, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``num`` lines for ``split`` ('train' uses EMNIST train images, 'test' test images)."""
    x, y = ((char_bundle.x_trainval, char_bundle.y_trainval) if split == "train"
            else (char_bundle.x_test, char_bundle.y_test))
    mapping = char_bundle.mapping
    inverse = {c: i for i, c in enumerate(mapping)}
    by_char = samples_by_char(x, y, mapping)
    width = CHAR_SIZE * config.max_length
    images = np.zeros((num, CHAR_SIZE, width), dtype=np.uint8)
    labels = np.zeros((num, config.max_length), dtype=np.uint8)
    for i in tqdm(range(num), desc=f"EMNIST Lines ({split})", leave=False, disable=None):
        text = sentences.generate()
        text = "".join(c for c in text if c in inverse)
        overlap = rng.uniform(config.min_overlap, config.max_overlap)
        images[i] = render_line(text, by_char, overlap, width, rng)
        labels[i] = encode(text, inverse, config.max_length)
    return images, labels


def prepare(config: LinesConfig) -> str:
    """Generate and cache the lines for ``config`` unless a valid cache exists."""
    config.validate()
    path = processed_dir("emnist_lines") / config.filename()
    if path.exists():
        try:
            with h5py.File(path, "r") as f:
                if f.attrs["version"] == CACHE_VERSION and f.attrs["key"] == config.key():
                    for name in ("x_trainval", "y_trainval", "x_test", "y_test"):
                        f[name].shape  # noqa: B018 - touching each dataset validates the file
                    return str(path)
            log.warning("EMNIST Lines cache %s is stale: regenerating", path)
        except Exception as err:
            log.warning("EMNIST Lines cache %s is damaged (%s): regenerating", path, err)
    char_bundle = emnist.load_bundle()
    rng = np.random.default_rng(config.lines_seed)
    sentences = SentenceGenerator(config.max_length - 2, seed=config.lines_seed)
    x_tv, y_tv = generate(config, char_bundle, config.num_train_lines + config.num_val_lines,
                          "train", sentences, rng)
    x_te, y_te = generate(config, char_bundle, config.num_test_lines, "test", sentences, rng)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["version"] = CACHE_VERSION
        f.attrs["key"] = config.key()
        f.attrs["mapping"] = json.dumps(char_bundle.mapping)
        for name, a in (("x_trainval", x_tv), ("y_trainval", y_tv), ("x_test", x_te),
                        ("y_test", y_te)):
            f.create_dataset(name, data=a, compression="lzf", chunks=True)
    return str(path)


def load_bundle(config: LinesConfig) -> DataBundle:
    """The lines of ``config`` in memory, generated and cached first (:func:`prepare`).

    Targets are token sequences of length ``max_length``.
    """
    path = prepare(config)
    with h5py.File(path, "r") as f:
        arrays = {k: f[k][()] for k in ("x_trainval", "y_trainval", "x_test", "y_test")}
        mapping = json.loads(f.attrs["mapping"])
    return DataBundle(
        **arrays, mapping=mapping, input_dims=(1, CHAR_SIZE, CHAR_SIZE * config.max_length),
        output_dims=(config.max_length,),
    )


def build_parser() -> cli.Parser:
    parser = cli.Parser(prog="textsearch.data.emnist_lines",
                        description="Generate EMNIST Lines and summarise them.")
    cli.add_config_flags(parser, config_cls=LinesConfig)  # the same flags as textsearch.train's
    parser.add_flag("batch_size", type=cli.positive_int, default=128,
                    help="examples per batch (default 128)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m textsearch.data.emnist_lines``: generate the lines and print a summary.

    Bad flags and data that cannot be had are one line on stderr and exit code 2.
    """
    from textsearch.data.base import summary_main
    from textsearch.data.modules import EMNISTLines

    args = vars(build_parser().parse_args(argv))
    batch_size = args.pop("batch_size")
    return summary_main(lambda: EMNISTLines(DataConfig(batch_size=batch_size),
                                            lines=LinesConfig(**args)),
                        "textsearch.data.emnist_lines")


if __name__ == "__main__":
    raise SystemExit(main())
