"""Fault drills: the fault happens for real (signals, damaged files), then we check what survived."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO

SPACES = Path(__file__).parent / "spaces"


def progress_rows(search: Path) -> dict[str, int]:
    """Epoch rows written so far, per trial folder."""
    rows = {}
    for f in search.glob("trial_*/progress.csv"):
        rows[f.parent.name] = max(0, len(f.read_text().strip().splitlines()) - 1)
    return rows


def start_search(results: Path, name: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = (results / f"{name}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "textsearch.tune", "--space", str(SPACES / "slow.py"),
         "--results_dir", str(results), "--name", name, "--max_concurrent", "1", "--no_report",
         *extra], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"search ended early with code {proc.returncode}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("timed out waiting for the search")


def resume(results: Path, name: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "textsearch.tune", "--results_dir", str(results), "--name", name,
         "--resume", "--no_report"], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


def first_trial_done_second_started(search: Path) -> bool:
    rows = progress_rows(search)
    return sorted(rows.values(), reverse=True)[:2] >= [4, 1] if len(rows) >= 2 else False


def test_driver_killed_then_resumed_counts_every_trial_once(tmp_path):
    proc = start_search(tmp_path, "k")
    search = tmp_path / "k"
    wait_for(lambda: first_trial_done_second_started(search), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = progress_rows(search)
    finished = [t for t, n in before.items() if n == 4]
    assert finished

    # the directory is still readable, and --resume finishes the search
    assert json.loads((search / "search.json").read_text())["space"] == "slow"
    done = resume(tmp_path, "k")
    assert done.returncode == 0, done.stderr[-3000:]
    after = progress_rows(search)
    for t in finished:  # finished trials were not rerun
        assert after[t] == 4
    summary = json.loads((search / "summary.json").read_text())
    ids = [t["trial_id"] for t in summary["trials"]]
    assert len(ids) == len(set(ids)) == 3
    assert all(t["status"] == "completed" and t["epochs"] == 4 for t in summary["trials"])
    # the interrupted trial went on from its checkpoint: no epoch trained twice
    for f in search.glob("trial_*/progress.csv"):
        import csv

        epochs = [int(r["epoch"]) for r in csv.DictReader(f.open())]
        assert epochs == sorted(set(epochs)) and epochs[-1] == 4


def test_ctrl_c_writes_summary_and_says_how_to_resume(tmp_path):
    proc = start_search(tmp_path, "c")
    search = tmp_path / "c"
    wait_for(lambda: first_trial_done_second_started(search), proc)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=180)
    log = (tmp_path / "c.log").read_text()
    assert code == 130, log[-3000:]
    summary = json.loads((search / "summary.json").read_text())
    statuses = [t["status"] for t in summary["trials"]]
    assert "completed" in statuses and "unfinished" in statuses
    assert "--resume" in log and "--name c" in log
    done = resume(tmp_path, "c")
    assert done.returncode == 0, done.stderr[-3000:]
    final = json.loads((search / "summary.json").read_text())
    assert final["status_counts"] == {"completed": 3}


def test_concurrent_search_with_the_same_name_is_refused(tmp_path):
    proc = start_search(tmp_path, "same")
    try:
        wait_for(lambda: (tmp_path / "same" / "search.json").exists(), proc)
        second = subprocess.run(
            [sys.executable, "-m", "textsearch.tune", "--space", str(SPACES / "slow.py"),
             "--results_dir", str(tmp_path), "--name", "same", "--resume", "--no_report"],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=REPO, timeout=120)
        assert second.returncode == 2
        assert "is in use by another process" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
