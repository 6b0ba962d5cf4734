"""``python -m textsearch.predict MODEL IMAGE...``: the character, or the line of text, in each image.

MODEL: a ``model.pt`` written by ``python -m textsearch.retrain`` (or its folder); its
``model.json`` beside it gives the class mapping and input size.  Each image is read as
grayscale.  Dark strokes on a light background (ink on paper) are inverted to EMNIST's
light strokes on black.  For a character model the image is resized to its input (28x28
for EMNIST).  For a line model (one line of text per image, e.g. a photo or scan) it is
resized to the model's height (28), keeping its aspect ratio (no wider than the widest
line it was trained on), and the greedy CTC reading is printed.

Examples::

    python -m textsearch.predict runs/cnn_emnist-20261127-101500/retrain/3f2a9c1e a.png b.png
    python -m textsearch.predict model.pt letter.jpg --top 3
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from textsearch import cli
from textsearch.errors import UserError, cli_entry
from textsearch.record import MODEL_FILE, MODEL_INFO


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="textsearch.predict", description=__doc__.split("\n\n")[0],
                   formatter_class=argparse.RawDescriptionHelpFormatter,
                   epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("model", help="model.pt written by textsearch.retrain, or its folder")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--top", type=cli.positive_int, default=1, help="show the k likeliest classes")
    return p


def load_model(path: Path):
    """(TorchScript module, model.json contents) of a retrained model."""
    path = Path(path)
    model_file = path / MODEL_FILE if path.is_dir() else path
    info_file = model_file.parent / MODEL_INFO
    if not model_file.is_file():
        raise UserError(f"no model at {model_file}: give a model.pt written by "
                        "python -m textsearch.retrain, or its folder")
    if not info_file.is_file():
        raise UserError(f"{model_file} has no {MODEL_INFO} beside it (the class mapping)")
    try:
        info = json.loads(info_file.read_text())
        mapping, dims = info["mapping"], info["input"]["dims"]
    except (ValueError, KeyError) as err:
        raise UserError(f"{info_file} is damaged: {err}") from None
    kind = info["input"].get("kind", "character")
    if kind not in ("character", "line") or len(dims) != 3 or (kind == "character"
                                                                and dims[1] != dims[2]):
        raise UserError(f"{info_file} is damaged: input {info['input']} is neither a square "
                        "character nor a line")
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream
            model = torch.jit.load(str(model_file), map_location="cpu").eval()
    except Exception as err:
        raise UserError(f"cannot load {model_file}: {err}") from None
    return model, {**info, "mapping": mapping}


def open_gray(path: Path):
    """The image at ``path`` as an 8-bit grayscale PIL image."""
    try:
        with Image.open(path) as img:
            return img.convert("L")
    except FileNotFoundError:
        raise UserError(f"no image at {path}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"cannot read image {path}: {err}") from None


def light_on_dark(gray):
    """A float array in [0, 1] of a grayscale image, light strokes on black."""
    x = np.asarray(gray, dtype=np.float32) / 255.0
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    if border.mean() > 0.5:  # ink on paper: make it EMNIST's light-on-dark
        x = 1.0 - x
    return x


def read_image(path: Path, size: tuple[int, int]):
    """A float array (H, W) in [0, 1], light strokes on black, at ``size`` (H, W)."""
    gray = open_gray(path)
    if gray.size != (size[1], size[0]):
        gray = gray.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return light_on_dark(gray)


def read_line(path: Path, height: int, max_width: int, min_width: int):
    """A float array (height, W) in [0, 1], light strokes on black: the line resized to
    ``height`` keeping its aspect ratio, W at most ``max_width``; a line narrower than
    ``min_width`` (the model's window) is padded with background on the right."""
    gray = open_gray(path)
    w, h = gray.size
    width = max(1, min(max_width, round(w * height / h)))
    if (w, h) != (width, height):
        gray = gray.resize((width, height), Image.Resampling.LANCZOS)
    x = light_on_dark(gray)
    if width < min_width:
        x = np.pad(x, ((0, 0), (0, min_width - width)))
    return x


def read_lines(model, info: dict, images: list[Path]) -> list[str]:
    """The greedy CTC reading of each line image."""
    import torch

    from textsearch.models.ctc import greedy_decode, to_text

    i = info["input"]
    texts = []
    for path in images:  # one at a time: lines differ in width
        x = read_line(path, i["height"], i["max_width"], i.get("window_width", 1))
        with torch.inference_mode():
            scores = model(torch.from_numpy(x)[None, None])
        texts.append(to_text(greedy_decode(scores)[0], info["mapping"]))
    return texts


def predict(model, info: dict, images: list[Path], top: int = 1) -> list[list[tuple[str, float]]]:
    """For each image, its ``top`` likeliest characters with their probabilities."""
    import torch

    _, h, w = info["input"]["dims"]
    batch = torch.from_numpy(np.stack([read_image(p, (h, w)) for p in images])).unsqueeze(1)
    with torch.inference_mode():
        probs = torch.softmax(model(batch), dim=1)
    k = min(top, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    mapping = info["mapping"]
    return [[(mapping[i], float(v)) for v, i in zip(vs.tolist(), idx.tolist())]
            for vs, idx in zip(values, indices)]


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    model, info = load_model(Path(args.model))
    images = [Path(p) for p in args.images]
    for path in images:
        if not path.is_file():
            raise UserError(f"no image at {path}")
    if info["input"].get("kind") == "line":
        if args.top != 1:
            raise UserError(f"--top {args.top}: a line model gives one reading per line")
        for path, text in zip(images, read_lines(model, info, images)):
            print(f"{path}: {text}")
        return 0
    for path, guesses in zip(images, predict(model, info, images, args.top)):
        shown = "  ".join(f"{c!r} {p:.3f}" for c, p in guesses)
        print(f"{path}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
