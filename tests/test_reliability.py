"""Fault drills: the fault happens for real (signals, damaged files), then we check what survived."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, plain_study

SPACES = Path(__file__).parent / "spaces"


def progress_rows(search: Path) -> dict[str, int]:
    """Epoch rows written so far, per trial folder."""
    rows = {}
    for f in search.glob("trial_*/progress.csv"):
        rows[f.parent.name] = max(0, len(f.read_text().strip().splitlines()) - 1)
    return rows


def start_search(results: Path, name: str, *extra: str, space: str = "slow.py") -> subprocess.Popen:
    """The search in a session of its own, so that :func:`power_cut` can stop all of it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = (results / f"{name}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "textsearch.tune", "--space", str(SPACES / space),
         "--results_dir", str(results), "--name", name, "--max_concurrent", "1", "--no_report",
         *extra], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        start_new_session=True)


def power_cut(proc: subprocess.Popen) -> None:
    """SIGKILL to the driver and to every process it started (Ray's GCS, raylet and trial
    workers, each in a process group of its own but all in the driver's session) at once:
    the files stay as they were at that instant, as when a machine loses power."""
    import psutil

    while doomed := [p for p in psutil.process_iter() if _in_session(p.pid, proc.pid)]:
        for p in doomed:  # again while one of them had started another meanwhile
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(doomed, timeout=30)
    proc.wait()


def _in_session(pid: int, session: int) -> bool:
    try:
        return os.getsid(pid) == session
    except OSError:  # gone, or not ours to ask
        return False


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240, poll_s: float = 0.2) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"search ended early with code {proc.returncode}")
        time.sleep(poll_s)
    proc.kill()
    raise AssertionError("timed out waiting for the search")


def resume(results: Path, name: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "textsearch.tune", "--results_dir", str(results), "--name", name,
         "--resume", "--no_report"], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


def settled_rows(search: Path, quiet_s: float = 3, timeout: float = 60) -> dict[str, int]:
    """The epoch rows once no trial folder has changed for ``quiet_s`` seconds."""
    rows, deadline = progress_rows(search), time.time() + timeout
    while time.time() < deadline:
        time.sleep(quiet_s)
        now = progress_rows(search)
        if now == rows:
            break
        rows = now
    return rows


def first_trial_done_second_started(search: Path) -> bool:
    rows = progress_rows(search)
    return sorted(rows.values(), reverse=True)[:2] >= [4, 1] if len(rows) >= 2 else False


