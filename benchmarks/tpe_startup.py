"""TPE's start-up trials: the best of a 10-trial TPE search for each start-up count (a 1-epoch proxy)."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.common import (
    Mode,
    fmt,
    stats,
)
from textsearch import spaces
from textsearch.data import EMNIST, DataConfig
from textsearch.data.base import uint8_to_float
from textsearch.training import TrainConfig, make_model

STARTUP_CHOICES = (2, 3, 5, 10)


def proxy_objective(fraction: float, cache: dict):
    """``cnn_emnist``'s parameters -> val_acc after 1 epoch on ``fraction`` of the data.

    A plain PyTorch loop, 1 thread, seeded: the same parameters give the same value, so
    results are cached across arms (their random start-up trials coincide).
    """
    dm = EMNIST(DataConfig(data_fraction=fraction))
    dm.setup()
    space = spaces.load("cnn_emnist")

    def objective(trial) -> float:
        ret = space.space(trial) or {}
        params = {**trial.params, **ret}
        key = json.dumps(params, sort_keys=True)
        if key not in cache:
            torch.manual_seed(0)
            cfg = TrainConfig.from_dict({**space.defaults.fixed, **params, "data_fraction": fraction})
            dm.config.batch_size = cfg.batch_size
            model = make_model(cfg, (1, 28, 28), 83)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
            model.train()
            for x, y in dm._loader(dm.data_train, shuffle=True):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(uint8_to_float(x)), y).backward()
                opt.step()
            model.eval()
            correct = total = 0
            with torch.inference_mode():
                for x, y in dm._loader(dm.data_val, shuffle=False):
                    correct += int((model(uint8_to_float(x)).argmax(1) == y).sum())
                    total += len(y)
            cache[key] = correct / total
        return cache[key]

    return objective


def run(mode: Mode, results: Path | None = None) -> dict:
    """Best val_acc of a 10-trial TPE search (multivariate, group) for each start-up count."""
    import optuna

    from textsearch.study import default_startup_trials, make_sampler

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cache: dict = {}
    objective = proxy_objective(mode.tpe_fraction, cache)
    best: dict[int, list[float]] = {k: [] for k in STARTUP_CHOICES}
    after: dict[int, list[float]] = {k: [] for k in STARTUP_CHOICES}
    mean_all: dict[int, list[float]] = {k: [] for k in STARTUP_CHOICES}
    for seed in range(mode.tpe_seeds):
        for k in STARTUP_CHOICES:
            study = optuna.create_study(direction="maximize",
                                        sampler=make_sampler("tpe", seed, k))
            study.optimize(objective, n_trials=mode.tpe_trials)
            values = [t.value for t in study.trials]
            best[k].append(max(values))
            after[k].append(statistics.mean(values[k:]) if k < len(values) else float("nan"))
            mean_all[k].append(statistics.mean(values))
            print(f"[tpe_startup] seed {seed} start-up {k}: best {max(values):.3f}",
                  file=sys.stderr, flush=True)
    return {"trials": mode.tpe_trials, "seeds": mode.tpe_seeds, "fraction": mode.tpe_fraction,
            "best_val_acc": {k: stats(v) for k, v in best.items()},
            "best_per_seed": best, "mean_after_startup": {k: stats(v) for k, v in after.items()},
            "mean_all": {k: stats(v) for k, v in mean_all.items()},
            "default_for_trials": default_startup_trials(mode.tpe_trials),
            "distinct_configs_trained": len(cache)}


def section(r: dict) -> list[str]:
    lines = ["", f"TPE start-up trials: best val_acc of a {r['trials']}-trial TPE search (multivariate, "
             f"grouped) of `cnn_emnist`'s parameters, each trial 1 epoch on {r['fraction']:.0%} of the "
             f"training split (plain loop, seeded), {r['seeds']} seeds; {r['trials']} start-up trials "
             "is a random search:", "",
             "| start-up trials | best val_acc, median (min-max) | per seed | mean val_acc of all trials | of the TPE-proposed trials |",
             "|---|---|---|---|---|"]
    for k, v in r["best_val_acc"].items():
        m = r["mean_after_startup"][k]
        after = "-" if m is None or math.isnan(m["median"]) else fmt(m, 3)
        lines.append(f"| {k} | {fmt(v, 3)} | {', '.join(f'{x:.3f}' for x in r['best_per_seed'][k])} | "
                     f"{fmt(r['mean_all'][k], 3)} | {after} |")
    from textsearch.study import STARTUP_RULE, default_startup_trials

    lines.append(f"\nDefault for {r['trials']} trials: {default_startup_trials(r['trials'])} "
                 f"({STARTUP_RULE}).")
    return lines
