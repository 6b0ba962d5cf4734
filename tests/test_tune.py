"""Real searches (Ray Tune + Optuna + ASHA + Lightning) on tiny synthetic EMNIST."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.conftest import REPO, cpu_flags, plain_study, run_main
from textsearch.tune import main as tune_main

# what --precision auto must give on this machine, from the CPU's own flags read here: native
# bf16 arithmetic (AVX512-BF16 or AMX) gives bf16-mixed, any other CPU 32
AUTO_PRECISION_HERE = "bf16-mixed" if {"avx512_bf16", "amx_bf16"} & cpu_flags() else "32"

SPACES = Path(__file__).parent / "spaces"


def read_hparams(event_dir: Path) -> tuple[dict, EventAccumulator]:
    """A trial's hyperparameters as TensorBoard's HParams plugin reads them."""
    ea = EventAccumulator(str(event_dir))
    ea.Reload()
    content = ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    hp = {}
    for k, v in data.session_start_info.hparams.items():
        kind = v.WhichOneof("kind")
        hp[k] = getattr(v, kind)
    return hp, ea


def run_search_cli(tmp_path: Path, capsys, space: str, name: str, *flags: str) -> dict:
    """Run ``textsearch.tune`` on a test space; it must succeed. Returns its summary.json."""
    code, err = run_main(tune_main, ["--space", str(SPACES / space), "--results_dir", str(tmp_path),
                                     "--name", name, "--no_report", *flags], capsys)
    assert code == 0, err
    return json.loads((tmp_path / name / "summary.json").read_text())


def test_search_stops_trials_early_and_reports_the_best(tmp_path, capsys):
    # on the CPU, also where a GPU is present (the GPU tests check that path)
    capsys.readouterr()
    code = tune_main(["--space", str(SPACES / "asha_certain.py"), "--results_dir", str(tmp_path),
                      "--name", "s", "--no_report", "--gpus_per_trial", "0",
                      "--max_concurrent", "1", "--seed", "3"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    search = tmp_path / "s"
    summary = json.loads((search / "summary.json").read_text())
    trials = summary["trials"]
    assert len(trials) == 4
    # the end-of-search table: within 100 columns, a row per trial, and nothing shown for
    # "stopped at" of a trial ASHA did not stop (no NaN, no None)
    end = printed.out[printed.out.index("Top trials by val_acc:"):]
    table = end[:end.index("Best trial:")].splitlines()
    assert max(len(line) for line in table) <= 100, "\n".join(table)
    header = table[1]
    assert header.split()[:5] == ["trial", "status", "epochs", "best_val_acc", "stopped_at"]
    at = header.index("stopped_at")
    rows = {line.split()[0]: line for line in table[2:6]}
    assert sorted(rows) == sorted(t["trial_id"] for t in trials)
    for t in trials:
        shown = rows[t["trial_id"]][at:at + len("stopped_at")].strip()
        assert shown == (str(t["stopped_at_epoch"]) if t["status"] == "stopped_early" else "")
    assert "NaN" not in printed.out and "None" not in printed.out

    # ASHA stopped the useless-lr trials at the first rung; the others ran all epochs
    useless = [t for t in trials if t["config"]["lr"] == 1e-9]
    assert len(useless) == 2
    assert all(t["status"] == "stopped_early" and t["epochs"] == 1 and t["stopped_at_epoch"] == 1
               for t in useless)
    stopped = [t for t in trials if t["status"] == "stopped_early"]
    assert all(t["epochs"] == t["stopped_at_epoch"] < 3 for t in stopped)
    completed = [t for t in trials if t["status"] == "completed"]
    assert completed and all(t["epochs"] == 3 for t in completed)
    # counted from the trials' own files, not from the summary
    on_disk = {f.parent.name.removeprefix("trial_"):
               [(int(r["epoch"]), float(r["val_acc"])) for r in csv.DictReader(f.open())]
               for f in search.glob("trial_*/progress.csv")}
    assert summary["total_epochs"] == sum(len(rows) for rows in on_disk.values()) < 4 * 3
    assert {t["trial_id"]: t["epochs"] for t in trials} == {k: len(v) for k, v in on_disk.items()}

    # the best config is the trial with the best epoch (ties: the earlier trial), and its
    # best checkpoint was tested
    best = summary["best"]
    top = min(on_disk, key=lambda t: (-max(a for _, a in on_disk[t]), int(t)))
    assert best["trial_id"] == top and best["val_acc"] == max(a for _, a in on_disk[top])
    # the sampled values as Optuna recorded them, and the config the trial wrote for itself
    sampled = plain_study(search).trials[int(top)].params
    assert sampled and {k: best["params"][k] for k in sampled} == sampled
    written = json.loads((search / f"trial_{top}" / "config.json").read_text())
    assert best["params"] == {k: written[k] for k in best["params"]}
    assert best["test_acc"] is not None and best["test_acc"] > 0.3  # chance is 0.1
    assert best["checkpoint"] == f"trial_{best['trial_id']}/best.ckpt"
    assert (search / best["checkpoint"]).is_file()

    # every trial trained with the search's seed (the config each trial wrote for itself)
    assert {json.loads((search / t["path"] / "config.json").read_text())["seed"]
            for t in trials} == {3}

    # every trial trained on the driver's data through Ray's object store, without a copy
    for t in trials:
        rows = list(csv.DictReader((search / t["path"] / "progress.csv").open()))
        assert rows and all(float(r["data_shared"]) == 1.0 for r in rows)

    # trials.csv: one row per trial, best first
    rows = list(csv.DictReader((search / "trials.csv").open()))
    assert len(rows) == 4 and rows[0]["trial_id"] == best["trial_id"]

    # Optuna heard the truth: ASHA's stops are PRUNED with their epoch values, full runs
    # COMPLETE with their final metric (read back from the study's journal file)
    from optuna.trial import TrialState

    from textsearch.study import load_study

    study = {f"{t.number:04d}": t for t in load_study(search).trials}
    assert set(study) == {t["trial_id"] for t in trials}
    assert {p.name for p in search.glob("trial_*")} == {f"trial_{n}" for n in study}
    for t in trials:
        ot = study[t["trial_id"]]
        rows = list(csv.DictReader((search / t["path"] / "progress.csv").open()))
        per_epoch = {int(r["epoch"]): float(r["val_acc"]) for r in rows}
        assert ot.intermediate_values == pytest.approx(per_epoch)
        assert ot.user_attrs["epochs"] == t["epochs"]
        assert ot.user_attrs["device"] == "cpu"
        if t["status"] == "stopped_early":
            assert ot.state == TrialState.PRUNED
        else:
            assert ot.state == TrialState.COMPLETE and ot.value == pytest.approx(per_epoch[3])
        # every report says where the trial trained, and in which precision Lightning ran it
        # (the default, auto, resolved for this machine's CPU)
        assert all(r["device"] == "cpu" and float(r["gpu_mem_peak_mb"]) == 0.0 for r in rows)
        assert {r["precision"] for r in rows} == {AUTO_PRECISION_HERE}
        assert ot.user_attrs["precision"] == AUTO_PRECISION_HERE
    assert best["precision"] == best["config"]["precision"] == AUTO_PRECISION_HERE

    # TensorBoard: every trial's events hold its hparams and per-epoch val_acc
    for t in trials:
        hp, ea = read_hparams(search / t["path"] / "tensorboard")
        assert hp["lr"] == pytest.approx(t["config"]["lr"])
        assert hp["conv_dim"] == t["config"]["conv_dim"]
        assert hp["downsample"] == t["config"]["downsample"]
        assert len(ea.Scalars("val_acc")) == t["epochs"]
        assert "val_acc" in ea.Tags()["scalars"] and "train_samples_per_s" in ea.Tags()["scalars"]


def test_failing_trials_do_not_stop_the_search(tmp_path, capsys):
    summary = run_search_cli(tmp_path, capsys, "failing.py", "f", "--max_concurrent", "2",
                             "--max_failures", "0")
    by_status = {}
    for t in summary["trials"]:
        by_status.setdefault(t["status"], []).append(t)
    assert len(by_status["errored"]) == 2 and len(by_status["completed"]) == 2
    for t in by_status["errored"]:
        assert t["config"]["num_blocks"] == 6
        assert "impossible architecture" in t["error"]
    assert summary["best"]["params"]["num_blocks"] == 1
    assert summary["best"]["test_acc"] is not None
    # Optuna: the errored trials are FAIL, the others COMPLETE (1 epoch each)
    from optuna.trial import TrialState

    from textsearch.study import load_study

    states = {f"{t.number:04d}": t.state for t in load_study(tmp_path / "f").trials}
    assert states == {t["trial_id"]: TrialState.FAIL if t["status"] == "errored"
                      else TrialState.COMPLETE for t in summary["trials"]}


def test_debug_run_is_in_process_and_prints_config_and_metrics(tmp_path, capsys):
    import ray

    code, err = run_main(tune_main, [
        "--space", str(SPACES / "asha_certain.py"), "--debug", "--set", "conv_dim=5",
        "--set", "downsample=stride", "--max_epochs", "1", "--results_dir", str(tmp_path)], capsys)
    assert code == 0, err
    assert not ray.is_initialized()
    assert "[trial report]" in err and "val_acc=" in err
    runs = list((tmp_path / "debug").iterdir())
    assert len(runs) == 1 and (runs[0] / "tensorboard").exists()


def test_debug_run_output(tmp_path):
    from textsearch import spaces
    from textsearch.tune import build_parser, run_debug

    args = build_parser().parse_args(["--space", str(SPACES / "asha_certain.py"), "--debug",
                                      "--set", "conv_dim=6", "--fast_dev_run", "2",
                                      "--precision", "bf16-mixed", "--results_dir", str(tmp_path)])
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert run_debug(args, spaces.load(args.space)) == 0
    out = buf.getvalue()
    assert '"conv_dim": 6' in out and '"lr": 0.003' in out and "metrics:" in out
    assert '"precision": "bf16-mixed"' in out


BAD = [
    (["--space", "nope"], "unknown search space 'nope'; known: cnn_emnist"),
    (["--space", str(SPACES / "broken_import.py")], "broken_import.py:6: ValueError"),
    (["--space", str(SPACES / "broken_function.py")], "broken_function.py:8: ZeroDivisionError"),
    (["--space", "smoke", "--num_samples", "0"], "must be > 0"),
    (["--space", "smoke", "--num_samples", "many"], "expected a positive integer"),
    (["--space", "smoke", "--max_epochs", ""], "expected a positive integer"),
    (["--space", "smoke", "--time_budget_s", "-5"], "must be > 0"),
    (["--space", "smoke", "--data_fraction", "2"], "fraction in (0, 1]"),
    (["--space", "smoke", "--reduction_factor", "1"], "reduction_factor must be > 1"),
    (["--space", "smoke", "--gpus_per_trial", "1"], "has none"),
    (["--space", "smoke", "--gpus_per_trial", "-1"], "must be >= 0"),
    (["--space", "smoke", "--precision", "16-mixed"], "16-mixed needs a GPU"),
    (["--space", "smoke", "--debug", "--precision", "16-mixed"], "16-mixed needs a GPU"),
    (["--space", "smoke", "--precision", "64"], "invalid choice: '64'"),
    (["--space", "cnn_emnist", "--debug", "--set", "num_blocks=6", "--set", "downsample_every=1"],
     "downsample_every: 1 is outside the range [2, 3]"),
    (["--space", "smoke", "--address", "127.0.0.1:9"], "cannot reach the Ray cluster at 127.0.0.1:9"),
    (["--space", "smoke", "--address", "nonsense"], "--address must be"),
    (["--space", "smoke", "--debug", "--set", "colour=red"], "unknown parameter 'colour'"),
    (["--space", "smoke", "--debug", "--set", "num_blocks=x"], "expected an integer"),
    (["--space", "smoke", "--set", "lr=0.1"], "--set belongs to the --debug run"),
    (["--space", ""], "must not be empty"),
    ([], "--space is required"),
    (["--space", "smoke", "--resume"], "no search of space 'smoke'"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a)[-60:] for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message, capsys):
    import torch

    if ("--gpus_per_trial" in args or "16-mixed" in args) and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, err = run_main(tune_main, [*args, "--results_dir", str(tmp_path / "runs")], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]


def test_unwritable_results_dir(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, err = run_main(tune_main, ["--space", "smoke", "--results_dir", str(blocker / "runs")],
                         capsys)
    assert code == 2 and "cannot create results directory" in err


def test_results_dir_must_be_a_path_not_a_uri(capsys):
    code, err = run_main(tune_main, ["--space", "smoke", "--results_dir", "s3://bucket/runs"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "must be a folder path (on a cluster: one every node shares" in err
    assert not Path("s3:").exists()


def test_existing_search_name_is_refused(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "search.json").write_text("{}")
    code, err = run_main(tune_main, ["--space", "smoke", "--results_dir", str(tmp_path),
                                     "--name", "taken"], capsys)
    assert code == 2 and "already exists: use --resume" in err


def test_time_budget_ends_the_search_cleanly(tmp_path, capsys):
    summary = run_search_cli(tmp_path, capsys, "slow.py", "b", "--max_concurrent", "1",
                             "--num_samples", "30", "--time_budget_s", "12")
    # the budget counts from Tune's start; Ray's start and the wrap-up come on top of it
    assert 12 <= summary["wall_s"] < 12 + 60
    search = tmp_path / "b"
    started = {f.parent.name for f in search.glob("trial_*/progress.csv")}
    assert summary["num_trials"] < 30 and len(started) <= summary["num_trials"]
    assert summary["status_counts"].get("completed", 0) < 30  # the budget cut the search short


def test_trials_take_over_a_finished_trials_process(tmp_path, capsys):
    """With one slot, every trial runs in the same Ray worker process (Ray's reported pid)."""
    summary = run_search_cli(tmp_path, capsys, "tiny.py", "r", "--num_samples", "3",
                             "--max_concurrent", "1")
    assert summary["num_trials"] == 3
    pids, spans = set(), []
    for f in (tmp_path / "r").glob("trial_*/progress.csv"):
        rows = [{k: float(v) for k, v in r.items() if k in ("pid", "first_batch_at", "epoch_end_at")}
                for r in csv.DictReader(f.open())]
        pids |= {r["pid"] for r in rows}
        assert all(r["first_batch_at"] <= r["epoch_end_at"] for r in rows)
        spans.append((rows[0]["first_batch_at"], rows[-1]["epoch_end_at"]))
    assert len(pids) == 1
    spans.sort()
    assert all(prev_end <= start for (_, prev_end), (start, _) in zip(spans, spans[1:]))


def test_the_driver_leaves_torch_and_lightning_to_the_trials(tmp_path):
    """A search's own process reads the data and drives Tune without loading torch or
    Lightning; the trials' processes load them, and a trial that ends at the search's tail
    tests the best checkpoint, so the summary holds its test accuracy all the same."""
    argv = ["--space", str(SPACES / "tiny.py"), "--results_dir", str(tmp_path), "--name", "d",
            "--no_report", "--gpus_per_trial", "0", "--scheduler", "fifo", "--num_samples", "2",
            "--max_epochs", "1"]
    probe = ("import json, sys\nfrom textsearch.tune import main\n"
             f"code = main({argv!r})\n"
             "print(json.dumps({'code': code, 'loaded': [m for m in ('torch', 'torchvision', "
             "'pytorch_lightning') if m in sys.modules]}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"code": 0, "loaded": []}
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    best = summary["best"]
    tested = json.loads((tmp_path / "d" / f"trial_{best['trial_id']}" / "test.json").read_text())
    assert tested["epoch"] == best["epoch"] == 1
    assert best["test_acc"] == tested["test_acc"] and 0 < best["test_acc"] <= 1


def test_a_checkpoint_being_tested_is_left_to_its_tester(tmp_path, capsys):
    """While one process tests the best checkpoint (its claim in the trial's folder), another
    that shares the search leaves it be; the search's end tests it regardless and clears the
    claim (one left by a tester that was killed)."""
    from textsearch.record import TEST_CLAIM, TEST_METRICS
    from textsearch.summary import summarize
    from textsearch.tester import evaluate_best

    run_search_cli(tmp_path, capsys, "tiny.py", "c", "--gpus_per_trial", "0", "--scheduler",
                   "fifo", "--num_samples", "1", "--max_epochs", "1")
    search = tmp_path / "c"
    tested = json.loads((search / "trial_0000" / TEST_METRICS).read_text())
    (search / "trial_0000" / TEST_METRICS).unlink()
    claim = search / "trial_0000" / TEST_CLAIM
    claim.touch()
    assert evaluate_best(search, shared=True) is None
    assert not (search / "trial_0000" / TEST_METRICS).exists() and claim.exists()
    assert evaluate_best(search) == pytest.approx(tested["test_acc"])
    assert not claim.exists()
    assert summarize(search)["best"]["test_acc"] == pytest.approx(tested["test_acc"])

    # a tester that read the summary before another one wrote test.json and dropped its
    # claim takes the claim, finds test.json of that epoch, and leaves it as it is
    metrics = search / "trial_0000" / TEST_METRICS
    written = metrics.read_text()
    metrics.unlink()
    stale = summarize(search)
    metrics.write_text(written)
    os.utime(metrics, (1, 1))
    assert evaluate_best(search, summary=stale, shared=True) == pytest.approx(tested["test_acc"])
    assert metrics.stat().st_mtime == 1 and metrics.read_text() == written
    assert not claim.exists()

    # a claim left by a killed tester is cleared when a run of the search starts
    claim.touch()
    run_search_cli(tmp_path, capsys, "tiny.py", "c", "--resume")
    assert not claim.exists()
    assert json.loads(metrics.read_text()) == json.loads(written)


def test_the_best_is_tested_while_the_last_trial_still_trains(tmp_path, capsys):
    """Once no trial is left to start, the best checkpoint so far is tested on the freed
    core: trial 0's test.json is written before slow trial 1 has ended, and the summary's
    test accuracy is that evaluation of the final best."""
    summary = run_search_cli(tmp_path, capsys, "tail.py", "t", "--gpus_per_trial", "0",
                             "--max_concurrent", "2", "--scheduler", "fifo")
    search = tmp_path / "t"
    best = summary["best"]
    assert best["trial_id"] == "0000"
    tested = json.loads((search / "trial_0000" / "test.json").read_text())
    assert tested["epoch"] == best["epoch"] and tested["test_acc"] == best["test_acc"]
    slow = list(csv.DictReader((search / "trial_0001" / "progress.csv").open()))
    assert len(slow) == 3
    written = (search / "trial_0000" / "test.json").stat().st_mtime
    assert written < float(slow[-1]["timestamp"]), (written, slow[-1]["timestamp"])


def test_asha_stopping_a_trial_frees_a_core_that_tests_the_best_so_far(tmp_path, capsys):
    """The driver's tail test: ASHA stops trial 1 at the first rung while trial 0 still
    trains; the core it frees tests trial 0's best checkpoint so far, an epoch before its
    last (a trial tests the best itself only at its own last epoch), and the summary's test
    accuracy is still the final best's."""
    search = tmp_path / "a"
    test_file, progress = (search / "trial_0000" / name for name in ("test.json", "progress.csv"))
    seen: list[tuple[int, int]] = []  # (the epoch trial 0's test.json names, its epochs logged)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                epoch = json.loads(test_file.read_text())["epoch"]
                logged = len(list(csv.DictReader(progress.open())))
            except (OSError, ValueError, KeyError):
                epoch = None
            if epoch is not None and (not seen or seen[-1][0] != epoch):
                seen.append((epoch, logged))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        summary = run_search_cli(tmp_path, capsys, "tail_asha.py", "a", "--gpus_per_trial", "0",
                                 "--max_concurrent", "2")
    finally:
        done.set()
        watcher.join()
    trials = {t["trial_id"]: t for t in summary["trials"]}
    assert trials["0001"]["status"] == "stopped_early" and trials["0001"]["epochs"] == 1
    last = 12  # the space's max_epochs
    assert trials["0000"]["status"] == "completed" and trials["0000"]["epochs"] == last
    # tested while trial 0 had epochs to go: the driver's test, not trial 0's own
    assert any(logged < last for _, logged in seen), seen
    # the final best, picked by hand from trial 0's own rows (trial 1 never learned)
    rows = list(csv.DictReader(progress.open()))
    accs = [float(r["val_acc"]) for r in rows]
    best_epoch = int(rows[accs.index(max(accs))]["epoch"])
    final = json.loads(test_file.read_text())
    assert summary["best"]["epoch"] == final["epoch"] == best_epoch
    assert summary["best"]["test_acc"] == final["test_acc"]


def test_search_seed_is_a_draw_of_the_training_too(tmp_path, capsys):
    """One config searched with seeds 0, 1 and 1 again: the two seed-1 searches train alike
    (the same val_loss), the seed-0 one is another draw of the weights and batches."""
    val_loss = {}
    for name, seed in (("a", "0"), ("b", "1"), ("c", "1")):
        code, err = run_main(tune_main, [
            "--space", str(SPACES / "one_config.py"), "--results_dir", str(tmp_path),
            "--name", name, "--seed", seed, "--gpus_per_trial", "0", "--no_report"], capsys)
        assert code == 0, err
        (row,) = csv.DictReader((tmp_path / name / "trial_0000" / "progress.csv").open())
        val_loss[name] = float(row["val_loss"])
    assert val_loss["b"] == pytest.approx(val_loss["c"], abs=1e-4)
    assert abs(val_loss["a"] - val_loss["b"]) > 1e-3, val_loss