def test_driver_killed_then_resumed_counts_every_trial_once(tmp_path):
    proc = start_search(tmp_path, "k")
    search = tmp_path / "k"
    wait_for(lambda: first_trial_done_second_started(search), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = settled_rows(search)  # its trial worker may finish the epoch it is in
    finished = [t for t, n in before.items() if n == 4]
    assert finished

    # the killed search is readable as it is: the report lists every trial with rows on
    # disk, with its status from the study, and retrain exports the best trial so far
    from textsearch.study import load_study

    assert json.loads((search / "search.json").read_text())["space"] == "slow"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    report = subprocess.run([sys.executable, "-m", "textsearch.report", str(search)],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    page = (search / "report.html").read_text()
    states = {f"{t.number:04d}": t.state.name for t in load_study(search).trials}
    for folder in before:
        assert f"<td>{folder.removeprefix('trial_')}</td>" in page
    expected = {"COMPLETE": "completed", "RUNNING": "unfinished", "PRUNED": "stopped_early"}
    from textsearch.summary import summarize

    live = summarize(search)
    assert {t["trial_id"]: t["status"] for t in live["trials"]} == \
        {n: expected[state] for n, state in states.items()}
    assert {f"trial_{t['trial_id']}": t["epochs"] for t in live["trials"] if t["epochs"]} == \
        {t: n for t, n in before.items() if n}
    retrained = subprocess.run(
        [sys.executable, "-m", "textsearch.retrain", str(search), "--max_epochs", "1",
         "--data_fraction", "0.2"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert retrained.returncode == 0, retrained.stderr[-2000:]
    # in a pipe: plain lines (one per epoch), no progress bar redrawn with carriage returns
    assert "\r" not in retrained.stderr + retrained.stdout
    assert "Testing DataLoader" not in retrained.stderr and "it/s" not in retrained.stderr
    assert [line for line in retrained.stderr.splitlines() if line.startswith("epoch ")] \
        and all(line.startswith("epoch 1/1: ") for line in retrained.stderr.splitlines()
                if line.startswith("epoch "))
    best_so_far = max(live["trials"], key=lambda t: (t["best_val_acc"] or -1, -t["number"]))
    assert (search / "retrain" / best_so_far["trial_id"] / "model.pt").is_file()

    # --resume finishes the search
    done = resume(tmp_path, "k")
    assert done.returncode == 0, done.stderr[-3000:]
    after = progress_rows(search)
    for t in finished:  # finished trials were not rerun
        assert after[t] == 4
    summary = json.loads((search / "summary.json").read_text())
    ids = [t["trial_id"] for t in summary["trials"]]
    assert len(ids) == len(set(ids)) == 3
    assert all(t["status"] == "completed" and t["epochs"] == 4 for t in summary["trials"])
    # against what Optuna holds and the rows on disk: every trial COMPLETE with its last
    # value, the best trial the one with the best row (ties: the earlier trial)
    study = plain_study(search)
    assert {f"{t.number:04d}": t.state.name for t in study.trials} == \
        {i: "COMPLETE" for i in ids}
    rows = {f.parent.name.removeprefix("trial_"): [float(r["val_acc"]) for r in
                                                   csv.DictReader(f.open())]
            for f in search.glob("trial_*/progress.csv")}
    assert {f"{t.number:04d}": t.value for t in study.trials} == \
        {i: pytest.approx(v[-1]) for i, v in rows.items()}
    top = min(rows, key=lambda i: (-max(rows[i]), int(i)))
    assert summary["best"]["trial_id"] == top
    assert summary["best"]["val_acc"] == pytest.approx(max(rows[top]))
    # the interrupted trial went on from its checkpoint: no epoch trained twice
    for f in search.glob("trial_*/progress.csv"):
        epochs = [int(r["epoch"]) for r in csv.DictReader(f.open())]
        assert epochs == sorted(set(epochs)) and epochs[-1] == 4
    # the resumed search went on with the same study: one Optuna trial per trial, all told
    from optuna.trial import TrialState

    study = load_study(search).trials
    assert sorted(f"{t.number:04d}" for t in study) == sorted(ids)
    assert all(t.state == TrialState.COMPLETE for t in study)
    assert all(sorted(t.intermediate_values) == [1, 2, 3, 4] for t in study)


def test_epoch_checkpointed_but_never_logged_is_reported_on_resume(tmp_path):
    """The driver dies after a trial kept an epoch's checkpoint but before it logged it."""
    import csv

    from textsearch.trial import resume_point

    def latest_epoch(trial: str) -> int:
        _, metrics = resume_point(search / trial / "latest.ckpt")  # (None, None) while replaced
        return metrics["epoch"] if metrics else 0

    proc = start_search(tmp_path, "u")
    search = tmp_path / "u"
    # epoch 2 logged and kept; the power cut comes before that trial's last epoch (4): the
    # poll is quick and at most one more epoch ends before the cut
    wait_for(lambda: any(n == 2 and latest_epoch(t) == 2
                         for t, n in progress_rows(search).items()), proc, poll_s=0.02)
    power_cut(proc)
    cut = []
    for t, n in progress_rows(search).items():
        if 2 <= n < 4 and latest_epoch(t) == n:  # drop the epoch's row: never logged
            lines = (search / t / "progress.csv").read_text().splitlines(keepends=True)
            (search / t / "progress.csv").write_text("".join(lines[:-1]))
        if 2 <= latest_epoch(t) < 4 and progress_rows(search)[t] == latest_epoch(t) - 1:
            cut.append(t)
    assert cut, (progress_rows(search), {t: latest_epoch(t) for t in progress_rows(search)})
    done = resume(tmp_path, "u")
    assert done.returncode == 0, done.stderr[-3000:]
    for t in cut:
        rows = list(csv.DictReader((search / t / "progress.csv").open()))
        assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]  # each epoch logged once
    summary = json.loads((search / "summary.json").read_text())
    assert summary["status_counts"] == {"completed": 3}


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["ctrl-c", "sigterm"])
def test_stop_signal_writes_summary_and_says_how_to_resume(sig, code, tmp_path):
    """A Ctrl-C, and a SIGTERM (``kill``, a job scheduler) the same way: the running trial
    keeps its checkpoint, the summary is written, one line says how to resume, and the exit
    code says which signal stopped it (128 + its number)."""
    proc = start_search(tmp_path, "c")
    search = tmp_path / "c"
    wait_for(lambda: first_trial_done_second_started(search), proc)
    proc.send_signal(sig)
    assert proc.wait(timeout=180) == code, (tmp_path / "c.log").read_text()[-3000:]
    log = (tmp_path / "c.log").read_text()
    summary = json.loads((search / "summary.json").read_text())
    statuses = {t["trial_id"]: t["status"] for t in summary["trials"]}
    assert "completed" in statuses.values() and "unfinished" in statuses.values()
    for trial, status in statuses.items():  # the stopped trial's epochs are in its checkpoint
        if status == "unfinished" and (search / f"trial_{trial}" / "progress.csv").exists():
            assert (search / f"trial_{trial}" / "latest.ckpt").is_file()
    resume_lines = [line for line in log.splitlines() if "--resume" in line]
    assert len(resume_lines) == 1 and "--name c" in resume_lines[0], log[-3000:]
    assert "Tuner.restore" not in log  # textsearch's resume line is the only one
    assert "Stop signal received" not in log and "CTRL+C" not in log  # nor Ray's own notice
    if sig == signal.SIGTERM:  # the interrupted folder moved: read, retrained, resumed there
        moved = tmp_path / "elsewhere"
        moved.mkdir()
        shutil.move(search, moved / "c")
        search, results = moved / "c", moved
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        report = subprocess.run([sys.executable, "-m", "textsearch.report", str(search)],
                                capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
        assert report.returncode == 0, report.stderr[-2000:]
        page = (search / "report.html").read_text()
        assert all(f"<td>{t}</td>" in page for t in statuses) and "unfinished" in page
        retrained = subprocess.run(
            [sys.executable, "-m", "textsearch.retrain", str(search), "--max_epochs", "1",
             "--data_fraction", "0.2", "--no_progress"],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
        assert retrained.returncode == 0, retrained.stderr[-2000:]
        assert len(list((search / "retrain").glob("*/model.pt"))) == 1
    else:
        results = tmp_path
    done = resume(results, "c")
    assert done.returncode == 0, done.stderr[-3000:]
    final = json.loads((search / "summary.json").read_text())
    assert final["status_counts"] == {"completed": 3}
    assert str(tmp_path / "c") not in (search / "search.json").read_text()


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


def trial_reports(search: Path) -> dict[str, list[tuple[int, int]]]:
    """(worker pid, epoch) of every report, per trial (a retry reports from a new pid)."""
    import csv

    out: dict[str, list[tuple[int, int]]] = {}
    for f in search.glob("trial_*/progress.csv"):
        rows = list(csv.DictReader(f.open())) if f.stat().st_size else []
        out[f.parent.name] = [(int(r["pid"]), int(r["epoch"])) for r in rows]
    return out


def test_killed_trial_is_retried_from_its_checkpoint_then_errored(tmp_path):
    proc = start_search(tmp_path, "t", "--max_failures", "1", space="retry.py")
    search = tmp_path / "t"
    killed: dict[str, list[int]] = {}

    def kill_workers(limit_per_trial: dict[int, int]) -> None:
        """Kill a trial's worker while it is mid-training (it reported, epochs still to go)."""
        reports = trial_reports(search)
        order = sorted(reports)  # trial_0000, trial_0001, ...: in the order they started
        for n, trial in enumerate(order):
            done = killed.setdefault(trial, [])
            if not reports[trial] or len(done) >= limit_per_trial.get(n, 0):
                continue
            pid, epoch = reports[trial][-1]
            if pid in done or epoch >= 5:  # 5 = the last epoch: nothing left to kill
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            done.append(pid)

    deadline = time.time() + 400
    while proc.poll() is None and time.time() < deadline:
        kill_workers({0: 1, 1: 2})  # trial 1: killed once; trial 2: killed twice
        time.sleep(0.1)
    assert proc.returncode == 0, (tmp_path / "t.log").read_text()[-3000:]
    summary = json.loads((search / "summary.json").read_text())
    by_dir = {Path(t["path"]).name: t for t in summary["trials"]}
    first, second = sorted(killed)[:2]
    assert len(killed[first]) == 1 and len(killed[second]) == 2
    # killed once, retried from its checkpoint, finished: no epoch trained twice
    assert by_dir[first]["status"] == "completed" and by_dir[first]["epochs"] == 5
    import csv

    epochs = [int(r["epoch"]) for r in csv.DictReader((search / first / "progress.csv").open())]
    assert epochs == [1, 2, 3, 4, 5]
    # killed more often than --max_failures allows: errored, and the search went on
    assert by_dir[second]["status"] == "errored" and by_dir[second]["error"]
    assert summary["status_counts"].get("completed") == 2
    assert summary["best"] is not None


def test_damaged_checkpoint_is_reported_and_not_used(tmp_path, capsys):
    from textsearch.trial import read_checkpoint

    bad = tmp_path / "model.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    assert read_checkpoint(bad) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is damaged" in err[0] and "not resuming from it" in err[0]


def test_resume_point_is_the_latest_checkpoint_when_usable(tmp_path, capsys):
    import torch

    from textsearch.trial import METRICS_KEY, resume_point

    latest = tmp_path / "latest.ckpt"
    metrics = {"epoch": 4, "val_acc": 0.5}
    torch.save({"state_dict": {}, "epoch": 3,
                "callbacks": {"TuneReportCallback": {METRICS_KEY: metrics}}}, latest)
    assert resume_point(latest) == (str(latest), metrics)
    assert resume_point(tmp_path / "missing.ckpt") == (None, None)
    # a checkpoint without its epoch's metrics (an older textsearch's): from scratch
    torch.save({"state_dict": {}, "epoch": 3}, latest)
    assert resume_point(latest) == (None, None)
    latest.write_bytes(b"PK\x03\x04 not really a checkpoint")
    assert resume_point(latest) == (None, None)  # from scratch, with one line saying why
    assert "is damaged" in capsys.readouterr().err


def test_full_disk_stops_the_search_and_resume_finishes_it(tmp_path):
    """A real 2 MiB tmpfs as --results_dir: too small for the search; then grown, and resumed."""
    import csv

    from optuna.trial import TrialState

    from textsearch.study import load_study

    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        from tests.conftest import skip_or_fail

        skip_or_fail(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        first = subprocess.run(
            [sys.executable, "-m", "textsearch.tune", "--space", str(SPACES / "slow.py"),
             "--results_dir", str(small), "--name", "d", "--max_concurrent", "1", "--no_report"],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
        assert first.returncode == 2, first.stderr[-3000:]
        last = first.stderr.strip().splitlines()[-1]
        assert last.startswith(f"textsearch.tune: error: the disk holding {small / 'd'} is full")
        assert "finished trials and checkpoints are kept" in last and "--resume" in last
        assert "Traceback" not in first.stderr and "EOFError" not in first.stderr
        search = small / "d"
        before = progress_rows(search)
        assert sum(n == 4 for n in before.values()) < 3  # it did not get to the end
        finished = [t for t, n in before.items() if n == 4]

        # room again: the search goes on where it stopped
        subprocess.run(["mount", "-o", "remount,size=40m", str(small)], check=True)
        done = resume(small, "d")
        assert done.returncode == 0, done.stderr[-3000:]
        after = progress_rows(search)
        assert all(after[t] == 4 for t in finished)  # finished trials were not rerun
        for f in search.glob("trial_*/progress.csv"):
            assert [int(r["epoch"]) for r in csv.DictReader(f.open())] == [1, 2, 3, 4]
        summary = json.loads((search / "summary.json").read_text())
        assert summary["status_counts"] == {"completed": 3}
        assert len({t["trial_id"] for t in summary["trials"]}) == 3
        study = load_study(search).trials
        assert len(study) == 3 and all(t.state == TrialState.COMPLETE for t in study)
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


KILLED_WRITER = r'''
import builtins, os, signal, sys
import optuna
from textsearch.study import create_study, make_sampler

folder = sys.argv[1]
study, _ = create_study(folder, "drill", ["maximize"], make_sampler("random", 0, 2))
for i in range(3):  # three completed trials, each told through the real journal writer
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    study.tell(trial, 0.1 * (i + 1))
real_open = builtins.open


class HalfWriter:
    """The journal's file: the next write lands half, then the process is killed."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # before the line is finished or the file closed

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)


def killing_open(path, mode="r", *args, **kwargs):
    f = real_open(path, mode, *args, **kwargs)
    return HalfWriter(f) if str(path).endswith("study.journal") and "a" in mode else f


builtins.open = killing_open
trial = study.ask()  # its line is cut in half by the kill
print("not reached")
'''


def test_driver_killed_while_writing_the_study_loses_no_completed_trial(tmp_path, capsys):
    """The real Optuna journal writer, killed between writing half a line and closing it."""
    from optuna.trial import TrialState

    from textsearch.study import load_study

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "s")],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert "not reached" not in done.stdout
    journal = tmp_path / "s" / "study.journal"
    assert not journal.read_bytes().endswith(b"\n")  # the half line is there
    study = load_study(tmp_path / "s")  # the next read recovers
    assert [(t.state, t.value) for t in study.trials] == \
        [(TrialState.COMPLETE, pytest.approx(0.1 * (i + 1))) for i in range(3)]
    assert "cut a damaged last line" in capsys.readouterr().err
    assert (tmp_path / "s" / "study.journal.damaged").stat().st_size > 0
    trial = study.ask()  # and the study goes on
    study.tell(trial, 0.9)
    assert len(load_study(tmp_path / "s").trials) == 4
