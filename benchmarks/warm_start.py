"""Warm start: a search warm-started from an older one against a cold search of the same size.

Per seed: an older search (seed + 100), then a cold search and a search warm-started from
the older one (both with the seed), each with textsearch's defaults: the cold search runs
the space's known-good config first, the warm one the old search's best.  The figure: epochs (all trials, in time order) until a
trial comes within 1 point of the cold search's best val_acc; target: warm <= half of cold.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import Mode, per_seed_fmt, progress, search, stats


def epochs_to_reach(search_dir: Path, target: float) -> int | None:
    rows = sorted(progress(search_dir), key=lambda r: r["timestamp"])
    best = -1.0
    for i, r in enumerate(rows, 1):
        best = max(best, r["val_acc"])
        if best >= target:
            return i
    return None


def run(mode: Mode, results: Path) -> dict:
    per_seed = []
    # the shipped defaults: a cold search starts from the space's known-good config, a warm
    # one from the old search's best (and Optuna holds the old trials)
    kw = {"num_samples": mode.search_samples, "max_epochs": mode.search_epochs,
          "data_fraction": mode.search_fraction, "max_failures": 0}
    for seed in range(mode.quality_seeds):
        old = f"warm-old-{seed}"
        search("cnn_emnist", old, results, seed=seed + 100, **kw)
        cold = search("cnn_emnist", f"warm-cold-{seed}", results, seed=seed, **kw)
        warm = search("cnn_emnist", f"warm-warm-{seed}", results, seed=seed,
                      warm_start=str(results / old), **kw)
        target = cold["best"]["val_acc"] - 0.01
        row = {"cold_best": cold["best"]["val_acc"], "warm_best": warm["best"]["val_acc"],
               "cold_epochs": cold["total_epochs"], "warm_epochs": warm["total_epochs"],
               "cold_to_target": epochs_to_reach(results / f"warm-cold-{seed}", target),
               "warm_to_target": epochs_to_reach(results / f"warm-warm-{seed}", target)}
        c, w = row["cold_to_target"], row["warm_to_target"]
        row["ratio"] = None if c is None or w is None else w / c
        per_seed.append(row)
    return {"per_seed": per_seed,
            "ratio": [r["ratio"] for r in per_seed],
            "cold_best": stats([r["cold_best"] for r in per_seed]),
            "warm_best": stats([r["warm_best"] for r in per_seed]),
            "settings": {**kw, "seeds": mode.quality_seeds}}


def met(r: dict) -> bool:
    known = [v for v in r["ratio"] if v is not None]
    return bool(known) and sorted(known)[len(known) // 2] <= 0.5 and len(known) == len(r["ratio"])


def rows(r: dict) -> list[str]:
    return [f"| warm start: epochs to within 1 pt of a cold search's best, warm / cold, per seed | "
            f"{per_seed_fmt(r['ratio'], 2)} | <= 0.5 | {'yes' if met(r) else 'no'} |"]


def section(r: dict) -> list[str]:
    s = r["settings"]
    lines = ["", f"Warm start: `cnn_emnist`, {s['num_samples']} trials, max {s['max_epochs']} epochs, "
             f"{s['data_fraction']:.0%} of the training split, {s['seeds']} seeds. Each warm search "
             "got the trials of an older search of the same size (seed + 100):", "",
             "| seed | cold best val_acc | warm best val_acc | epochs to within 1 pt of cold's best: cold | warm | warm / cold |",
             "|---|---|---|---|---|---|"]
    for seed, p in enumerate(r["per_seed"]):
        ratio = "never" if p["ratio"] is None else f"{p['ratio']:.2f}"
        lines.append(f"| {seed} | {p['cold_best']:.3f} | {p['warm_best']:.3f} | "
                     f"{p['cold_to_target']} | {p['warm_to_target'] or 'never'} | {ratio} |")
    return lines
