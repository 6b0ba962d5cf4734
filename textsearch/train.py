"""``python -m textsearch.train``: one training run (the lab's ``run_experiment.py``).

Example::

    python -m textsearch.train --model_class CNN --data_class EMNIST --max_epochs 1 \\
        --num_blocks 2 --block residual --batchnorm --downsample stride
    python -m textsearch.train --model_class LineCNN --data_class EMNISTLines --max_length 16 \\
        --window_width 28 --window_stride 14 --num_train_lines 2000

TensorBoard logs, the best checkpoint and ``config.json`` (the full config the run ran) go
to ``<runs_dir>/<name>/``; the best checkpoint is tested at the end and ``val_acc`` /
``test_acc`` are printed (for a line model, ``val_cer`` / ``test_cer`` and ``test_line_acc``).  The checkpoint holds that config too:
:func:`textsearch.training.model_from_checkpoint` rebuilds the model from it alone.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from textsearch import cli
from textsearch.config import TrainConfig
from textsearch.devices import accelerator_for
from textsearch.errors import UserError, cli_entry


def build_parser() -> cli.Parser:
    parser = cli.Parser(prog="textsearch.train", description=__doc__.split("\n\n")[0],
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cli.add_config_flags(parser)
    parser.add_flag("runs_dir", type=cli.folder_path, default="runs/train",
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
    unused = cfg.unused_option(cli.given_options("textsearch.train", argv))
    if unused:
        raise UserError(f"--{unused} has no effect with --model_class {cfg.model_class} "
                        f"--data_class {cfg.data_class}: leave it out")
    if cfg.gpus > 0:
        accelerator_for(cfg.gpus)  # GPUs this machine lacks: refused before the run folder
    name = name or f"{time.strftime('%Y%m%d-%H%M%S')}_{cfg.model_class}_{cfg.data_class}"
    run_dir = runs_dir / name
    if run_dir.exists():
        raise UserError(f"run directory {run_dir} already exists: choose another --name")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--runs_dir: cannot create runs directory {runs_dir}: {err.strerror}") from None
    from textsearch.training import ConfigFile, train  # torch and Lightning: only for a run

    cli.quiet_library_logs()
    result = train(cfg, run_dir, callbacks=[ConfigFile(cfg, run_dir)], enable_progress_bar=progress)
    m = result.metrics
    print(f"run directory: {run_dir}")
    print(f"best checkpoint: {result.best_checkpoint}")
    monitor = cfg.monitor[0]
    print(f"{monitor}: {m.get(f'best_{monitor}', m.get(monitor, float('nan'))):.4f}")
    for name in cfg.test_metrics:
        value = result.test_metrics.get(name)
        print(f"{name}: {value:.4f}" if value is not None else f"{name}: n/a")
    print(f"tensorboard --logdir {run_dir} --host 127.0.0.1")
    return 0


if __name__ == "__main__":
    from textsearch.errors import exit_now

    exit_now(main())
