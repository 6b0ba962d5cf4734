"""Several objectives: three at once, a minimised first one, and a space file's own."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from textsearch import spaces
from textsearch.record import SearchSettings
from textsearch.search import make_searcher
from textsearch.study import load_study, pareto_front

SPACE = '''"""Objectives from the space file itself."""
DEFAULTS = {"fixed": {"data_class": "EMNIST", "model_class": "CNN"}, "max_epochs": 2,
            "num_samples": 4, "objectives": {"val_loss": "min", "params": "min",
                                             "infer_ms_per_image": "min"}}


def space(trial):
    trial.suggest_int("conv_dim", 4, 8)
    return None
'''


def test_a_space_file_names_its_objectives(tmp_path):
    path = tmp_path / "three.py"
    path.write_text(SPACE)
    space = spaces.load(str(path))
    assert space.defaults_objectives() == [("val_loss", "min"), ("params", "min"),
                                           ("infer_ms_per_image", "min")]
    # the first objective is the metric ASHA stops on
    assert (space.defaults.metric, space.defaults.mode) == ("val_loss", "min")


def test_three_objectives_with_a_minimised_first_reach_optuna(tmp_path):
    path = tmp_path / "three.py"
    path.write_text(SPACE)
    space = spaces.load(str(path))
    objectives = space.defaults_objectives()
    settings = SearchSettings(space="three", space_source=str(path), name="s",
                              results_dir=str(tmp_path), num_samples=4, max_epochs=2,
                              grace_period=1, reduction_factor=2, metric="val_loss", mode="min",
                              objectives=[list(o) for o in objectives])
    searcher = make_searcher(settings, space)
    # (val_loss, params, infer_ms): a dominates b; c trades val_loss for size; d stops early
    results = {"a": (0.5, 100, 1.0), "b": (0.6, 200, 2.0), "c": (0.4, 300, 1.5),
               "d": (0.9, 50, 0.5)}
    for trial_id in results:
        assert isinstance(searcher.suggest(trial_id), dict)
    for trial_id, (loss, params, ms) in results.items():
        epochs = 1 if trial_id == "d" else 2
        for epoch in range(1, epochs + 1):
            report = {"val_loss": loss + (2 - epoch) * 0.1, "params": params,
                      "infer_ms_per_image": ms, "epoch": epoch}
            searcher.on_trial_result(trial_id, report)
        searcher.on_trial_complete(trial_id, report)
    study = load_study(tmp_path / "s")
    assert [d.name for d in study.directions] == ["MINIMIZE"] * 3
    by_id = {trial_id: study.trials[searcher.number_of(trial_id)] for trial_id in results}
    assert by_id["a"].state == TrialState.COMPLETE and by_id["a"].values == [0.5, 100, 1.0]
    assert by_id["d"].state == TrialState.PRUNED  # one epoch of two
    assert by_id["d"].user_attrs["values_by_epoch"] == {"1": [pytest.approx(1.0), 50, 0.5]}
    assert by_id["a"].user_attrs["values_by_epoch"]["1"] == [pytest.approx(0.6), 100, 1.0]
    # the front, worked out by hand: b is dominated by a; d never completed
    front = {p["number"] for p in pareto_front(study, objectives)}
    assert front == {searcher.number_of("a"), searcher.number_of("c")}
