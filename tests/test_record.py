"""The search folder is the one record: it moves, it reads while the search runs, it keeps
its own copy of the space, and the commands that read it load no Ray.

Real searches (Ray Tune, Optuna journal, Lightning) on tiny synthetic EMNIST.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.conftest import REPO, run_main, started
from textsearch.record import read_progress
from textsearch.study import load_study
from textsearch.tune import main as tune_main

SPACES = Path(__file__).parent / "spaces"


def epochs_on_disk(search: Path) -> dict[str, list[int]]:
    """The epochs each trial folder logged, read from its progress.csv."""
    return {f.parent.name: [int(r["epoch"]) for r in read_progress(f)]
            for f in search.glob("trial_*/progress.csv")}


def test_moved_folder_resumes_with_more_trials(tmp_path, capsys):
    code, err = run_main(tune_main, ["--space", str(SPACES / "tiny.py"), "--results_dir",
                                     str(tmp_path / "a"), "--name", "m", "--num_samples", "2",
                                     "--no_report"], capsys)
    assert code == 0, err
    before = load_study(tmp_path / "a" / "m").trials
    epochs_before = epochs_on_disk(tmp_path / "a" / "m")
    assert len(before) == 2
    # nothing textsearch saved in the folder names where it was (Ray's own files may: a
    # resume does not read them)
    for name in ("search.json", "summary.json", "study.journal", "space.py", "trials.csv"):
        assert str(tmp_path) not in (tmp_path / "a" / "m" / name).read_text(), name
    (tmp_path / "elsewhere").mkdir()
    shutil.move(tmp_path / "a" / "m", tmp_path / "elsewhere" / "m")
    shutil.rmtree(tmp_path / "a")

    code, err = run_main(tune_main, ["--name", "m", "--results_dir", str(tmp_path / "elsewhere"),
                                     "--resume", "--num_samples", "4", "--no_report"], capsys)
    assert code == 0, err
    search = tmp_path / "elsewhere" / "m"
    after = load_study(search).trials
    assert len(after) == 4
    assert [(t.number, t.state, t.values, t.params) for t in after[:2]] == \
        [(t.number, t.state, t.values, t.params) for t in before]  # the first two unchanged
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in after)
    on_disk = epochs_on_disk(search)
    assert sorted(on_disk) == [f"trial_{n:04d}" for n in range(4)]
    for folder, epochs in epochs_before.items():
        assert on_disk[folder] == epochs  # not rerun
    summary = json.loads((search / "summary.json").read_text())
    assert summary["num_trials"] == 4 and summary["search"] == "m"


EDITABLE = '''"""A space that a test edits between a search's start and its resume."""
DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN", "balance": False, "batch_size": 64,
              "fc_dim": 16, "dropout": 0.0, "num_blocks": 1},
    "max_epochs": 1, "num_samples": 1, "grace_period": 1, "reduction_factor": 2,
}


def space(trial):
    trial.suggest_int("conv_dim", LOW, HIGH)
    return None
'''


def test_resume_uses_the_copy_of_an_edited_space(tmp_path, capsys):
    space_file = tmp_path / "editable.py"
    space_file.write_text(EDITABLE.replace("LOW", "4").replace("HIGH", "5"))
    code, err = run_main(tune_main, ["--space", str(space_file), "--results_dir", str(tmp_path),
                                     "--name", "e", "--no_report"], capsys)
    assert code == 0, err
    search = tmp_path / "e"
    assert (search / "space.py").read_text() == space_file.read_text()
    # the original now asks for channels the search never had
    space_file.write_text(EDITABLE.replace("LOW", "30").replace("HIGH", "31"))
    capsys.readouterr()
    code = tune_main(["--name", "e", "--results_dir", str(tmp_path), "--resume",
                      "--num_samples", "3", "--no_report"])
    out = capsys.readouterr().out
    assert code == 0
    changed = [line for line in out.splitlines() if "changed since search e started" in line]
    assert len(changed) == 1 and str(space_file) in changed[0] and "space.py" in changed[0]
    conv = [t.params["conv_dim"] for t in load_study(search).trials]
    assert len(conv) == 3 and all(4 <= c <= 5 for c in conv)  # from the copy, not the edit
    # the TensorBoard command it ends with, run as printed: it listens on 127.0.0.1 only
    command = [line for line in out.splitlines() if line.startswith("tensorboard --logdir")]
    assert command == [f"tensorboard --logdir {search} --host 127.0.0.1"]
    assert_tensorboard_listens_on_localhost(command[0])


def assert_tensorboard_listens_on_localhost(command: str) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = command.split()
    args[0] = str(Path(sys.executable).parent / "tensorboard")
    board = subprocess.Popen([*args, "--port", str(port)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline, rows = time.time() + 120, []
        while time.time() < deadline and not rows:
            assert board.poll() is None, "tensorboard exited"
            rows = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                                  text=True).stdout.splitlines()
            time.sleep(0.5)
        assert [row.split()[3] for row in rows] == [f"127.0.0.1:{port}"]
    finally:
        board.terminate()
        board.wait(timeout=30)


def test_report_reads_a_running_search(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    search = tmp_path / "live"
    with started([sys.executable, "-m", "textsearch.tune", "--space", str(SPACES / "slow.py"),
                  "--results_dir", str(tmp_path), "--name", "live", "--max_concurrent", "1",
                  "--no_report"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                 cwd=REPO) as proc:
        deadline = time.time() + 240
        while time.time() < deadline and not any(epochs_on_disk(search).values()):
            assert proc.poll() is None, "the search ended before its first epoch"
            time.sleep(0.3)
        # the trials with an epoch on disk before the report starts: each must be in it (a
        # trial that logs its first epoch while the report is drawn may or may not be)
        logged = {f: e for f, e in epochs_on_disk(search).items() if e}
        assert logged
        report = subprocess.run([sys.executable, "-m", "textsearch.report", str(search)],
                                capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
        assert report.returncode == 0, report.stderr[-2000:]
        assert proc.poll() is None  # still running
        page = (search / "report.html").read_text()
        for folder in logged:
            assert f"<td>{folder.removeprefix('trial_')}</td>" in page
        assert "unfinished" in page  # the trial that is training
    assert proc.wait(timeout=600) == 0


@pytest.mark.parametrize("module", ["textsearch.report", "textsearch.dashboard",
                                    "textsearch.warmstart", "textsearch.summary",
                                    "textsearch.study"])
def test_readers_of_the_record_load_no_ray(module, tmp_path):
    """Importing a reader, and reading a search folder's study with it, loads no Ray."""
    probe = (f"import sys, {module}\n"
             "from textsearch.study import create_study, load_study, make_sampler\n"
             f"create_study({str(tmp_path)!r}, 'x', ['maximize'], make_sampler('tpe', 0, 2))\n"
             f"load_study({str(tmp_path)!r})\n"
             "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=REPO, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
