"""``python -m textsearch.retrain runs/<name>``: retrain a search's winner and export it.

The chosen trial's config (default: the best trial so far; ``--trial ID`` picks another, e.g. one
on the Pareto front) is trained again on the whole training split (``--data_fraction``
to change that), with a progress bar, then tested.  Written under
``runs/<name>/retrain/<trial>/``:

- ``model.pt``: the model as TorchScript (``torch.jit.load`` needs no textsearch), in
  float32: input float images ``(N, 1, H, W)`` in [0, 1], light strokes on black as in
  EMNIST; output class scores ``(N, C)``, or for a line model ``(N, C, T)``: scores of each
  of T windows across the line, to be read by greedy CTC decoding (token 0 is the blank);
- ``model.json``: the config, the metrics, the data it was trained on (with a cache key),
  the class mapping and the input format (what ``python -m textsearch.predict`` reads);
- the training run itself (TensorBoard events, best checkpoint).

Examples::

    python -m textsearch.retrain runs/cnn_emnist-20261127-101500
    python -m textsearch.retrain runs/cnn_emnist-20261127-101500 --trial 3f2a9c1e --max_epochs 20
    python -m textsearch.retrain runs/cnn_emnist-20261127-101500 --max_epochs 5 \\
        --one_cycle_max_lr 0.004

``--lr``, ``--one_cycle_max_lr`` and ``--weight_decay`` replace the trial's own for the
retraining: a one-cycle schedule (peaking at a few times the searched ``lr``) makes the
most of a fixed number of epochs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

from textsearch import cli
from textsearch.config import OptimOptions, TrainConfig
from textsearch.data import load_bundle
from textsearch.devices import accelerator_for, available_gpus
from textsearch.errors import UserError, cli_entry
from textsearch.options import options_of
from textsearch.record import MODEL_FILE, MODEL_INFO, RETRAIN_DIR, SearchSettings
from textsearch.summary import find_trial, summarize


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="textsearch.retrain", description=__doc__.split("\n\n")[0],
                   formatter_class=argparse.RawDescriptionHelpFormatter,
                   epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("search_dir", type=cli.folder_path,
                   help="a search's folder (runs/<name>), running, stopped or finished")
    p.add_argument("--trial", type=cli.nonempty_str, help="trial id (default: the best trial)")
    cli.add_config_flags(p, names=["max_epochs"], unset=True,
                         help_suffix=" (default: the search's max_epochs)")
    cli.add_config_flags(p, names=["data_fraction", "seed"],
                         help_suffix=" (default: %(default)s)")
    cli.add_config_flags(p, names=["gpus"], unset=True,
                         help_suffix=" (default: 1 if a GPU is available, else 0)")
    p.add_argument("--no_progress", "--no-progress", action="store_true",
                   help="no progress bar")
    # the optimisation's options, declared once (OptimOptions); absent: the trial's own
    cli.add_config_flags(p, OptimOptions, suppress=True,
                         help_suffix=" (default: the trial's own)")
    return p


def choose_trial(search_dir: Path, trial_id: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summary, trial) of the search as its folder holds it now: ``trial_id``'s trial, or
    the best one so far (the search may be running, stopped or finished)."""
    summary = summarize(search_dir)
    if trial_id is None:
        if summary.get("best") is None:
            raise UserError(f"search {search_dir} has no trial with a result to retrain yet")
        trial_id = summary["best"]["trial_id"]
    trial = find_trial(summary, trial_id)
    if trial is None:
        ids = [t["trial_id"] for t in summary["trials"]]
        known = ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")
        raise UserError(f"--trial {trial_id}: no such trial in {search_dir} (trials: "
                        f"{known or 'none yet'})")
    return summary, trial


def data_key(cfg) -> tuple[str, dict[str, Any]]:
    """What identifies the data a model saw: the data options, and a short hash of them."""
    names = ["data_class", "balance", "val_fraction", "data_fraction"]
    if cfg.data_class == "EMNISTLines":
        names[1:2] = ["max_length", "min_overlap", "max_overlap", "num_train_lines",
                      "num_val_lines", "num_test_lines"]
    fields = {k: getattr(cfg, k) for k in names}
    digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return f"{cfg.data_class}-{digest}", fields


