"""The study behind a search: the sampler it gets, and what Optuna is told of each trial.

Whole searches that check the told states live in test_tune.py (ASHA stops, errors) and
test_reliability.py (resume); here the searcher meets Optuna directly.
"""

from __future__ import annotations

import pytest
from optuna.samplers import RandomSampler, TPESampler
from optuna.trial import TrialState

from textsearch import spaces
from textsearch.record import SearchSettings
from textsearch.search import make_searcher
from textsearch.searcher import StudySearcher
from textsearch.study import default_startup_trials, load_study


@pytest.mark.parametrize("num_samples,startup", [(1, 2), (4, 2), (8, 4), (10, 5), (12, 6),
                                                 (20, 10), (200, 10)])
def test_startup_trials_scale_with_the_search(num_samples, startup):
    assert default_startup_trials(num_samples) == startup


def settings(tmp_path, **kw) -> SearchSettings:
    base = dict(space="smoke", space_source="smoke", name="s", results_dir=str(tmp_path), num_samples=8,
                max_epochs=3, grace_period=1, reduction_factor=2, metric="val_acc", mode="max")
    return SearchSettings(**{**base, **kw})


def test_tpe_is_set_up_for_conditional_spaces(tmp_path):
    s = settings(tmp_path)
    searcher = make_searcher(s, spaces.load("cnn_emnist"))
    sampler = searcher.study.sampler  # what Optuna's study really holds
    assert isinstance(sampler, TPESampler)
    assert sampler._multivariate and sampler._group and sampler._constant_liar
    assert sampler._n_startup_trials == 4 == s.startup_trials  # resolved from num_samples=8
    explicit = make_searcher(settings(tmp_path, name="t", startup_trials=5), spaces.load("smoke"))
    assert explicit.study.sampler._n_startup_trials == 5
    random = make_searcher(settings(tmp_path, name="r", searcher="random"), spaces.load("smoke"))
    assert isinstance(random.study.sampler, RandomSampler)


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

    numbers = {searcher.number_of(i): i for i in ids}
    study = {numbers[t.number]: t for t in load_study(tmp_path / "s").trials}
    assert study["stopped"].state == TrialState.PRUNED
    assert study["stopped"].intermediate_values == {1: 0.2, 2: 0.25}
    assert study["full"].state == TrialState.COMPLETE and study["full"].value == 0.6
    assert study["full"].intermediate_values == {1: 0.3, 2: 0.5, 3: 0.6}
    assert study["full"].user_attrs["epochs"] == 3 and study["full"].user_attrs["device"] == "cpu"
    assert study["crashed"].state == TrialState.FAIL
    assert study["diverged"].state == TrialState.FAIL


def test_the_study_is_named_after_the_search_and_opens_after_a_move(tmp_path):
    searcher = make_searcher(settings(tmp_path, name="named"), spaces.load("smoke"))
    assert searcher.study.study_name == "named"
    searcher.suggest("a")
    (tmp_path / "named").rename(tmp_path / "moved")
    assert load_study(tmp_path / "moved").study_name == "named"
    assert len(load_study(tmp_path / "moved").trials) == 1


def test_budget_is_the_searchers_and_extends_without_rerunning_a_trial(tmp_path):
    """Ray asks until FINISHED; a new searcher on the same study (a resume) with a larger
    budget adds trials, after handing out the one the first run left RUNNING."""
    s = settings(tmp_path, num_samples=3, max_epochs=1)
    first = make_searcher(s, spaces.load("smoke"))
    configs = [first.suggest(f"r{i}") for i in range(3)]
    assert all(isinstance(c, dict) for c in configs)
    assert first.suggest("r3") == StudySearcher.FINISHED
    for i in range(2):  # two trials end; r2 is interrupted, so it stays RUNNING
        first.on_trial_complete(f"r{i}", {"val_acc": 0.5 + i / 10, "epoch": 1})
    study = load_study(tmp_path / "s")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]

    s.num_samples = 5
    second = make_searcher(s, spaces.load("smoke"))
    again = second.suggest("x0")
    assert second.number_of("x0") == 2 and again == configs[2]  # the interrupted one first
    assert isinstance(second.suggest("x1"), dict) and isinstance(second.suggest("x2"), dict)
    assert second.suggest("x3") == StudySearcher.FINISHED
    for i in range(3):
        second.on_trial_complete(f"x{i}", {"val_acc": 0.4, "epoch": 1})

    s.num_samples = 6
    third = make_searcher(s, spaces.load("smoke"))
    assert isinstance(third.suggest("y0"), dict) and third.suggest("y1") == StudySearcher.FINISHED
    third.on_trial_complete("y0", {"val_acc": 0.3, "epoch": 1})
    study = load_study(tmp_path / "s")
    assert [t.number for t in study.trials] == list(range(6))  # 6 trials, each asked once
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert [t.value for t in study.trials[:2]] == [0.5, 0.6]  # the first ones unchanged
