"""Search efficiency: TPE + ASHA, random + ASHA and random search without stopping, per seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.common import (
    RESULTS,
    Mode,
    fmt,
    median_or_never,
    per_seed_fmt,
    progress,
    search,
    stats,
)

ARM_A, ARM_B, ARM_C = "a: TPE + ASHA", "b: random + ASHA", "c: random, no early stopping"
ARMS = {ARM_A: ("tpe", "asha"), ARM_B: ("random", "asha"), ARM_C: ("random", "fifo")}


def epochs_to_reach(search_dir: Path, target: float) -> int | None:
    rows = sorted(progress(search_dir), key=lambda r: r["timestamp"])
    best = -1.0
    for i, r in enumerate(rows, 1):
        best = max(best, r["val_acc"])
        if best >= target:
            return i
    return None


def run(mode: Mode, results: Path, plots: Path = RESULTS) -> dict:
    per_seed = []
    for seed in range(mode.seeds):
        runs = {}
        for arm, (searcher, scheduler) in ARMS.items():
            name = f"search-{searcher}-{scheduler}-{seed}"
            summary = search("cnn_emnist", name, results, num_samples=mode.search_samples,
                             max_epochs=mode.search_epochs, data_fraction=mode.search_fraction,
                             seed=seed, searcher=searcher, scheduler=scheduler, max_failures=0,
                             startup_trials=mode.startup_trials)
            best = summary["best"] or {}
            # "dir" is inside --results: the saved JSON names no machine's path
            runs[arm] = {"dir": name, "epochs": summary["total_epochs"],
                         "wall_s": summary["wall_s"], "best_val_acc": best.get("val_acc"),
                         "test_acc": best.get("test_acc")}
        overall = max(r["best_val_acc"] for r in runs.values())
        c_best = runs[ARM_C]["best_val_acc"]
        for r in runs.values():
            r["epochs_to_within_1pt"] = epochs_to_reach(results / r["dir"], overall - 0.01)
            r["epochs_to_within_1pt_of_c"] = epochs_to_reach(results / r["dir"], c_best - 0.01)
        per_seed.append(runs)
    out = {}
    for arm in ARMS:
        vals = [s[arm] for s in per_seed]
        out[arm] = {k: stats([v[k] for v in vals if v[k] is not None])
                    for k in ("epochs", "wall_s", "best_val_acc", "test_acc")}
        # Per seed, None where the arm never got there: a median over such values would mislead.
        for k in ("epochs_to_within_1pt", "epochs_to_within_1pt_of_c"):
            out[arm][k] = [v[k] for v in vals]
    pairs = [(s[ARM_A], s[ARM_C]) for s in per_seed]
    out["a_epochs_over_c_epochs"] = stats([a["epochs"] / c["epochs"] for a, c in pairs])
    out["a_epochs_to_c_best_over_c_epochs"] = [
        None if a["epochs_to_within_1pt_of_c"] is None
        else a["epochs_to_within_1pt_of_c"] / c["epochs"] for a, c in pairs]
    out["per_seed"] = per_seed
    out["settings"] = {"num_samples": mode.search_samples, "max_epochs": mode.search_epochs,
                       "data_fraction": mode.search_fraction, "seeds": mode.seeds,
                       "tpe_startup_trials": mode.startup_trials}
    plot_search(per_seed, results, plots / f"search_efficiency_{mode.name}.png")
    return out


def plot_search(per_seed: list[dict], results: Path, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(per_seed), figsize=(5 * len(per_seed), 3.8), squeeze=False)
    for ax, runs, seed in zip(axes.flat, per_seed, range(len(per_seed))):
        for (arm, r), style in zip(runs.items(), ("-", "--", ":")):
            rows = sorted(progress(results / r["dir"]), key=lambda x: x["timestamp"])
            best = np.maximum.accumulate([x["val_acc"] for x in rows])
            ax.step(range(1, len(best) + 1), best, where="post", label=arm, linestyle=style,
                    lw=2.5 if style == "-" else 1.8)
        ax.set(title=f"seed {seed}", xlabel="epochs trained (all trials)", ylabel="best val_acc")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(loc="lower right", fontsize=9)
    fig.suptitle("Best val_acc against epochs trained")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def section(r: dict) -> list[str]:
    lines: list[str] = []

    s = r["settings"]
    lines += ["", f"Search efficiency: `cnn_emnist`, {s['num_samples']} trials, max {s['max_epochs']} epochs, "
              f"{s['data_fraction']:.0%} of the training split, {s['seeds']} seeds, TPE's first "
              f"{s['tpe_startup_trials']} trials random. Epochs, wall time and accuracies are "
              "median (min-max) over the seeds; the epochs-to-reach columns list each seed "
              "(epochs trained by all trials of the arm, in time order):", "",
              "| arm | epochs trained | wall s | best val_acc | test acc of best | epochs to within 1 pt of best of any arm | epochs to within 1 pt of (c)'s best |",
              "|---|---|---|---|---|---|---|"]
    for arm in ARMS:
        a = r[arm]
        lines.append(f"| {arm} | {fmt(a['epochs'])} | {fmt(a['wall_s'])} | {fmt(a['best_val_acc'], 3)} | "
                     f"{fmt(a['test_acc'], 3)} | {per_seed_fmt(a['epochs_to_within_1pt'])} | "
                     f"{per_seed_fmt(a['epochs_to_within_1pt_of_c'])} |")
    q = r["a_epochs_to_c_best_over_c_epochs"]
    met = sum(v is not None and v <= 1 / 3 for v in q)
    lines += ["", f"(a) trained {fmt(r['a_epochs_over_c_epochs'], 2)} of (c)'s epochs. It came within 1 point of "
              f"(c)'s best after this share of (c)'s epochs, per seed: {per_seed_fmt(q, 2)} "
              f"(target <= 0.33 met in {met} of {len(q)} seeds; median "
              f"{'met' if median_or_never(q) <= 1 / 3 else 'not met'})."]
    return lines
