"""The ``smoke`` search as a user runs it: start-up, the gaps between trials, wrap-up.

From the command's start: seconds to the first trial's first training batch, and to each
step before it (the driver's, from ``runs.jsonl``: Ray started, the data read, Tune started;
the first trial's, from its epoch reports: its process started, that process took the
trial, torch and Lightning loaded, the first batch); for every trial that waited for a
slot, seconds from the end of the trial whose slot it took (its last epoch's end) to its
own first batch; and from the last trial's last epoch to the printed summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import (
    REPO,
    Mode,
    fmt,
    progress,
    stats,
)

# the start-up steps, in order: (key in runs.jsonl or a trial's reports, what it is)
DRIVER_STEPS = (("ray_ready", "Ray started (ray.init returned)"),
                ("data_ready", "the data read and checked (beside ray.init)"),
                ("tune_started", "Tune started"))
TRIAL_STEPS = (("process_started_at", "the first trial's process started"),
               ("trial_started_at", "that process took the trial (Ray and Tune loaded)"),
               ("modules_loaded_at", "torch and Lightning loaded there"),
               ("first_batch_at", "its first training batch"))


def start_up_steps(search_dir: Path, rows: list[dict], start: float) -> dict[str, float]:
    """Seconds from the command's start to the end of each start-up step."""
    run = json.loads((search_dir / "runs.jsonl").read_text().splitlines()[0])
    first = min(rows, key=lambda r: r["first_batch_at"])
    return {**{k: run[k] - start for k, _ in DRIVER_STEPS if k in run},
            **{k: first[k] - start for k, _ in TRIAL_STEPS if k in first}}


def timeline(rows: list[dict], start: float, summary_at: float | None) -> dict:
    """First batch, gaps between trials and wrap-up, in seconds, from the epoch reports."""
    trials: dict[str, dict] = {}
    for r in rows:
        t = trials.setdefault(r["trial"], {"start": r["first_batch_at"], "end": r["epoch_end_at"]})
        t["start"] = min(t["start"], r["first_batch_at"])
        t["end"] = max(t["end"], r["epoch_end_at"])
    spans = sorted(trials.values(), key=lambda t: t["start"])
    first_end = min(t["end"] for t in spans)
    gaps = []
    for t in spans:
        if t["start"] < first_end:  # started at once, no slot to wait for
            continue
        freed = [u["end"] for u in spans if u["end"] <= t["start"]]
        gaps.append(t["start"] - max(freed))
    last_end = max(t["end"] for t in spans)
    return {"first_batch_s": spans[0]["start"] - start, "gaps_s": gaps,
            "wrap_up_s": None if summary_at is None else summary_at - last_end,
            "trials": len(spans)}


def run_smoke(results: Path, name: str) -> tuple[dict, float]:
    """One smoke search in a subprocess: its timeline and total wall seconds."""
    start = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "textsearch.tune", "--space", "smoke",
                             "--results_dir", str(results), "--name", name, "--no_report"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    summary_at: list[float] = []

    def read() -> None:
        for line in proc.stdout:
            if line.startswith("Search '") and not summary_at:
                summary_at.append(time.time())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc.wait()
    reader.join(timeout=10)
    total = time.time() - start
    assert proc.returncode == 0, f"smoke search failed ({proc.returncode})"
    rows = progress(results / name)
    line = timeline(rows, start, summary_at[0] if summary_at else None)
    line["steps_s"] = start_up_steps(results / name, rows, start)
    return line, total


# commands that must answer at once, and the exit code each must give
QUICK_COMMANDS = {
    "--help": (["--help"], 0),
    "--list": (["--list"], 0),
    "bad input": (["--space", "smoke", "--num_samples", "0"], 2),
}


def time_command(args: list[str], code: int) -> float:
    """Seconds from ``python -m textsearch.tune ARGS`` to its exit, which must be ``code``."""
    start = time.time()
    done = subprocess.run([sys.executable, "-m", "textsearch.tune", *args], capture_output=True,
                          text=True, cwd=REPO)
    wall = time.time() - start
    assert done.returncode == code, (args, done.returncode, done.stderr[-500:])
    return wall


def run(mode: Mode, results: Path) -> dict:
    quick = {name: stats([time_command(*cmd) for _ in range(mode.reps)])
             for name, cmd in QUICK_COMMANDS.items()}
    lines = [run_smoke(results, f"smoke-{rep}") for rep in range(mode.reps)]
    return {"quick_commands_s": quick,
            "first_batch_s": stats([t["first_batch_s"] for t, _ in lines]),
            "gap_s": stats([g for t, _ in lines for g in t["gaps_s"]]),
            "wrap_up_s": stats([t["wrap_up_s"] for t, _ in lines if t["wrap_up_s"] is not None]),
            "smoke_total_seconds": stats([total for _, total in lines]),
            "steps_s": {k: stats([t["steps_s"][k] for t, _ in lines if k in t["steps_s"]])
                        for k, _ in (*DRIVER_STEPS, *TRIAL_STEPS)},
            "gaps_per_rep": [t["gaps_s"] for t, _ in lines], "reps": mode.reps}


def rows(r: dict) -> list[str]:
    """This item's rows of the results table."""
    def row(label: str, s: dict, target: float, digits: int = 1) -> str:
        return (f"| `smoke` search: {label} | {fmt(s, digits)} s | <= {target:g} s | "
                f"{'yes' if s['median'] <= target else 'no'} |")

    if "first_batch_s" not in r:  # results saved before this item measured the timeline
        return [f"| `smoke` search: total wall time | {fmt(r['smoke_total_seconds'], 1)} s | - | - |"]
    quick = r.get("quick_commands_s")
    slowest = max(v["median"] for v in quick.values()) if quick else None
    return ([f"| `python -m textsearch.tune` {', '.join(quick)}: seconds to exit | "
             + "; ".join(f"{k} {fmt(v, 2)} s" for k, v in quick.items())
             + f" | < 1.5 s | {'yes' if slowest < 1.5 else 'no'} |"] if quick else []) + [
            row("command to the first trial's first batch", r["first_batch_s"], 6),
            row("a trial's end to the next trial's first batch", r["gap_s"], 1, digits=2),
            row("the last trial's end to the printed summary", r["wrap_up_s"], 5),
            f"| `smoke` search: total wall time | {fmt(r['smoke_total_seconds'], 1)} s | - | - |"]


def section(r: dict) -> list[str]:
    """Where the start-up goes: each step's end, in seconds from the command's start."""
    steps = r.get("steps_s")
    if not steps:
        return []
    lines = ["", "Start-up of the `smoke` search, step by step: seconds from the command's start "
             f"to the end of each step, median (min-max) of {r['reps']} runs:", "",
             "| step | ends at, s |", "|---|---|"]
    for key, label in (*DRIVER_STEPS, *TRIAL_STEPS):
        if steps.get(key):
            lines.append(f"| {label} | {fmt(steps[key], 1)} |")
    return lines
