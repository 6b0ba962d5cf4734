"""The study as the search's record: objectives, more trials, warm start, dashboard, the model out.

Real Ray Tune, Optuna (journal files), optuna-dashboard in headless Chromium, TorchScript.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState

from tests.conftest import REPO, run_main, started
from textsearch.study import load_study
from textsearch.tune import main as tune_main

SPACES = Path(__file__).parent / "spaces"
TINY = str(SPACES / "tiny.py")


def tune(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = tune_main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def progress(search: Path) -> dict[str, list[dict]]:
    return {f.parent.name.removeprefix("trial_"): list(csv.DictReader(f.open()))
            for f in search.glob("trial_*/progress.csv")}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("study")


@pytest.fixture(scope="module")
def mo_search(results, data_root) -> Path:
    """A finished two-objective search (val_acc up, params down) of 4 trials."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEXTSEARCH_DATA_DIR", str(data_root))
        code = tune_main(["--space", TINY, "--results_dir", str(results), "--name", "mo",
                          "--objectives", "val_acc:max,params:min"])
    assert code == 0
    return results / "mo"


def test_several_objectives_reach_optuna_and_the_summary(mo_search):
    summary = json.loads((mo_search / "summary.json").read_text())
    assert summary["objectives"] == [["val_acc", "max"], ["params", "min"]]
    study = load_study(mo_search)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    rows = progress(mo_search)
    assert all(float(r["params"]) > 0 and float(r["infer_ms_per_image"]) > 0
               for trial in rows.values() for r in trial)
    by_id = {f"{t.number:04d}": t for t in study.trials}
    assert sorted(by_id) == sorted(rows)
    for trial_id, t in by_id.items():
        last = rows[trial_id][-1]
        if len(rows[trial_id]) == 2:  # ran max_epochs: COMPLETE with both final values
            assert t.state == TrialState.COMPLETE
            assert t.values == pytest.approx([float(last["val_acc"]), float(last["params"])])
        else:  # ASHA stopped it (on val_acc): PRUNED, its epochs kept
            assert t.state == TrialState.PRUNED
            assert t.user_attrs["values_by_epoch"]["1"][0] == pytest.approx(float(last["val_acc"]))
        assert t.user_attrs["params"] == float(last["params"])
    # the Pareto front: exactly the COMPLETE trials no other COMPLETE trial dominates
    complete = {i: t.values for i, t in by_id.items() if t.state == TrialState.COMPLETE}

    def dominated(v):
        return any(w[0] >= v[0] and w[1] <= v[1] and w != v for w in complete.values())

    front = {i for i, v in complete.items() if not dominated(v)}
    assert {t["trial_id"] for t in summary["pareto"]} == front and front
    assert (mo_search / "plot_pareto.png").stat().st_size > 10_000  # the report drew it


def test_resume_with_more_samples_adds_trials_and_keeps_the_first(mo_search, capsys):
    before = progress(mo_search)
    study_before = {t.number: (t.state, t.values) for t in load_study(mo_search).trials}
    code, out, err = tune(capsys, "--results_dir", str(mo_search.parent), "--name", "mo",
                          "--resume", "--num_samples", "6", "--no_report")
    assert code == 0, err
    assert "adding 2 trials (4 -> 6)" in out
    after = progress(mo_search)
    assert len(after) == 6
    for trial_id, rows in before.items():
        assert after[trial_id] == rows  # not rerun
    study = load_study(mo_search)
    assert len(study.trials) == 6
    assert {t.number: (t.state, t.values) for t in study.trials[:4]} == study_before
    assert json.loads((mo_search / "search.json").read_text())["num_samples"] == 6
    # fewer than it has: one line
    code, _, err = tune(capsys, "--results_dir", str(mo_search.parent), "--name", "mo",
                        "--resume", "--num_samples", "3")
    assert code == 2 and "already has 6 trials" in err


