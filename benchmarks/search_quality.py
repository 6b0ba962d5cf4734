"""Search quality: textsearch as shipped against random search run to the end and a plain
Optuna loop, on ``cnn_emnist`` and the real sample, at the budgets users run, over seeds.

Per budget and seed the arms run one after the other, each as a user runs it (a command,
timed from its start to its end), the order rotated from seed to seed:

- ``textsearch``: ``python -m textsearch.tune`` with its defaults (sampler, start-up trials,
  the space's known-good first trial, ASHA chosen from the budget);
- ``random``: the same command with ``--searcher random --scheduler fifo --no_first_trial``:
  every trial to ``max_epochs``, the reference a user would write first;
- ``plain``: ``benchmarks/plain_optuna.py``, Optuna's TPE and its successive-halving pruner in
  one process (the 100-line script).

Candidate defaults are measured the same way, as further arms of textsearch with flags
(``python benchmarks/search_quality.py --arm NAME="--searcher gp" ...``).

Reported per seed and as a median (min-max): best val_acc, the test accuracy of that best,
epochs trained by all trials, wall time, and the anytime curve (best val_acc so far against
wall time, every arm in one plot per seed, saved as PNG).  A difference between two arms is
called larger than the seed-to-seed spread when its median over the paired seeds exceeds the
standard deviation over seeds of the reference arm's best val_acc.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO, RESULTS, Mode, fmt, machine, progress, stats  # noqa: E402

SPACE = "cnn_emnist"
BUDGETS = ((8, 3, 0.05), (30, 6, 0.10))  # (trials, max epochs per trial, share of the training split)
TEXTSEARCH, RANDOM, PLAIN = "textsearch", "random", "plain"
ARMS = {TEXTSEARCH: [], RANDOM: ["--searcher", "random", "--scheduler", "fifo", "--no_first_trial"],
        PLAIN: None}  # None: benchmarks/plain_optuna.py
EPOCH_RATIO, WALL_RATIO, TOLERANCE = 0.6, 0.6, 0.003  # the targets (see rows())


def budget_flags(budget: tuple[int, int, float], seed: int) -> list[str]:
    n, epochs, fraction = budget
    return ["--space", SPACE, "--seed", str(seed), "--num_samples", str(n),
            "--max_epochs", str(epochs), "--data_fraction", str(fraction)]


def run_textsearch(flags: list[str], budget: tuple, seed: int, results: Path, name: str) -> dict:
    """One search as a user types it; its record read back from the folder it wrote."""
    search_dir = results / name
    summary_file = search_dir / "summary.json"
    if summary_file.exists() and (search_dir / "wall.json").exists():  # finished earlier
        wall = json.loads((search_dir / "wall.json").read_text())
    else:
        argv = [sys.executable, "-m", "textsearch.tune", *budget_flags(budget, seed),
                "--results_dir", str(results), "--name", name, "--no_report", *flags]
        start = time.time()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
        wall = {"start": start, "wall_s": time.time() - start}
        if done.returncode != 0:
            raise RuntimeError(f"{name}: {done.stderr[-2000:]}")
        (search_dir / "wall.json").write_text(json.dumps(wall))
    summary = json.loads(summary_file.read_text())
    rows = progress(search_dir)
    curve = sorted((r["epoch_end_at"] - wall["start"], r["val_acc"]) for r in rows)
    best = summary["best"] or {}
    return {"dir": name, "wall_s": wall["wall_s"], "epochs": len(rows), "curve": curve,
            "best_val_acc": max(v for _, v in curve), "test_acc": best.get("test_acc")}


def run_plain(budget: tuple, seed: int, results: Path, name: str) -> dict:
    out = results / f"{name}.jsonl"
    if not out.exists():
        argv = [sys.executable, str(REPO / "benchmarks" / "plain_optuna.py"),
                *budget_flags(budget, seed)]
        start = time.time()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            raise RuntimeError(f"{name}: {done.stderr[-2000:]}")
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        out.write_text("\n".join([*lines, json.dumps({"command_wall_s": time.time() - start})]))
    lines = [json.loads(ln) for ln in out.read_text().splitlines()]
    epochs = [ln for ln in lines if "epoch" in ln]
    end = next(ln for ln in lines if "best_val_acc" in ln)
    wall = next(ln for ln in lines if "command_wall_s" in ln)["command_wall_s"]
    curve = sorted((ln["t"], ln["val_acc"]) for ln in epochs)
    return {"dir": out.name, "wall_s": wall, "epochs": len(curve), "curve": curve,
            "best_val_acc": max(v for _, v in curve), "test_acc": end["test_acc"]}


def best_at(curve: list[tuple[float, float]], t: float) -> float | None:
    """The best val_acc an arm had reached ``t`` seconds after its command started."""
    seen = [v for s, v in curve if s <= t]
    return max(seen) if seen else None


def budget_name(budget: tuple[int, int, float]) -> str:
    return f"{budget[0]}x{budget[1]}"


def arm_order(names: list[str], seed: int) -> list[str]:
    """The order the arms run in for one seed: rotated by one from seed to seed, so no arm
    always runs first (on a warm or a tired machine)."""
    k = seed % len(names)
    return names[k:] + names[:k]


def run_budget(budget: tuple[int, int, float], seeds: int, results: Path,
               arms: dict[str, list[str] | None], first_seed: int = 0) -> dict:
    name_of_budget = budget_name(budget)
    names = list(arms)
    per_seed = []
    for seed in range(first_seed, first_seed + seeds):
        runs = {}
        for arm in arm_order(names, seed):
            name = f"quality-{name_of_budget}-{arm}-{seed}"
            print(f"[search_quality] {name_of_budget} seed {seed}: {arm}", file=sys.stderr,
                  flush=True)
            runs[arm] = (run_plain(budget, seed, results, name) if arms[arm] is None
                         else run_textsearch(arms[arm], budget, seed, results, name))
        per_seed.append({"seed": seed, "arms": {a: runs[a] for a in names}})
    return summarize(budget, per_seed, names)


def summarize(budget: tuple[int, int, float], per_seed: list[dict], names: list[str]) -> dict:
    out: dict = {"budget": dict(zip(("num_samples", "max_epochs", "data_fraction"), budget)),
                 "arms": names, "per_seed": per_seed, "seeds": [s["seed"] for s in per_seed]}
    for arm in names:
        out[arm] = {k: stats([s["arms"][arm][k] for s in per_seed
                              if s["arms"][arm][k] is not None])
                    for k in ("best_val_acc", "test_acc", "epochs", "wall_s")}
    # one seed has no seed-to-seed spread: no difference is called larger than it
    spread = {arm: statistics.pstdev([s["arms"][arm]["best_val_acc"] for s in per_seed])
              if len(per_seed) > 1 else None for arm in names}
    out["spread"] = spread
    # every textsearch arm (the shipped one and candidates) against each reference arm
    out["versus"] = {arm: {ref: compare(per_seed, arm, ref, spread[ref])
                           for ref in (RANDOM, PLAIN) if ref in names}
                     for arm in names if arm not in (RANDOM, PLAIN)}
    return out


def compare(per_seed: list[dict], arm: str, ref: str, ref_spread: float | None) -> dict:
    """``arm`` against ``ref``, seed by seed: best val_acc difference, epoch and wall ratios,
    and in how many seeds ``arm`` was at or ahead of ``ref`` when ``arm``'s command ended."""
    pairs = [(s["arms"][arm], s["arms"][ref]) for s in per_seed]
    diff = [a["best_val_acc"] - b["best_val_acc"] for a, b in pairs]
    at_end = [(a["best_val_acc"], best_at(b["curve"], a["wall_s"])) for a, b in pairs]
    return {"val_acc_diff": stats(diff), "per_seed_diff": diff,
            "larger_than_spread": (None if ref_spread is None
                                   else abs(statistics.median(diff)) > ref_spread),
            "epoch_ratio": stats([a["epochs"] / b["epochs"] for a, b in pairs]),
            "wall_ratio": stats([a["wall_s"] / b["wall_s"] for a, b in pairs]),
            "ahead_at_equal_wall": sum(b is None or a >= b for a, b in at_end)}


