"""textsearch against a hand-written Optuna loop, on the same space, budget and data slice.

Per repetition (same seed for both), alternating: ``python -m textsearch.tune`` and
``benchmarks/plain_optuna.py`` (TPE + SuccessiveHalvingPruner, one process), each as a user
runs it, from the command's start to its end.  Reported: wall time, epochs trained, best
val_acc, and seconds until an epoch came within 1 point of the best val_acc of either arm.

Which configs a search proposes and which trials its pruner stops differ between the arms
(TPE sees concurrent trials' results later; ASHA and successive halving cut differently), and
one expensive config can double a run's wall time.  So each repetition also runs both arms on
the same work: the eight fixed configs of ``benchmarks/spaces/fixed_cnn.py``, every one to
the same number of epochs, no early stopping.  That ratio is the systems' own.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import BENCH_SPACES, REPO, Mode, fmt, per_seed_fmt, progress, stats

SPACE = "cnn_emnist"
FIXED_SPACE = str(BENCH_SPACES / "fixed_cnn.py")


def budget(mode: Mode) -> dict:
    return {"num_samples": mode.plain_samples, "max_epochs": mode.plain_epochs,
            "data_fraction": mode.plain_fraction}


def fixed_budget(mode: Mode) -> dict:
    return {"num_samples": mode.fixed_samples, "max_epochs": mode.fixed_epochs,
            "data_fraction": mode.plain_fraction}


def timed_run(mode: Mode, seed: int, *command: str, fixed: bool = False
              ) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run one arm as a user would, with the space, seed and budget: (process, start, wall s).

    ``fixed``: the same-configs run, every trial to max_epochs."""
    argv = [sys.executable, *command, "--space", FIXED_SPACE if fixed else SPACE,
            "--seed", str(seed)]
    for k, v in (fixed_budget(mode) if fixed else budget(mode)).items():
        argv += [f"--{k}", str(v)]
    start = time.time()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    wall = time.time() - start
    assert done.returncode == 0, done.stderr[-2000:]
    return done, start, wall


def run_textsearch(mode: Mode, results: Path, seed: int, fixed: bool = False,
                   one_at_a_time: bool = False) -> dict:
    """``one_at_a_time``: one trial with both threads (``--max_concurrent 1 --cpus_per_trial
    2``), as the plain loop trains."""
    name = f"plain-textsearch-{'fixed-' if fixed else ''}{'1x2-' if one_at_a_time else ''}{seed}"
    done, start, wall = timed_run(
        mode, seed, "-m", "textsearch.tune", "--results_dir", str(results), "--name", name,
        "--no_report", *(["--scheduler", "fifo"] if fixed else []),
        *(["--max_concurrent", "1", "--cpus_per_trial", "2"] if one_at_a_time else []),
        fixed=fixed)
    rows = progress(results / name)
    configs = [json.loads(p.read_text()) for p in sorted((results / name).glob("trial_*/config.json"))]
    curve = sorted((r["epoch_end_at"] - start, r["val_acc"]) for r in rows)
    # per-epoch cost beside the training loop: the epoch's checkpoint and its report (the
    # report of epoch n is measured in epoch n + 1's row)
    ckpt = [r["checkpoint_s"] for r in rows]
    report = [r["report_s"] for r in rows if r["epoch"] > 1]
    epoch = [r["epoch_s"] for r in rows]
    return {"wall_s": wall, "epochs": len(rows), "curve": curve,
            "best_val_acc": max(v for _, v in curve),
            "checkpoint_s": statistics.median(ckpt), "report_s": statistics.median(report or [0.0]),
            "epoch_s": statistics.median(epoch), "epoch_s_sum": sum(epoch), "configs": configs,
            "first_batch_s": min(r["first_batch_at"] for r in rows) - start,
            "last_epoch_end_s": max(r["epoch_end_at"] for r in rows) - start}


