"""The live view of a real search, read through a pipe as a log collector would."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO

SPACES = Path(__file__).parent / "spaces"
TRIAL_LINE = re.compile(r"^  trial (\d{4})  epoch (\d+)/(\d+)  batch +(\d+)/(\d+)")


def test_live_view_shows_batches_rising_then_ctrl_c_leaves_the_resume_line(tmp_path,
                                                                           shared_root):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TEXTSEARCH_DATA_DIR": str(shared_root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "textsearch.tune", "--space", str(SPACES / "live.py"),
         "--results_dir", str(tmp_path), "--name", "v", "--max_concurrent", "1",
         "--gpus_per_trial", "0", "--no_report", "--live_interval_s", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    out: list[str] = []
    seen: dict[str, list[int]] = {}  # trial -> batch counts shown during its first epoch
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if not selector.select(timeout=1):
                continue
            line = proc.stdout.readline()
            out.append(line)
            m = TRIAL_LINE.match(line)
            if m and m.group(2) == "1" and "(validating)" not in line:
                seen.setdefault(m.group(1), []).append(int(m.group(4)))
            first = seen.get("0000", [])
            if len(set(first)) >= 3:  # three different batch counts of one epoch: stop it
                break
        assert proc.poll() is None, "".join(out)[-3000:]
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    out.append(rest)
    text = "".join(out)
    first = seen["0000"]
    assert first == sorted(first) and first[-1] > first[0], first  # rising within the epoch
    total = int(next(TRIAL_LINE.match(x).group(5) for x in text.splitlines()
                     if TRIAL_LINE.match(x)))
    assert total > first[-1] and all(0 <= b <= total for b in first)
    heads = [x for x in text.splitlines() if x.startswith("search v: ")]
    assert any(h.startswith("search v: 0/2 trials finished, 1 running; ") for h in heads), heads
    assert proc.returncode == 130, text[-3000:]
    last = text.strip().splitlines()[-3:]
    assert any("python -m textsearch.tune" in x and "--resume" in x and "--name v" in x
               for x in last), last
    assert "Tuner.restore" not in text  # textsearch's resume line is the only one
