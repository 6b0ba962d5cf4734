"""Precision: bf16-mixed against fp32, for speed and for accuracy.

Speed: the eight configs of ``benchmarks/spaces/fixed_cnn.py``, one thread as in a search
trial, random batches, forward and loss under ``torch.autocast("cpu", torch.bfloat16)`` (what
Lightning's ``bf16-mixed`` does) against plain fp32, alternately, ``mode.reps`` times.

Accuracy: three of those configs x two seeds, each trained by ``textsearch.training.train``
in ``32`` and in ``bf16-mixed`` on the same data (``mode.precision_fraction`` of the training
split, ``mode.precision_epochs`` epochs); its best checkpoint's validation and test accuracy.
Parity: the median bf16 - fp32 difference of each is within 0.3 points.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from benchmarks.common import Mode, compare_rates, rates_table, ratio_range, samples_per_s
from benchmarks.spaces.fixed_cnn import CONFIGS
from textsearch.training import TrainConfig, make_model, train

CLASSES = 62
PARITY_POINTS = 0.3
ACCURACY_CONFIGS = 3
SEEDS = (0, 1)


def train_rate(config: dict, bf16: bool, seconds: float) -> float:
    cfg = TrainConfig.from_dict({"data_class": "EMNIST", "model_class": "CNN", **config})
    torch.manual_seed(0)
    model = make_model(cfg, (1, 28, 28), CLASSES)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(cfg.batch_size, 1, 28, 28)
    y = torch.randint(0, CLASSES, (cfg.batch_size,))

    def step():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return samples_per_s(step, cfg.batch_size, seconds)


def accuracy_runs(mode: Mode, results: Path) -> list[dict]:
    torch.set_num_threads(2)
    runs = []
    for i, config in enumerate(CONFIGS[:ACCURACY_CONFIGS]):
        for seed in SEEDS:
            for precision in ("32", "bf16-mixed"):  # alternating
                cfg = TrainConfig.from_dict({"data_class": "EMNIST", "model_class": "CNN",
                                             **config, "seed": seed, "precision": precision,
                                             "max_epochs": mode.precision_epochs,
                                             "data_fraction": mode.precision_fraction})
                out = train(cfg, results / "precision" / f"c{i}-s{seed}-{precision}",
                            enable_progress_bar=False)
                runs.append({"config": i, "seed": seed, "precision": out.precision,
                             "val_acc": out.metrics["best_val_acc"], "test_acc": out.test_acc})
    return runs


def run(mode: Mode, results: Path) -> dict:
    speed = compare_rates(CONFIGS[: mode.fixed_samples], train_rate, ("fp32", "bf16"),
                          mode.reps, mode.fusion_seconds / 2)
    runs = accuracy_runs(mode, results)
    diffs = {}
    for metric in ("val_acc", "test_acc"):
        pairs = {}
        for r in runs:
            pairs.setdefault((r["config"], r["seed"]), {})[r["precision"]] = r[metric]
        diffs[metric] = [100 * (p["bf16-mixed"] - p["32"]) for p in pairs.values()]
    median = {m: statistics.median(d) for m, d in diffs.items()}
    parity = all(abs(v) <= PARITY_POINTS for v in median.values())
    return {"speed": speed, "runs": runs, "diff_points": diffs, "median_diff_points": median,
            "parity": parity, "epochs": mode.precision_epochs,
            "fraction": mode.precision_fraction}


def rows(r: dict) -> list[str]:
    m = r["median_diff_points"]
    return [f"| bf16 / fp32 training samples/s, {len(r['speed'])} `cnn_emnist` configs, "
            f"1 thread | {ratio_range(r['speed'])} | report it | - |",
            f"| accuracy parity, bf16-mixed - 32, {ACCURACY_CONFIGS} configs x {len(SEEDS)} "
            f"seeds ({r['epochs']} epochs on {r['fraction']:.0%}): median val_acc, test_acc "
            f"difference | {m['val_acc']:+.2f}, {m['test_acc']:+.2f} points | within "
            f"±{PARITY_POINTS} points | {'yes' if r['parity'] else 'no'} |"]


def section(r: dict) -> list[str]:
    lines = ["", "Training samples/s in bf16 autocast against fp32 (1 thread, channels_last), "
             "the configs of `benchmarks/spaces/fixed_cnn.py`, median (min-max):", "",
             *rates_table(r["speed"], ("fp32", "bf16"), ("fp32", "bf16"))]
    lines += ["", f"Accuracy in each precision ({r['epochs']} epochs on {r['fraction']:.0%} of "
              "the training split, best checkpoint):", "",
              "| config | seed | precision | val_acc | test_acc |", "|---|---|---|---|---|"]
    for run in r["runs"]:
        lines.append(f"| {run['config']} | {run['seed']} | {run['precision']} | "
                     f"{run['val_acc']:.4f} | {run['test_acc']:.4f} |")
    return lines