def retrain(search_dir: Path, trial_id: str | None = None, max_epochs: int | None = None,
            data_fraction: float = 1.0, gpus: float | None = None, seed: int = 0,
            progress: bool = True, optim: dict[str, float] | None = None) -> Path:
    """Retrain, test and export; returns the folder holding ``model.pt`` and ``model.json``.

    ``optim``: options of :class:`textsearch.config.OptimOptions` (``lr``,
    ``one_cycle_max_lr``, ``weight_decay``) that replace the trial's for the retraining.
    """
    search_dir = Path(search_dir)
    summary, trial = choose_trial(search_dir, trial_id)
    settings = SearchSettings.load(search_dir)

    from textsearch.training import train  # torch and Lightning: only to train

    values = {**settings.fixed, **trial["config"], **(optim or {}),
              "max_epochs": max_epochs or settings.max_epochs,
              "data_fraction": data_fraction, "seed": seed,
              "gpus": gpus if gpus is not None else available_gpus()}
    cfg = TrainConfig.from_dict(values)
    out = search_dir / RETRAIN_DIR / trial["trial_id"]
    print(f"retraining trial {trial['trial_id']} of {search_dir} for {cfg.max_epochs} epoch(s) "
          f"on {cfg.data_fraction:g} of the training split -> {out}", flush=True)
    started = time.time()
    bundle = load_bundle(cfg)  # read once, for training, export and model.json
    result = train(cfg, out, bundle=bundle, enable_progress_bar=progress)
    model_file = export(result.best_checkpoint, out)
    cache_key, data_fields = data_key(cfg)
    info = {
        "search": search_dir.resolve().name,
        "trial_id": trial["trial_id"],
        "config": {**cfg.to_dict(), "precision": result.precision},  # auto resolved
        "precision": result.precision,  # what training ran in; model.pt itself is float32
        "metrics": {**{k: v for k, v in result.metrics.items()}, "retrain_s": time.time() - started,
                    "search_" + summary["metric"]: trial.get(f"best_{summary['metric']}")},
        "epochs": cfg.max_epochs,
        "data": {**data_fields, "cache_key": cache_key,
                 "train_examples": int(len(bundle.x_trainval)),
                 "test_examples": int(len(bundle.x_test))},
        "mapping": list(bundle.mapping),
        "input": input_info(cfg, bundle),
        "model_file": model_file.name,
    }
    (out / MODEL_INFO).write_text(json.dumps(info, indent=1, default=str))
    for name in cfg.test_metrics:
        value = result.test_metrics.get(name)
        print(f"{name} = {value:.4f}" if value is not None else f"{name}: n/a")
    print(f"model: {model_file}")
    print(f"model card: {out / MODEL_INFO}")
    return out


def input_info(cfg, bundle) -> dict[str, Any]:
    """What ``model.pt`` takes, for ``model.json``: the input size, scale and stroke colour;
    for a line model also the height, the widest line it was trained on and the CTC blank."""
    info = {"dims": list(bundle.input_dims), "dtype": "float32", "scale": "0..1",
            "strokes": "light on dark, as EMNIST", "kind": "character"}
    if cfg.reads_lines:
        from textsearch.models.ctc import BLANK

        _, height, width = bundle.input_dims
        info.update({"kind": "line", "height": int(height), "max_width": int(width),
                     "blank": BLANK, "window_width": cfg.window_width,
                     "window_stride": cfg.window_stride,
                     "output": "(N, num_classes, steps) scores; greedy CTC decoding"})
    return info


def export(checkpoint: str | None, out: Path) -> Path:
    """The trained model (its best checkpoint, which holds its config) as TorchScript, on
    the CPU."""
    import torch

    from textsearch.training import model_from_checkpoint

    if checkpoint is None:
        raise UserError("the retrained run wrote no checkpoint to export")
    _, lit = model_from_checkpoint(checkpoint)
    model = lit.model.eval().cpu()
    example = torch.zeros(2, *lit.data_info["input_dims"])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript: deprecated, still loads
        scripted = torch.jit.trace(model, example)
    path = out / MODEL_FILE
    scripted.save(str(path))
    return path


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.gpus:
        accelerator_for(args.gpus)  # GPUs this machine lacks: refused before any work
    cli.quiet_library_logs()
    optim = {f.name: getattr(args, f.name) for f in options_of(OptimOptions)
             if hasattr(args, f.name)}
    retrain(Path(args.search_dir), args.trial, args.max_epochs, args.data_fraction, args.gpus,
            args.seed, progress=not args.no_progress, optim=optim)
    return 0


if __name__ == "__main__":
    from textsearch.errors import exit_now

    exit_now(main())
