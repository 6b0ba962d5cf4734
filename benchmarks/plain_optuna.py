"""The hand-written baseline: a plain Optuna loop, one process, no Ray, no Lightning.

What a user would write in 100 lines: Optuna's TPE with its SuccessiveHalvingPruner, the
same define-by-run space as textsearch (``--space``), the same data slice, the same models,
and a plain PyTorch training loop using every core.  Each epoch's end is printed as one JSON
line (``{"trial", "epoch", "val_acc", "t", "epoch_s"}``, ``t`` in seconds from the start), after
a line with each trial's config (``{"trial", "config"}``), then the best: its val_acc, the
test accuracy of the model that reached it (kept in memory, tested once the search ends, as
textsearch tests its best), and the wall time.

    python benchmarks/plain_optuna.py --space cnn_emnist --num_samples 8 --max_epochs 3 \\
        --data_fraction 0.05 --seed 0
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

START = time.time()  # the command's start, before the imports it pays for too

import optuna  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from textsearch import spaces  # noqa: E402
from textsearch.data.base import uint8_to_float  # noqa: E402
from textsearch.training import TrainConfig, make_datamodule, make_model  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="cnn_emnist")
    p.add_argument("--num_samples", type=int, default=8)
    p.add_argument("--max_epochs", type=int, default=3)
    p.add_argument("--data_fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--startup_trials", type=int, default=None)
    p.add_argument("--pruner", choices=("sha", "none"), default="sha",
                   help="sha: Optuna's SuccessiveHalvingPruner; none: every trial to max_epochs")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(torch.get_num_threads())  # every core: one process, one trial at a time
    space = spaces.load(args.space)
    fixed = {**space.defaults.fixed, "data_fraction": args.data_fraction}
    dm = make_datamodule(TrainConfig.from_dict(fixed))
    dm.prepare_data()
    bundle = dm.get_bundle()
    startup = args.startup_trials or max(2, min(10, args.num_samples // 2))

    kept = {"val_acc": -1.0, "model": None, "data": None}  # the best epoch's model so far

    def evaluate(model, loader) -> float:
        model.eval()
        correct = total = 0
        with torch.inference_mode():
            for x, y in loader:
                correct += int((model(uint8_to_float(x)).argmax(1) == y).sum())
                total += len(y)
        return correct / total

    def objective(trial: optuna.Trial) -> float:
        extra = space.space(trial) or {}
        print(json.dumps({"trial": trial.number, "config": {**trial.params, **extra}}), flush=True)
        cfg = TrainConfig.from_dict({**fixed, **trial.params, **extra, "num_workers": 0,
                                     "max_epochs": args.max_epochs})
        torch.manual_seed(args.seed + trial.number)
        data = make_datamodule(cfg, bundle)
        data.setup()
        model = make_model(cfg, tuple(bundle.input_dims), bundle.output_dims[0])
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn = torch.nn.CrossEntropyLoss()
        val_acc = 0.0
        for epoch in range(1, args.max_epochs + 1):
            epoch_start = time.time()
            model.train()
            for x, y in data.train_dataloader():
                opt.zero_grad()
                loss_fn(model(uint8_to_float(x)), y).backward()
                opt.step()
            val_acc = evaluate(model, data.val_dataloader())
            if val_acc > kept["val_acc"]:
                kept.update(val_acc=val_acc, model=copy.deepcopy(model), data=data)
            print(json.dumps({"trial": trial.number, "epoch": epoch, "val_acc": val_acc,
                              "t": time.time() - START, "epoch_s": time.time() - epoch_start}),
                  flush=True)
            trial.report(val_acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return val_acc

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=startup),
        pruner=optuna.pruners.SuccessiveHalvingPruner() if args.pruner == "sha"
        else optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=args.num_samples)
    best = max((v for t in study.trials for v in t.intermediate_values.values()), default=None)
    test_acc = evaluate(kept["model"], kept["data"].test_dataloader()) if kept["model"] else None
    print(json.dumps({"best_val_acc": best, "test_acc": test_acc, "wall_s": time.time() - START}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
