"""The study behind a search: the sampler it gets, and what Optuna is told of each trial.

Whole searches that check the told states live in test_tune.py (ASHA stops, errors) and
test_reliability.py (resume); here the searcher meets Optuna directly.
"""

from __future__ import annotations

import pytest
from optuna.samplers import RandomSampler, TPESampler
from optuna.trial import TrialState

from textsearch import spaces
from textsearch.search import SearchSettings, make_searcher
from textsearch.searcher import default_startup_trials, load_study


@pytest.mark.parametrize("num_samples,startup", [(1, 2), (4, 2), (8, 4), (10, 5), (12, 6),
                                                 (20, 10), (200, 10)])
def test_startup_trials_scale_with_the_search(num_samples, startup):
    assert default_startup_trials(num_samples) == startup


def settings(tmp_path, **kw) -> SearchSettings:
    base = dict(space="smoke", space_path="", name="s", results_dir=str(tmp_path), num_samples=8,
                max_epochs=3, grace_period=1, reduction_factor=2, metric="val_acc", mode="max")
    return SearchSettings(**{**base, **kw})


def test_tpe_is_set_up_for_conditional_spaces(tmp_path):
    s = settings(tmp_path)
    searcher = make_searcher(s, spaces.load("cnn_emnist"))
    sampler = searcher._ot_study.sampler  # what Optuna's study really holds
    assert isinstance(sampler, TPESampler)
    assert sampler._multivariate and sampler._group and sampler._constant_liar
    assert sampler._n_startup_trials == 4 == s.startup_trials  # resolved from num_samples=8
    explicit = make_searcher(settings(tmp_path, name="t", startup_trials=5), spaces.load("smoke"))
    assert explicit._ot_study.sampler._n_startup_trials == 5
    random = make_searcher(settings(tmp_path, name="r", searcher="random"), spaces.load("smoke"))
    assert isinstance(random._ot_study.sampler, RandomSampler)


def test_searcher_tells_optuna_each_trials_true_state(tmp_path):
    """Results as Ray hands them over: per-epoch reports, then the end of each trial."""
    s = settings(tmp_path)
    (tmp_path / "s").mkdir()
    searcher = make_searcher(s, spaces.load("smoke"))
    ids = ["stopped", "full", "crashed", "diverged"]
    for trial_id in ids:
        assert searcher.suggest(trial_id)
    searcher.on_trial_result("stopped", {"val_acc": 0.2, "epoch": 1})
    # Ray gives the result that made ASHA stop a trial only to on_trial_complete
    searcher.on_trial_complete("stopped", {"val_acc": 0.25, "epoch": 2})
    for epoch, acc in ((1, 0.3), (2, 0.5), (3, 0.6)):
        searcher.on_trial_result("full", {"val_acc": acc, "epoch": epoch, "device": "cpu"})
    searcher.on_trial_complete("full", {"val_acc": 0.6, "epoch": 3})
    searcher.on_trial_result("crashed", {"val_acc": 0.4, "epoch": 1})
    searcher.on_trial_complete("crashed", error=True)
    searcher.on_trial_complete("diverged", {"val_acc": float("nan"), "epoch": 1})
    searcher.on_trial_complete("full", {"val_acc": 0.6, "epoch": 3})  # a repeat is ignored

    study = {t.user_attrs["ray_trial_id"]: t for t in load_study(tmp_path / "s").trials}
    assert study["stopped"].state == TrialState.PRUNED
    assert study["stopped"].intermediate_values == {1: 0.2, 2: 0.25}
    assert study["full"].state == TrialState.COMPLETE and study["full"].value == 0.6
    assert study["full"].intermediate_values == {1: 0.3, 2: 0.5, 3: 0.6}
    assert study["full"].user_attrs["epochs"] == 3 and study["full"].user_attrs["device"] == "cpu"
    assert study["crashed"].state == TrialState.FAIL
    assert study["diverged"].state == TrialState.FAIL