NARROW = '''"""Narrower tiny space: conv_dim 4-6, no downsample choice, plus a new parameter."""
DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN", "balance": False, "batch_size": 64,
              "fc_dim": 16, "dropout": 0.0, "num_blocks": 1},
    "max_epochs": 2, "num_samples": 2, "grace_period": 1, "reduction_factor": 2,
}


def space(trial):
    trial.suggest_int("conv_dim", 4, 6)
    trial.suggest_float("lr", 1e-3, 1e-2, log=True)
    trial.suggest_categorical("block", ["plain", "residual"])
    return None
'''


def test_warm_start_adds_old_trials_that_fit(results, mo_search, capsys):
    code, _, err = tune(capsys, "--space", TINY, "--results_dir", str(results), "--name", "old",
                        "--num_samples", "4", "--no_report")
    assert code == 0, err
    old = load_study(results / "old")
    narrow = results / "narrow.py"
    narrow.write_text(NARROW)
    code, out, err = tune(capsys, "--space", str(narrow), "--results_dir", str(results),
                          "--name", "warm", "--warm_start", str(results / "old"),
                          "--warm_start", str(mo_search), "--no_report")
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ln.startswith("warm start from")]
    assert len(lines) == 2
    assert "4 trial(s) taken" in lines[0] and "downsample not in this space in 4 trial(s)" in lines[0]
    assert "0 trial(s) taken" in lines[1] and "with other objectives" in lines[1]
    study = load_study(results / "warm")
    warm = [t for t in study.trials if "warm_start_from" in t.user_attrs]
    new = [t for t in study.trials if "warm_start_from" not in t.user_attrs]
    assert len(warm) == 4 and len(new) == 2
    assert [t.number for t in warm] == [0, 1, 2, 3]  # added before the first trial
    for t, o in zip(warm, old.trials):
        assert t.state == o.state and t.intermediate_values == o.intermediate_values
        assert "downsample" not in t.params and t.params["lr"] == o.params["lr"]
        if 4 <= o.params["conv_dim"] <= 6:
            assert t.params["conv_dim"] == o.params["conv_dim"]
        else:
            assert "conv_dim" not in t.params  # outside the new range: dropped
        if o.state == TrialState.COMPLETE:
            assert t.values == o.values
    summary = json.loads((results / "warm" / "summary.json").read_text())
    assert summary["num_trials"] == 2
    # kept relative to the search folder, so the folders can move together
    assert summary["warm_start"] == ["../old", f"../{mo_search.name}"]
    assert summary["warm_started"] == 4


