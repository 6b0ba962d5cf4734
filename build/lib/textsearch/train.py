"""``python -m textsearch.train``: one training run (the lab's ``run_experiment.py``).

Example::

    python -m textsearch.train --model_class CNN --data_class EMNIST --max_epochs 1 \\
        --num_blocks 2 --block residual --batchnorm --downsample stride

TensorBoard logs and the best checkpoint go to ``<runs_dir>/<name>/``; the best checkpoint
is tested at the end and ``val_acc`` / ``test_acc`` are printed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from textsearch import cli
from textsearch.data import DATA_CLASSES
from textsearch.errors import UserError, cli_entry
from textsearch.models import MODEL_CLASSES
from textsearch.models.cnn import BLOCKS, DOWNSAMPLES
from textsearch.training import PRECISIONS, TrainConfig, train

HELP = {
    "model_class": f"model to train: {', '.join(MODEL_CLASSES)}",
    "data_class": f"dataset: {', '.join(DATA_CLASSES)}",
    "max_epochs": "number of training epochs",
    "batch_size": "examples per batch",
    "lr": "learning rate (Adam)",
    "one_cycle_max_lr": "peak learning rate of a one-cycle schedule (0: constant lr)",
    "weight_decay": "Adam weight decay",
    "seed": "random seed",
    "gpus": "GPUs to train on (0: CPU)",
    "precision": "Lightning precision (16-mixed needs a GPU)",
    "num_workers": "DataLoader worker processes (0: load in the main process)",
    "val_fraction": "share of the training file held out for validation",
    "data_fraction": "share of the training split to use",
    "balance": "EMNIST: cap every class at the mean class count, in train, val and test alike "
               "(default: NIST's natural class mix)",
    "overfit_batches": "overfit this many batches (>= 1) or this fraction (< 1) of the data",
    "fast_dev_run": "run this many batches of train/val as a smoke check (no value: 1)",
    "limit_train_batches": "train on this many batches (> 1) or this fraction (<= 1) per epoch",
    "limit_val_batches": "validate on this many batches (> 1) or this fraction (<= 1)",
    "fc1": "MLP: first hidden layer width",
    "fc2": "MLP: second hidden layer width",
    "num_blocks": "CNN: number of blocks (1..6)",
    "block": f"CNN: block type ({', '.join(BLOCKS)})",
    "batchnorm": "CNN: BatchNorm after convolutions",
    "downsample": f"CNN: how to halve the feature map ({', '.join(DOWNSAMPLES)})",
    "downsample_every": "CNN: halve the feature map after every n-th block",
    "conv_dim": "CNN: channels per block",
    "fc_dim": "CNN: hidden fully-connected width",
    "dropout": "dropout probability (CNN and MLP)",
}
TYPES = {
    "max_epochs": cli.positive_int, "batch_size": cli.positive_int, "lr": cli.positive_float,
    "one_cycle_max_lr": cli.nonnegative_float, "weight_decay": cli.nonnegative_float,
    "seed": cli.nonnegative_int, "gpus": cli.nonnegative_float, "num_workers": cli.nonnegative_int,
    "val_fraction": cli.fraction, "data_fraction": cli.fraction,
    "overfit_batches": cli.nonnegative_float, "fast_dev_run": cli.nonnegative_int,
    "limit_train_batches": cli.positive_float, "limit_val_batches": cli.nonnegative_float,
    "fc1": cli.positive_int, "fc2": cli.positive_int, "num_blocks": cli.positive_int,
    "downsample_every": cli.positive_int, "conv_dim": cli.positive_int, "fc_dim": cli.positive_int,
    "dropout": cli.nonnegative_float,
}
CHOICES = {"model_class": list(MODEL_CLASSES), "data_class": list(DATA_CLASSES),
           "block": list(BLOCKS), "downsample": list(DOWNSAMPLES), "precision": list(PRECISIONS)}
OPTIONAL_VALUE = {"fast_dev_run": 1}  # the flag alone means this value, as in Lightning


def add_config_flags(parser: cli.Parser, defaults: TrainConfig | None = None,
                     suppress: bool = False) -> None:
    """One flag per TrainConfig field (``suppress``: absent flags stay out of the namespace)."""
    defaults = defaults or TrainConfig()
    for name, typ in TrainConfig.field_types().items():
        default = argparse.SUPPRESS if suppress else getattr(defaults, name)
        if typ is bool:
            parser.add_flag(name, action=argparse.BooleanOptionalAction, default=default,
                            help=HELP[name])
        elif name in OPTIONAL_VALUE:
            parser.add_flag(name, type=TYPES[name], default=default, nargs="?",
                            const=OPTIONAL_VALUE[name], help=HELP[name], metavar="N")
        else:
            parser.add_flag(name, type=TYPES.get(name, cli.nonempty_str), default=default,
                            choices=CHOICES.get(name), help=HELP[name],
                            metavar=name.upper() if name not in CHOICES else None)


def build_parser() -> cli.Parser:
    parser = cli.Parser(prog="textsearch.train", description=__doc__.split("\n\n")[0],
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_flags(parser)
    parser.add_flag("runs_dir", type=cli.nonempty_str, default="runs/train",
                    help="folder for the run's logs and checkpoints")
    parser.add_flag("name", type=cli.folder_name, default=None,
                    help="run name (default: time stamp, model and data class)")
    parser.add_flag("no_progress_bar", action="store_true", help="hide Lightning's progress bar")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    runs_dir, name = Path(args.pop("runs_dir")), args.pop("name")
    progress = not args.pop("no_progress_bar")
    cfg = TrainConfig.from_dict(args)
    cfg.validate()
    name = name or f"{time.strftime('%Y%m%d-%H%M%S')}_{cfg.model_class}_{cfg.data_class}"
    run_dir = runs_dir / name
    if run_dir.exists():
        raise UserError(f"run directory {run_dir} already exists: choose another --name")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create runs directory {runs_dir}: {err.strerror}") from None
    result = train(cfg, run_dir, enable_progress_bar=progress)
    m = result.metrics
    print(f"run directory: {run_dir}")
    print(f"best checkpoint: {result.best_checkpoint}")
    print(f"val_acc: {m.get('best_val_acc', m.get('val_acc', float('nan'))):.4f}")
    print(f"test_acc: {result.test_acc:.4f}" if result.test_acc is not None else "test_acc: n/a")
    print(f"tensorboard --logdir {run_dir} --host 127.0.0.1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
