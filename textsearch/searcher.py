"""The Optuna study behind a search, told what really happened to each trial.

Ray's :class:`~ray.tune.search.optuna.OptunaSearch` tells Optuna that every trial with a
result is COMPLETE, so TPE would rank a trial that ASHA stopped after one epoch as if it
had trained all its epochs.  :class:`StudySearcher` tells the truth instead:

- every epoch's metric is an intermediate value of the Optuna trial (step = epoch);
- a trial stopped before ``max_epochs`` (ASHA's stop) is PRUNED: TPE then ranks it by the
  epochs it reached, as it does for trials an Optuna pruner stopped;
- a trial that errored (after its retries) is FAIL;
- a trial that ran all its epochs is COMPLETE with its final metric.

A trial interrupted by Ctrl-C or a time budget is not told anything: it stays RUNNING in
the study and is told its state when ``--resume`` finishes it.

The study is written to ``<search dir>/study.journal`` (Optuna's journal file storage),
so it can be read while and after the search runs (:func:`load_study`).
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from textsearch.layout import STUDY_FILE
from textsearch.stopper import out_of_space

log = logging.getLogger(__name__)

STUDY_NAME = "textsearch"


def journal_storage(path: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def load_study(search_dir: Path) -> optuna.Study:
    """The study of a search, read from its journal file."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(
        Path(search_dir) / STUDY_FILE))


def fail_trial(search_dir: Path, ray_trial_id: str) -> None:
    """Tell the study that a trial the searcher never heard the end of has failed."""
    study = load_study(search_dir)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("ray_trial_id") == ray_trial_id:
            study.tell(t.number, state=TrialState.FAIL)


STARTUP_RULE = "half of --num_samples, 2 to 10"


def default_startup_trials(num_samples: int) -> int:
    """Random trials before TPE models the results: half of the search, 2 to 10.

    Optuna's own default (10) turns a search of 10 trials or fewer into a random search.
    Fewer start-up trials did worse in ``benchmarks/run.py --only tpe_startup``: with 2 or 3
    random trials TPE settled early on the best of too few configs.
    """
    return max(2, min(10, num_samples // 2))


def make_sampler(searcher: str, seed: int, startup_trials: int) -> optuna.samplers.BaseSampler:
    """TPE as Optuna advises for conditional define-by-run spaces, or random search.

    ``multivariate`` models the parameters jointly; ``group`` splits the space by which
    parameters a trial used, so conditional parameters are modelled where they exist;
    ``constant_liar`` keeps concurrent trials from proposing the same point.
    """
    if searcher == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials,
                                          multivariate=True, group=True, constant_liar=True)


class StudySearcher(OptunaSearch):
    """OptunaSearch that records every epoch and tells Optuna each trial's true state.

    ``max_epochs``: epochs of a trial that is never stopped. ``time_attr``: the result key
    holding the epoch (1-based).
    """

    def __init__(self, *args: Any, max_epochs: int, time_attr: str = "epoch",
                 search_dir: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs
        self.search_dir = search_dir
        self.time_attr = time_attr
        self._epochs: dict[str, int] = {}  # last epoch recorded, per Ray trial id
        self._values: dict[str, float] = {}  # its metric

    def _report(self, trial_id: str, result: dict) -> None:
        """Record ``result`` as the Optuna trial's value at its epoch (once per epoch)."""
        value, epoch = result.get(self.metric), result.get(self.time_attr)
        if value is None or epoch is None or not math.isfinite(float(value)):
            return
        epoch = int(epoch)
        if epoch <= self._epochs.get(trial_id, 0):
            return
        ot_trial = self._ot_trials[trial_id]
        ot_trial.report(float(value), epoch)
        self._epochs[trial_id] = epoch
        self._values[trial_id] = float(value)
        ot_trial.set_user_attr("epochs", epoch)
        for key in ("train_samples_per_s", "device"):
            if key in result:
                ot_trial.set_user_attr(key, result[key])

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            self._ot_trials[trial_id].set_user_attr("ray_trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if error and self.search_dir and out_of_space(Path(self.search_dir)):
            # Failed for lack of disk space, not because of its config: it stays RUNNING, and
            # --resume retries it once there is room.
            return
        if result:
            # Ray does not pass the result that made the scheduler stop a trial to
            # on_trial_result: record it here.
            self._report(trial_id, result)
        last = (result or {}).get(self.metric)
        diverged = last is not None and not math.isfinite(float(last))
        if error or diverged:
            state, value = TrialState.FAIL, None
        elif self._epochs.get(trial_id, 0) >= self.max_epochs:
            state, value = TrialState.COMPLETE, self._values[trial_id]
        else:  # stopped early by the scheduler (or removed before it reported)
            state, value = TrialState.PRUNED, None
        try:
            self._ot_study.tell(self._ot_trials[trial_id], value, state=state)
        except Exception as err:  # e.g. the trial was already finished in the study
            log.warning("could not tell Optuna the end of trial %s: %s", trial_id, err)
        self._completed_trials.add(trial_id)
