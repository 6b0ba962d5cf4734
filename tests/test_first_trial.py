"""A search's first trial: the space's known-good config in a fresh search, the best of a
``--warm_start`` search instead when given one, nothing special on ``--resume``; and the
Gaussian-process sampler in a real search.  The study is read with plain Optuna."""

from __future__ import annotations

import csv
import json

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tests.conftest import run_main
from tests.test_tune import SPACES, run_search_cli
from textsearch.tune import main as tune_main

FIRST = {"conv_dim": 7, "lr": 0.004, "downsample": "stride"}  # tests/spaces/first.py, by hand


def study_trials(search_dir):
    """The study's trials as plain Optuna reads the journal file."""
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(search_dir / "study.journal")))
    [name] = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage).trials


def last_val_acc(trial_dir) -> float:
    return float(list(csv.DictReader((trial_dir / "progress.csv").open()))[-1]["val_acc"])


def test_the_known_good_config_is_trial_0_of_a_fresh_search_only(tmp_path, capsys):
    run_search_cli(tmp_path, capsys, "first.py", "s", "--max_concurrent", "1", "--seed", "1")
    trials = study_trials(tmp_path / "s")
    assert len(trials) == 2
    assert trials[0].params == FIRST and trials[0].user_attrs["first_trial"] == "space"
    assert trials[1].params != FIRST and "first_trial" not in trials[1].user_attrs
    # what the trial really trained: its config on disk
    assert {k: json.loads((tmp_path / "s" / "trial_0000" / "config.json").read_text())[k]
            for k in FIRST} == FIRST

    # a resume with a larger budget samples its new trial: the first config is not run again
    run_search_cli(tmp_path, capsys, "first.py", "s", "--resume", "--num_samples", "3")
    trials = study_trials(tmp_path / "s")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert trials[2].params != FIRST and "first_trial" not in trials[2].user_attrs
    assert sum(t.params == FIRST for t in trials) == 1

    # a warm start runs the old search's best first: its trial with the highest last val_acc
    by_hand = max(range(3), key=lambda i: last_val_acc(tmp_path / "s" / f"trial_{i:04d}"))
    run_search_cli(tmp_path, capsys, "first.py", "w", "--warm_start", str(tmp_path / "s"),
                   "--num_samples", "1", "--seed", "2")
    own = [t for t in study_trials(tmp_path / "w") if "warm_start_from" not in t.user_attrs]
    assert len(own) == 1 and own[0].user_attrs["first_trial"] == "warm_start"
    assert own[0].params == study_trials(tmp_path / "s")[by_hand].params


def test_no_first_trial_samples_trial_0(tmp_path, capsys):
    run_search_cli(tmp_path, capsys, "first.py", "n", "--no_first_trial", "--num_samples", "1")
    [trial] = study_trials(tmp_path / "n")
    assert trial.params != FIRST and "first_trial" not in trial.user_attrs


def test_a_first_trial_the_space_cannot_propose_is_one_line(tmp_path, capsys):
    text = (SPACES / "first.py").read_text()
    for bad, words in ((text.replace('"conv_dim": 7', '"conv_dim": 70'), "conv_dim: 70 is not in"),
                       (text.replace('"conv_dim": 7', '"width": 7'), "width not searched")):
        path = tmp_path / "bad.py"
        path.write_text(bad)
        code, err = run_main(tune_main, ["--space", str(path), "--results_dir", str(tmp_path)],
                             capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "first_trial" in err and words in err, err


def test_the_gaussian_process_sampler_runs_a_search_and_optuna_holds_true_states(tmp_path, capsys):
    """--searcher gp: after one random trial, Optuna's GPSampler proposes the rest (its own
    system attribute on each trial it modelled); every state matches the trial's folder."""
    run_search_cli(tmp_path, capsys, str(SPACES / "asha_certain.py"), "gp", "--searcher", "gp",
                   "--startup_trials", "1", "--max_concurrent", "1", "--seed", "0")
    assert json.loads((tmp_path / "gp" / "search.json").read_text())["searcher"] == "gp"
    trials = study_trials(tmp_path / "gp")
    assert len(trials) == 4
    modelled = [any(k.startswith("gp:") for k in t.system_attrs) for t in trials]
    assert modelled[0] is False and any(modelled[1:]), modelled
    for t in trials:
        rows = list(csv.DictReader((tmp_path / "gp" / f"trial_{t.number:04d}" / "progress.csv").open()))
        epochs = {int(r["epoch"]): float(r["val_acc"]) for r in rows}
        assert t.intermediate_values == epochs
        if len(rows) == 3:  # max_epochs: ran to its end
            assert t.state == TrialState.COMPLETE and t.value == epochs[3]
        else:  # ASHA stopped it
            assert t.state == TrialState.PRUNED