def run(mode: Mode, results: Path, plots: Path = RESULTS) -> dict:
    out = {}
    for budget in mode.quality_budgets:
        name = budget_name(budget)
        out[name] = run_budget(budget, mode.quality_seeds, results, ARMS)
        plot(out[name], plots / f"search_quality_{name}_{mode.name}.png")
    return out


def plot(r: dict, path: Path) -> None:
    """Best val_acc so far against wall time: one panel per seed, every arm in each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = r["per_seed"]
    width = max(4.2 * len(seeds), 7.0)  # one seed's panel still holds the title
    fig, axes = plt.subplots(1, len(seeds), figsize=(width, 3.6), squeeze=False, sharey=True)
    for ax, s in zip(axes.flat, seeds):
        for arm in r["arms"]:
            curve = s["arms"][arm]["curve"]
            t = [0.0, *(c[0] for c in curve), s["arms"][arm]["wall_s"]]
            best = [float("nan"), *itertools.accumulate((c[1] for c in curve), max)]
            best.append(best[-1])
            ax.step(t, best, where="post", label=arm, lw=2.2 if arm == TEXTSEARCH else 1.5)
        ax.set(title=f"seed {s['seed']}", xlabel="wall time (s)")
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("best val_acc so far")
    axes.flat[0].legend(loc="lower right", fontsize=8)
    b = r["budget"]
    fig.suptitle(f"{SPACE}: {b['num_samples']} trials x <= {b['max_epochs']} epochs on "
                 f"{b['data_fraction']:.0%} of the training split")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def met(r: dict) -> dict[str, bool]:
    """Each target of one budget: against random (accuracy, epochs), against the plain loop
    (accuracy, wall, ahead at equal wall time in all but one seed)."""
    ts, vs = r[TEXTSEARCH], r["versus"][TEXTSEARCH]
    n = len(r["per_seed"])
    return {
        "random_acc": ts["best_val_acc"]["median"] >= r[RANDOM]["best_val_acc"]["median"],
        "random_epochs": vs[RANDOM]["epoch_ratio"]["median"] <= EPOCH_RATIO,
        "plain_acc": ts["best_val_acc"]["median"] >= r[PLAIN]["best_val_acc"]["median"] - TOLERANCE,
        "plain_wall": vs[PLAIN]["wall_ratio"]["median"] <= WALL_RATIO,
        "plain_ahead": vs[PLAIN]["ahead_at_equal_wall"] >= n - 1,
    }


def yes(ok: bool) -> str:
    return "yes" if ok else "no"


def rows(res: dict) -> list[str]:
    out = []
    for name, r in res.items():
        if not isinstance(r, dict) or {RANDOM, PLAIN} - set(r.get("versus", {}).get(TEXTSEARCH, {})):
            continue
        m, vs, n = met(r), r["versus"][TEXTSEARCH], len(r["per_seed"])
        out.append(f"| search quality {name}: textsearch best val_acc - random-to-the-end's "
                   f"(epochs, textsearch / random), {n} seeds | "
                   f"{fmt(vs[RANDOM]['val_acc_diff'], 3)} ({fmt(vs[RANDOM]['epoch_ratio'], 2)}x) | "
                   f">= 0 at <= {EPOCH_RATIO}x | {yes(m['random_acc'] and m['random_epochs'])} |")
        out.append(f"| search quality {name}: textsearch best val_acc - plain loop's "
                   f"(wall, textsearch / plain; seeds at or ahead at equal wall time) | "
                   f"{fmt(vs[PLAIN]['val_acc_diff'], 3)} ({fmt(vs[PLAIN]['wall_ratio'], 2)}x; "
                   f"{vs[PLAIN]['ahead_at_equal_wall']} of {n}) | >= -{TOLERANCE} at <= "
                   f"{WALL_RATIO}x; >= {n - 1} of {n} | "
                   f"{yes(m['plain_acc'] and m['plain_wall'] and m['plain_ahead'])} |")
    return out


def section(res: dict) -> list[str]:
    lines: list[str] = []
    for r in res.values():
        if not isinstance(r, dict) or "per_seed" not in r:
            continue
        b = r["budget"]
        lines += ["", f"Search quality, `{SPACE}`, {b['num_samples']} trials x at most "
                  f"{b['max_epochs']} epochs on {b['data_fraction']:.0%} of the training split, "
                  f"seeds {', '.join(map(str, r['seeds']))}; median (min-max) over the seeds, "
                  "then each seed:", "",
                  "| arm | best val_acc | test acc of that best | epochs | wall s | best val_acc per seed |",
                  "|---|---|---|---|---|---|"]
        for arm in r["arms"]:
            a = r[arm]
            per = ", ".join(f"{s['arms'][arm]['best_val_acc']:.3f}" for s in r["per_seed"])
            lines.append(f"| {arm} | {fmt(a['best_val_acc'], 3)} | {fmt(a['test_acc'], 3)} | "
                         f"{fmt(a['epochs'])} | {fmt(a['wall_s'])} | {per} |")
        for arm, versus in r.get("versus", {}).items():
            for other, v in versus.items():
                per = ", ".join(f"{d:+.3f}" for d in v["per_seed_diff"])
                if v["larger_than_spread"] is None:
                    spread = "one seed: no seed-to-seed spread to compare it with"
                else:
                    spread = (f"{other}'s seed-to-seed standard deviation "
                              f"{r['spread'][other]:.3f}: the median difference is "
                              f"{'larger' if v['larger_than_spread'] else 'not larger'} than "
                              "that spread")
                lines.append(
                    f"\n{arm} - {other}: best val_acc {fmt(v['val_acc_diff'], 3)} (per seed {per}; "
                    f"{spread}); epochs {fmt(v['epoch_ratio'], 2)}x, wall "
                    f"{fmt(v['wall_ratio'], 2)}x; at or ahead of {other} when {arm} ended in "
                    f"{v['ahead_at_equal_wall']} of {len(r['per_seed'])} seeds.")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Measure candidate defaults beside the shipped ones, without the runner's table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", choices=[budget_name(b) for b in BUDGETS], default="8x3")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first_seed", type=int, default=0)
    p.add_argument("--results", required=True, help="folder for the searches (reused if there)")
    p.add_argument("--arm", action="append", default=[], metavar='NAME="FLAGS"',
                   help="a further textsearch arm: its name and textsearch.tune flags")
    p.add_argument("--only", default=",".join(ARMS), help="of the standard arms, these")
    p.add_argument("--out", help="JSON file for the result (default: under --results)")
    args = p.parse_args(argv)
    arms = {a: ARMS[a] for a in args.only.split(",") if a}
    for spec in args.arm:
        name, _, flags = spec.partition("=")
        arms[name] = shlex.split(flags)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    budget = next(b for b in BUDGETS if budget_name(b) == args.budget)
    r = run_budget(budget, args.seeds, results, arms, args.first_seed)
    r["machine"] = machine()
    out = Path(args.out or results / f"search_quality_{args.budget}.json")
    out.write_text(json.dumps(r, indent=1))
    plot(r, out.with_suffix(".png"))
    print("\n".join(section({args.budget: r})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