def run_plain(mode: Mode, seed: int, fixed: bool = False) -> dict:
    done, _, wall = timed_run(mode, seed, str(REPO / "benchmarks" / "plain_optuna.py"),
                              *(["--pruner", "none"] if fixed else []), fixed=fixed)
    lines = [json.loads(ln) for ln in done.stdout.splitlines() if ln.startswith("{")]
    epochs = [ln for ln in lines if "epoch" in ln]
    curve = sorted((ln["t"], ln["val_acc"]) for ln in epochs)
    return {"wall_s": wall, "epochs": len(curve), "curve": curve,
            "best_val_acc": max(v for _, v in curve),
            "configs": [ln["config"] for ln in lines if "config" in ln],
            "epoch_s": statistics.median(ln["epoch_s"] for ln in epochs),
            "epoch_s_sum": sum(ln["epoch_s"] for ln in epochs)}


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, v in curve if v >= target), None)


def run(mode: Mode, results: Path) -> dict:
    reps = []
    for seed in range(mode.reps):
        ts = run_textsearch(mode, results, seed)
        plain = run_plain(mode, seed)
        target = max(ts["best_val_acc"], plain["best_val_acc"]) - 0.01
        for arm in (ts, plain):
            arm["s_to_within_1pt"] = time_to(arm["curve"], target)
        fixed_ts = run_textsearch(mode, results, seed, fixed=True)
        fixed_plain = run_plain(mode, seed, fixed=True)
        fixed_1x2 = run_textsearch(mode, results, seed, fixed=True, one_at_a_time=True)
        reps.append({"textsearch": ts, "plain": plain,
                     "wall_ratio": ts["wall_s"] / plain["wall_s"],
                     "val_acc_diff": ts["best_val_acc"] - plain["best_val_acc"],
                     "fixed": {"textsearch": fixed_ts, "plain": fixed_plain,
                               "textsearch_1x2": fixed_1x2,
                               "wall_ratio": fixed_ts["wall_s"] / fixed_plain["wall_s"],
                               "wall_ratio_1x2": fixed_1x2["wall_s"] / fixed_plain["wall_s"]}})
    out = {"reps": reps, "budget": budget(mode), "wall_ratio": stats([r["wall_ratio"] for r in reps]),
           "val_acc_diff": stats([r["val_acc_diff"] for r in reps]),
           "fixed_budget": fixed_budget(mode)}
    out["fixed"] = {k: stats([r["fixed"][k] for r in reps]) for k in ("wall_ratio", "wall_ratio_1x2")}
    for arm in ("textsearch", "plain", "textsearch_1x2"):
        out["fixed"][arm] = {k: stats([r["fixed"][arm][k] for r in reps])
                             for k in ("wall_s", "epochs", "epoch_s", "epoch_s_sum")}
    for arm in ("textsearch", "textsearch_1x2"):
        out["fixed"][arm].update({k: stats([r["fixed"][arm][k] for r in reps])
                                  for k in ("first_batch_s", "last_epoch_end_s")})
    for arm in ("textsearch", "plain"):
        out[arm] = {k: stats([r[arm][k] for r in reps if r[arm][k] is not None])
                    for k in ("wall_s", "epochs", "best_val_acc", "s_to_within_1pt")}
    out["epoch_cost"] = {k: stats([r["textsearch"][k] for r in reps])
                         for k in ("checkpoint_s", "report_s", "epoch_s")}
    return out


TARGET, STRETCH = 0.6, 0.5  # textsearch wall / plain wall, at best val_acc >= plain's - 0.5 pt


def met(r: dict) -> bool:
    return r["wall_ratio"]["median"] <= TARGET and r["val_acc_diff"]["median"] >= -0.005


