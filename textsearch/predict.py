"""``python -m textsearch.predict MODEL IMAGE...``: the character in each image.

MODEL: a ``model.pt`` written by ``python -m textsearch.retrain`` (or its folder); its
``model.json`` beside it gives the class mapping and input size.  Each image is read as
grayscale and resized to the model's input (28x28 for EMNIST).  Dark strokes on a light
background (ink on paper) are inverted to EMNIST's light strokes on black.

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

from textsearch import cli
from textsearch.errors import UserError, cli_entry
from textsearch.layout import MODEL_FILE, MODEL_INFO


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
    if len(dims) != 3 or dims[1] != dims[2]:
        raise UserError(f"{model_file} does not read single characters (input {dims})")
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream
            model = torch.jit.load(str(model_file), map_location="cpu").eval()
    except Exception as err:
        raise UserError(f"cannot load {model_file}: {err}") from None
    return model, {**info, "mapping": mapping}


def read_image(path: Path, size: tuple[int, int]):
    """A float array (H, W) in [0, 1], light strokes on black, at ``size`` (H, W)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            gray = img.convert("L")
    except FileNotFoundError:
        raise UserError(f"no image at {path}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"cannot read image {path}: {err}") from None
    if gray.size != (size[1], size[0]):
        gray = gray.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    x = np.asarray(gray, dtype=np.float32) / 255.0
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    if border.mean() > 0.5:  # ink on paper: make it EMNIST's light-on-dark
        x = 1.0 - x
    return x


def predict(model, info: dict, images: list[Path], top: int = 1) -> list[list[tuple[str, float]]]:
    """For each image, its ``top`` likeliest characters with their probabilities."""
    import numpy as np
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
    for path, guesses in zip(images, predict(model, info, images, args.top)):
        shown = "  ".join(f"{c!r} {p:.3f}" for c, p in guesses)
        print(f"{path}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
