"""Warm start's rules, on a real old study (journal file) and real space files; no search runs."""

from __future__ import annotations

from pathlib import Path

from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from textsearch import spaces
from textsearch.record import SearchSettings
from textsearch.study import create_study, load_study, make_sampler
from textsearch.warmstart import add_to_study, collect

DEFAULTS = '''DEFAULTS = {"fixed": {"data_class": "EMNIST", "model_class": "CNN"}, "max_epochs": 2,
            "num_samples": 2}
'''
CONDITIONAL = DEFAULTS + '''

def space(trial):
    blocks = trial.suggest_int("num_blocks", 1, 4)
    # the range of downsample_every follows from num_blocks
    trial.suggest_int("downsample_every", 1, blocks)
    trial.suggest_float("lr", 1e-3, 1e-2, log=True)
    return None
'''
UNRELATED = DEFAULTS + '''

def space(trial):
    trial.suggest_categorical("block", ["plain", "residual"])
    return None
'''

DISTS = {"num_blocks": IntDistribution(1, 6), "downsample_every": IntDistribution(1, 6),
         "lr": FloatDistribution(1e-4, 1e-1, log=True)}


def old_search(folder: Path) -> Path:
    """An old search's folder: its search.json and a study of five trials, made by hand."""
    study, _ = create_study(folder, "old", ["maximize"], make_sampler("random", 0, 2))
    SearchSettings(space="cnn_emnist", space_source="cnn_emnist", name=folder.name,
                   results_dir=str(folder.parent), num_samples=5, max_epochs=2, grace_period=1,
                   reduction_factor=2, metric="val_acc", mode="max").save()
    done = dict(num_blocks=4, downsample_every=3, lr=3e-3)  # fits the new space
    out_of_range = dict(num_blocks=2, downsample_every=3, lr=3e-3)  # 3 > its 2 blocks
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.8, params=done,
                                 distributions=DISTS))
    study.add_trial(create_trial(state=TrialState.PRUNED, params=out_of_range,
                                 distributions=DISTS, intermediate_values={1: 0.3}))
    study.add_trial(create_trial(state=TrialState.FAIL, params=done, distributions=DISTS))
    study.add_trial(create_trial(state=TrialState.PRUNED, params=done, distributions=DISTS))
    running = study.ask()  # never finished: still RUNNING
    running.suggest_int("num_blocks", 1, 6)
    return folder


def space_file(tmp_path: Path, text: str, name: str) -> spaces.SearchSpace:
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return spaces.load(str(path))


def test_only_finished_trials_that_fit_their_conditional_range_are_taken(tmp_path):
    source = old_search(tmp_path / "old")
    ws = collect(source, space_file(tmp_path, CONDITIONAL, "conditional"), [("val_acc", "max")])
    # taken: the COMPLETE trial whole, and the PRUNED one with its epoch value; the pruned
    # one's downsample_every=3 is outside the range its 2 blocks give, so only it is dropped
    assert [t.state for t in ws.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    complete, pruned = ws.trials
    assert complete.params == {"num_blocks": 4, "downsample_every": 3, "lr": 3e-3}
    assert complete.values == [0.8]
    assert pruned.params == {"num_blocks": 2, "lr": 3e-3}
    assert pruned.intermediate_values == {1: 0.3}
    assert pruned.distributions["num_blocks"] == IntDistribution(1, 4)  # the new range
    assert ws.left_out == {"failed": 1, "unfinished": 1, "pruned before any epoch": 1}
    assert ws.dropped == {"downsample_every outside its new range": 1}
    line = ws.line()
    assert "2 trial(s) taken (1 complete, 1 pruned)" in line and "3 left out" in line


def test_a_space_without_the_old_parameters_takes_nothing(tmp_path):
    source = old_search(tmp_path / "old")
    ws = collect(source, space_file(tmp_path, UNRELATED, "unrelated"), [("val_acc", "max")])
    assert ws.trials == []
    # the COMPLETE trial and both PRUNED ones: none has a parameter the space asks for
    assert ws.left_out == {"no parameter of this space": 3, "failed": 1, "unfinished": 1}
    assert {"num_blocks not in this space", "lr not in this space"} <= set(ws.dropped)


def test_other_objectives_leave_the_whole_search_out_and_taken_trials_reach_the_study(tmp_path):
    source = old_search(tmp_path / "old")
    space = space_file(tmp_path, CONDITIONAL, "conditional")
    other = collect(source, space, [("val_loss", "min")])
    assert other.trials == [] and sum(other.left_out.values()) == 5
    new, _ = create_study(tmp_path / "new", "new", ["maximize"], make_sampler("tpe", 0, 2))
    [ws] = add_to_study(new, [str(source)], space, [("val_acc", "max")])
    study = load_study(tmp_path / "new")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert all(t.user_attrs["warm_start_from"] == "old" for t in study.trials)
    assert [t.user_attrs["warm_start_trial"] for t in study.trials] == [0, 1]
    assert study.trials[0].distributions["lr"] == FloatDistribution(1e-3, 1e-2, log=True)
    assert ws.source == source