def rows(r: dict) -> list[str]:
    out = [f"| same space and budget as a plain Optuna loop: textsearch wall / plain wall "
           f"(best val_acc difference) | {fmt(r['wall_ratio'], 2)}x "
           f"({fmt(r['val_acc_diff'], 3)}) | <= {TARGET}x (stretch {STRETCH}x), difference "
           f">= -0.005 | {'yes' if met(r) else 'no'} |"]
    if "fixed" in r:
        out.append(f"| same {r['fixed_budget']['num_samples']} fixed configs, "
                   f"{r['fixed_budget']['max_epochs']} epochs each, no early stopping: "
                   f"textsearch wall / plain wall, 2 trials x 1 thread; 1 trial x 2 threads | "
                   f"{fmt(r['fixed']['wall_ratio'], 2)}x; {fmt(r['fixed']['wall_ratio_1x2'], 2)}x | "
                   f"<= {TARGET}x (the systems alone) | "
                   f"{'yes' if r['fixed']['wall_ratio']['median'] <= TARGET else 'no'} |")
    return out


def section(r: dict) -> list[str]:
    b = r["budget"]
    lines = ["", f"textsearch against a plain Optuna loop: `{SPACE}`, {b['num_samples']} trials, "
             f"at most {b['max_epochs']} epochs, {b['data_fraction']:.0%} of the training split, "
             f"{len(r['reps'])} repetitions (seeds 0..), arms alternating; median (min-max):", "",
             "| arm | wall s | epochs | best val_acc | s to within 1 pt of the best of both, per seed |",
             "|---|---|---|---|---|"]
    for arm in ("textsearch", "plain"):
        a = r[arm]
        lines.append(f"| {arm} | {fmt(a['wall_s'])} | {fmt(a['epochs'])} | "
                     f"{fmt(a['best_val_acc'], 3)} | "
                     f"{per_seed_fmt([rep[arm]['s_to_within_1pt'] for rep in r['reps']])} |")
    f = r.get("fixed")
    if f:
        b = r["fixed_budget"]
        ts, pl, one = f["textsearch"], f["plain"], f["textsearch_1x2"]
        lines += ["", f"The same work in both arms: the {b['num_samples']} configs of "
                  f"`{Path(FIXED_SPACE).relative_to(REPO)}`, {b['max_epochs']} epochs each, no early stopping, "
                  f"{b['data_fraction']:.0%} of the training split; median (min-max):", "",
                  "| arm | wall s | epochs | s per epoch (train + validation) | sum of epochs s |",
                  "|---|---|---|---|---|"]
        for arm, a in (("textsearch (2 trials x 1 thread)", ts),
                       ("textsearch `--max_concurrent 1 --cpus_per_trial 2`", one),
                       ("plain (1 trial x 2 threads)", pl)):
            lines.append(f"| {arm} | {fmt(a['wall_s'])} | {fmt(a['epochs'])} | "
                         f"{fmt(a['epoch_s'], 2)} | {fmt(a['epoch_s_sum'])} |")
        lines += ["", f"textsearch / plain wall: {fmt(f['wall_ratio'], 2)}x with 2 trials of 1 "
                  f"thread, {fmt(f['wall_ratio_1x2'], 2)}x with 1 trial of 2 threads. In "
                  f"textsearch the first batch came {fmt(ts['first_batch_s'], 1)} s "
                  f"({fmt(one['first_batch_s'], 1)} s) after the command and the last epoch "
                  f"ended {fmt(ts['last_epoch_end_s'])} s ({fmt(one['last_epoch_end_s'])} s) after "
                  "it; the rest is the best checkpoint's test evaluation and the exit."]
    c = r.get("epoch_cost")
    if c:
        lines += ["", f"Per epoch in textsearch's trials (median of each run's median): checkpoint "
                  f"{fmt(c['checkpoint_s'], 3)} s, report (TensorBoard flush, `latest.ckpt`, "
                  f"`tune.report` until the search has logged it) {fmt(c['report_s'], 3)} s, "
                  f"against an epoch of {fmt(c['epoch_s'], 2)} s."]
    return lines
