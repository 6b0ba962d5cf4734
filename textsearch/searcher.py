"""Our Ray Tune searcher: the search's Optuna study, driven through ``ask`` and ``tell``.

:class:`StudySearcher` is a :class:`ray.tune.search.Searcher`, and only that: Ray asks it
for a config (``suggest``), hands it each result (``on_trial_result``) and each trial's end
(``on_trial_complete``).  It tells Optuna what really happened:

- every epoch's metric is an intermediate value of the Optuna trial (step = epoch); with
  several objectives, whose trials Optuna keeps no intermediate values for, each epoch's
  values go to the user attribute ``values_by_epoch``;
- a trial stopped before ``max_epochs`` (ASHA's stop) is PRUNED, so TPE ranks it by the
  epochs it reached, as it does for trials an Optuna pruner stopped;
- a trial that errored (after its retries) or diverged is FAIL;
- a trial that ran all its epochs is COMPLETE with its final values;
- a trial that failed because the results disk is full, or that was interrupted (Ctrl-C,
  a time budget, a killed driver), stays RUNNING.

It owns the trial budget: once the search's own trials number ``num_samples`` it answers
:data:`Searcher.FINISHED`.  A resumed search builds a new searcher on the same study: it
first hands out the study's RUNNING trials again (same number, same config, so the trial
continues from the checkpoint in its folder), then asks for new ones up to the budget.  So
the study in the search folder is the searcher's whole memory, and nothing it saves for
Ray holds a path.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from textsearch.study import (
    CONFIG_ATTR,
    FIRST_TRIAL_ATTR,
    RAY_TRIAL_ATTR,
    VALUES_BY_EPOCH,
    StoredTrial,
    is_own,
    open_study,
)

REPORTED_ATTRS = ("train_samples_per_s", "device", "params", "infer_ms_per_image", "precision")


class StudySearcher(Searcher):
    """Proposes trials from the study of the search in ``search_dir``.

    ``space``: the Optuna define-by-run function (returns further fixed values, or None).
    ``objectives``: ``[(metric, mode), ...]``, the first one ASHA's.  ``max_epochs``: epochs
    of a trial that is never stopped.  ``num_samples``: the search's own trials in all.
    ``sampler``: Optuna's sampler.  ``out_of_space``: tells whether the results disk is
    full (then a failed trial stays RUNNING, to be retried by ``--resume``).
    """

    def __init__(self, search_dir: Path, space: Callable[[Any], dict | None],
                 objectives: list[tuple[str, str]], max_epochs: int, num_samples: int,
                 sampler: optuna.samplers.BaseSampler,
                 out_of_space: Callable[[], bool] = lambda: False) -> None:
        metrics, modes = [m for m, _ in objectives], [d for _, d in objectives]
        super().__init__(metric=metrics[0], mode=modes[0])
        self.objectives = list(objectives)
        self.max_epochs = max_epochs
        self.num_samples = num_samples
        self.space = space
        self.out_of_space = out_of_space
        self.study, self.storage = open_study(search_dir, sampler=sampler)
        own = [t for t in self.study.get_trials(deepcopy=False) if is_own(t)]
        # the search's own trials so far, toward num_samples (a WAITING one, the enqueued
        # first trial of a run that ended before asking for it, is asked for later)
        self.asked = sum(t.state != TrialState.WAITING for t in own)
        # interrupted trials of earlier runs, handed out again before any new one
        self.unfinished = [t.number for t in own if t.state == TrialState.RUNNING]
        self.numbers: dict[str, int] = {}  # Ray trial id -> study trial number
        self.trials: dict[str, optuna.Trial | StoredTrial] = {}  # Ray trial id -> its study trial
        self.epochs: dict[str, int] = {}  # last epoch told, per Ray trial id
        self.values: dict[str, list[float]] = {}  # its objective values
        self.ended: set[str] = set()

    # -- what Ray asks ---------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.unfinished:
            number = self.unfinished.pop(0)
            trial = StoredTrial(self.study, self.storage, number)
            frozen = self.study.get_trials(deepcopy=False)[number]
            config = dict(frozen.user_attrs.get(CONFIG_ATTR) or frozen.params)
            # what the study already holds of it: a resumed trial first reports its last
            # epoch again, which is then not told twice
            by_epoch = {int(k): v for k, v in (frozen.user_attrs.get(VALUES_BY_EPOCH) or {}).items()}
            by_epoch.update({k: [v] for k, v in frozen.intermediate_values.items()})
            if by_epoch:
                self.epochs[trial_id] = max(by_epoch)
                self.values[trial_id] = list(by_epoch[max(by_epoch)])
        elif self.asked >= self.num_samples:
            return Searcher.FINISHED
        else:
            trial = self.study.ask()
            self.asked += 1
            try:
                fixed = self.space(trial)
            except Exception:
                self.study.tell(trial, state=TrialState.FAIL)
                raise
            config = {**trial.params, **(fixed or {})}
            trial.set_user_attr(CONFIG_ATTR, config)
            number = trial.number
        trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
        self.numbers[trial_id], self.trials[trial_id] = number, trial
        return config

    def enqueue_first(self, params: dict[str, Any], source: str) -> None:
        """Make ``params`` the next trial Optuna hands out (Optuna's ``enqueue_trial``);
        ``source`` ("space" or "warm_start") is kept in its user attribute ``first_trial``.
        Parameters the space does not ask for in that trial are ignored by Optuna."""
        self.study.enqueue_trial(params, user_attrs={FIRST_TRIAL_ATTR: source})

    def number_of(self, trial_id: str) -> int:
        """The study trial number a Ray trial runs (it names the trial's folder)."""
        return self.numbers[trial_id]

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.trials and trial_id not in self.ended:
            self._record(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id not in self.trials or trial_id in self.ended:
            return
        self.ended.add(trial_id)
        if error and self.out_of_space():
            # Failed for lack of disk space, not because of its config: it stays RUNNING, and
            # --resume retries it once there is room.
            return
        if result:
            # Ray does not pass the result that made the scheduler stop a trial to
            # on_trial_result: record it here.
            self._record(trial_id, result)
        last = [(result or {}).get(m) for m, _ in self.objectives]
        diverged = any(v is not None and not math.isfinite(float(v)) for v in last)
        if error or diverged:
            self.tell(trial_id, TrialState.FAIL, error=None if error else
                      f"diverged: {', '.join(m for m, _ in self.objectives)} = {last}")
        elif self.epochs.get(trial_id, 0) >= self.max_epochs:
            self.tell(trial_id, TrialState.COMPLETE, self.values[trial_id])
        else:  # stopped early by the scheduler (or removed before it reported)
            self.tell(trial_id, TrialState.PRUNED)

    # -- what the search tells -------------------------------------------------------------
    def tell(self, trial_id: str, state: TrialState, values: list[float] | None = None,
             error: str | None = None) -> None:
        """Tell the study a trial's end, unless it was told already (once per trial)."""
        number = self.numbers[trial_id]
        self.ended.add(trial_id)
        if self.study.get_trials(deepcopy=False)[number].state != TrialState.RUNNING:
            return
        if error:
            self.trials[trial_id].set_user_attr("error", error)
        self.study.tell(number, values, state=state)

    def fail(self, trial_id: str, error: str) -> None:
        """Tell the study a trial failed (one the search stops), with its error line."""
        if trial_id in self.trials:
            self.tell(trial_id, TrialState.FAIL, error=error)

    def _record(self, trial_id: str, result: dict) -> None:
        """Tell ``result``'s objective values at its epoch (once per epoch)."""
        values, epoch = [result.get(m) for m, _ in self.objectives], result.get("epoch")
        if epoch is None or any(v is None or not math.isfinite(float(v)) for v in values):
            return
        values, epoch = [float(v) for v in values], int(epoch)
        if epoch <= self.epochs.get(trial_id, 0):
            return
        trial = self.trials[trial_id]
        if len(values) == 1:
            trial.report(values[0], epoch)
        else:
            frozen = self.study.get_trials(deepcopy=False)[self.numbers[trial_id]]
            by_epoch = dict(frozen.user_attrs.get(VALUES_BY_EPOCH, {}))
            by_epoch[str(epoch)] = values
            trial.set_user_attr(VALUES_BY_EPOCH, by_epoch)
        self.epochs[trial_id], self.values[trial_id] = epoch, values
        trial.set_user_attr("epochs", epoch)
        for key in REPORTED_ATTRS:
            if key in result:
                trial.set_user_attr(key, result[key])

    # -- Ray's checkpointing of searchers --------------------------------------------------
    # Ray saves a searcher with the experiment and pickles it with the Tuner.  A search is
    # resumed from its study instead (see the module's docstring), so what is saved is a
    # note of the budget and of which Ray trial ran which study trial: no study, no path.
    def get_state(self) -> dict[str, Any]:
        return {"num_samples": self.num_samples, "asked": self.asked,
                "numbers": dict(self.numbers)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.num_samples, self.asked = state["num_samples"], state["asked"]
        self.numbers = dict(state["numbers"])

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_bytes(pickle.dumps(self.get_state()))

    def restore(self, checkpoint_path: str) -> None:
        self.set_state(pickle.loads(Path(checkpoint_path).read_bytes()))

    def __getstate__(self) -> dict[str, Any]:
        return {"metric": self.metric, "mode": self.mode, "objectives": self.objectives,
                "max_epochs": self.max_epochs, **self.get_state()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # an unbound copy (Ray's pickle of the Tuner): it proposes nothing
        Searcher.__init__(self, metric=state["metric"], mode=state["mode"])
        self.objectives, self.max_epochs = state["objectives"], state["max_epochs"]
        self.trials, self.epochs, self.values, self.ended, self.unfinished = {}, {}, {}, set(), []
        self.set_state(state)
