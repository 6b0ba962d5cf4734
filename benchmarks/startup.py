"""The ``smoke`` search as a user runs it: seconds to the first reported result and in all."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import (
    REPO,
    Mode,
    fmt,
    stats,
)


def run(mode: Mode, results: Path) -> dict:
    """The smoke search as a user runs it: seconds to the first reported result and in all."""
    firsts, totals = [], []
    for rep in range(mode.reps):
        name = f"smoke-{rep}"
        start = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "textsearch.tune", "--space", "smoke",
                                 "--results_dir", str(results), "--name", name, "--no_report"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        first = None
        while proc.poll() is None:
            if first is None and any(f.stat().st_size > 0 for f in
                                     (results / name).glob("trial_*/progress.csv")):
                first = time.time() - start
            time.sleep(0.1)
        assert proc.returncode == 0, f"smoke search failed ({proc.returncode})"
        totals.append(time.time() - start)
        firsts.append(first if first is not None else totals[-1])
    return {"seconds_to_first_result": stats(firsts), "smoke_total_seconds": stats(totals),
            "reps": mode.reps}


def rows(r: dict) -> list[str]:
    """This item's rows of the results table."""
    lines: list[str] = []

    lines.append(f"| `smoke` search: seconds to first reported result | {fmt(r['seconds_to_first_result'], 1)} s | - | - |")
    lines.append(f"| `smoke` search: total wall time | {fmt(r['smoke_total_seconds'], 1)} s | well under 60 s | {'yes' if r['smoke_total_seconds']['median'] < 60 else 'no'} |")
    return lines