def test_dashboard_serves_a_running_search_on_localhost(results, data_root):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        from tests.conftest import skip_or_fail

        skip_or_fail("no chromium here (install Debian's chromium to run this check)")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TEXTSEARCH_DATA_DIR": str(data_root)}
    journal = results / "live" / "study.journal"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tune = [sys.executable, "-m", "textsearch.tune", "--space", str(SPACES / "slow.py"),
            "--results_dir", str(results), "--name", "live", "--no_report", "--max_concurrent", "1"]
    with (results / "live.log").open("w") as log, \
            started(tune, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO) as search:
        deadline = time.time() + 120
        while time.time() < deadline and not (journal.exists() and "ray_trial_id" in
                                               journal.read_text()):  # a trial started
            assert search.poll() is None, (results / "live.log").read_text()[-3000:]
            time.sleep(0.5)
        with started([sys.executable, "-m", "textsearch.dashboard", str(results / "live"),
                      "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     text=True, env=env, cwd=REPO) as dashboard:
            first = dashboard.stdout.readline()
            assert f"http://127.0.0.1:{port}/dashboard/" in first, first
            assert search.poll() is None  # the search is still running
            flags = [browser, "--headless", "--no-sandbox", "--disable-gpu",
                     f"--user-data-dir={results / 'profile'}", "--virtual-time-budget=10000"]
            dom = subprocess.run([*flags, "--dump-dom",
                                  f"http://127.0.0.1:{port}/dashboard/studies/0/trials"],
                                 capture_output=True, text=True, timeout=120)
            assert "live" in dom.stdout and "Trial 0" in dom.stdout, dom.stdout[-2000:]
            dashboard.terminate()
            dashboard.wait(timeout=30)
    assert search.wait(timeout=300) == 0, (results / "live.log").read_text()[-3000:]


def test_retrain_exports_a_model_that_predicts(mo_search, tmp_path, capsys):
    from PIL import Image

    from textsearch.predict import load_model, predict
    from textsearch.predict import main as predict_main
    from textsearch.retrain import main as retrain_main
    from textsearch.training import TrainConfig, make_datamodule

    summary = json.loads((mo_search / "summary.json").read_text())
    pick = summary["pareto"][-1]["trial_id"]
    code, err = run_main(retrain_main, [str(mo_search), "--trial", pick, "--max_epochs", "2",
                                        "--no_progress"], capsys)
    assert code == 0, err
    out = mo_search / "retrain" / pick
    info = json.loads((out / "model.json").read_text())
    assert info["trial_id"] == pick and info["epochs"] == 2
    assert info["config"]["conv_dim"] == summary["pareto"][-1]["params"]["conv_dim"]
    assert info["data"]["data_fraction"] == 1.0 and info["data"]["cache_key"].startswith("EMNIST-")
    import torch

    scripted = torch.jit.load(str(out / "model.pt"))  # plain TorchScript, no textsearch class
    assert isinstance(scripted, torch.jit.ScriptModule)
    # the exported model on the test images, written as ink-on-paper PNGs
    cfg = TrainConfig.from_dict({"data_class": "EMNIST", "balance": False})
    bundle = make_datamodule(cfg).get_bundle()
    paths = []
    for i in range(40):
        p = tmp_path / f"{i}.png"
        Image.fromarray(255 - bundle.x_test[i]).save(p)
        paths.append(p)
    model, meta = load_model(out)
    guesses = predict(model, meta, paths)
    truth = [bundle.mapping[int(y)] for y in bundle.y_test[:40]]
    with torch.inference_mode():
        direct = scripted(torch.from_numpy(bundle.x_test[:40]).float().div(255).unsqueeze(1))
    assert [g[0][0] for g in guesses] == [bundle.mapping[i] for i in direct.argmax(1).tolist()]
    acc = np.mean([g[0][0] == t for g, t in zip(guesses, truth)])
    assert abs(acc - info["metrics"]["test_acc"]) < 0.25
    # better than chance: guessing the commonest test class
    chance = np.bincount(bundle.y_test).max() / len(bundle.y_test)
    assert info["metrics"]["test_acc"] > 1.5 * chance and acc > chance
    capsys.readouterr()
    code = predict_main([str(out / "model.pt"), str(paths[0]), str(paths[1]), "--top", "2"])
    shown = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(shown) == 2
    for line, p, g in zip(shown, paths, predict(model, meta, paths[:2], top=2)):
        assert line == f"{p}: " + "  ".join(f"{c!r} {v:.3f}" for c, v in g)
        assert len(g) == 2 and g[0][1] >= g[1][1] and g[0][1] + g[1][1] <= 1.0 + 1e-6
    # light strokes on dark (EMNIST's own look) and an RGB photo read as the same character
    rgb, light = tmp_path / "rgb.png", tmp_path / "light.png"
    Image.fromarray(255 - bundle.x_test[0]).convert("RGB").save(rgb)
    Image.fromarray(bundle.x_test[0]).save(light)
    same = predict(model, meta, [paths[0], rgb, light])
    assert same[0][0][0] == same[1][0][0] == same[2][0][0]
    # --top above the class count: every class, once
    everything = predict(model, meta, [paths[0]], top=1000)[0]
    assert len(everything) == len(meta["mapping"]) and sum(v for _, v in everything) == \
        pytest.approx(1.0, abs=1e-4)
    # bad input: one line, exit 2
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    (damaged / "model.json").write_text("{ not json")
    missing = tmp_path / "missing-info"
    shutil.copytree(out, missing)
    (missing / "model.json").unlink()
    for argv, message in [([str(tmp_path / "none.pt"), str(paths[0])], "no model at"),
                          ([str(out), str(tmp_path / "none.png")], "no image at"),
                          ([str(out), str(not_an_image)], "cannot read image"),
                          ([str(damaged), str(paths[0])], "model.json"),
                          ([str(missing), str(paths[0])], "model.json")]:
        code, err = run_main(predict_main, argv, capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    code, err = run_main(retrain_main, [str(mo_search), "--trial", "nosuch"], capsys)
    assert code == 2 and "no such trial" in err


def test_damaged_journal_tail_is_cut_and_middle_is_refused(mo_search, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(mo_search, copy, ignore=shutil.ignore_patterns("retrain", "trial_*"))
    journal = copy / "study.journal"
    whole = journal.read_bytes()
    trials = [(t.number, t.state, t.values) for t in load_study(copy).trials]
    journal.write_bytes(whole + b'{"op_code": 5, "worker_id": "x", "trial_id": 1, "par')
    study = load_study(copy)  # a killed writer's half line: cut, the study intact
    assert [(t.number, t.state, t.values) for t in study.trials] == trials and trials
    assert journal.read_bytes() == whole
    assert "cut a damaged last line" in capsys.readouterr().err
    lines = whole.split(b"\n")
    lines[3] = b"not json"
    journal.write_bytes(b"\n".join(lines))
    code, _, err = tune(capsys, "--space", TINY, "--results_dir", str(tmp_path), "--name", "w",
                        "--warm_start", str(copy))
    assert code == 2 and "damaged at line 4" in err


@pytest.mark.parametrize("argv, message", [
    (["--objectives", "val_acc:max,bogus:min"], "unknown objective 'bogus'"),
    (["--objectives", "val_acc:up"], "must be 'max' or 'min'"),
    (["--objectives", "val_acc,val_loss,params,epoch_s"], "1 to 3 objectives"),
    (["--warm_start", "/nonexistent/search"], "no such folder"),
])
def test_study_bad_input_is_one_line(argv, message, tmp_path, capsys):
    code, _, err = tune(capsys, "--space", TINY, "--results_dir", str(tmp_path), *argv)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1


def test_warm_start_folder_without_a_study(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = tune(capsys, "--space", TINY, "--results_dir", str(tmp_path),
                        "--warm_start", str(tmp_path / "empty"))
    assert code == 2 and "no study.journal there" in err


def test_dashboard_bad_input(tmp_path, capsys):
    from textsearch.dashboard import main as dashboard_main

    code, err = run_main(dashboard_main, [str(tmp_path)], capsys)
    assert code == 2 and "holds no study.journal" in err


def test_dashboard_listens_on_localhost_only_and_refuses_a_busy_port(tmp_path):
    """No browser needed: the served study, the listening address, a second dashboard."""
    import urllib.request

    from textsearch.study import create_study, make_sampler

    study, _ = create_study(tmp_path / "s", "local-only", ["maximize"], make_sampler("tpe", 0, 2))
    study.enqueue_trial({"x": 1.0})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dashboard = subprocess.Popen(
        [sys.executable, "-m", "textsearch.dashboard", str(tmp_path / "s"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    try:
        first = dashboard.stdout.readline()
        assert f"http://127.0.0.1:{port}/dashboard/" in first, first
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=30) as r:
            answer = json.loads(r.read())
        studies = answer.get("study_summaries", answer.get("studies"))
        assert [st["study_name"] for st in studies] == ["local-only"], answer
        rows = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                              text=True).stdout.splitlines()
        assert [row.split()[3] for row in rows] == [f"127.0.0.1:{port}"]  # nothing beyond
        busy = subprocess.run([sys.executable, "-m", "textsearch.dashboard", str(tmp_path / "s"),
                               "--port", str(port)], capture_output=True, text=True, env=env,
                              cwd=REPO, timeout=60)
        assert busy.returncode == 2 and len(busy.stderr.strip().splitlines()) == 1
        assert f"port {port} on 127.0.0.1 is already in use" in busy.stderr
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)
