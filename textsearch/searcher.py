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

import json
import logging
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import ConcurrencyLimiter, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from textsearch.errors import UserError
from textsearch.layout import STUDY_FILE
from textsearch.stopper import out_of_space

log = logging.getLogger(__name__)

STUDY_NAME = "textsearch"


def journal_storage(path: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def repair_journal(path: Path) -> str | None:
    """Cut a damaged last line off a study journal (a writer killed mid-line).

    Taken under the journal's own lock, so a line being written is never mistaken for a
    damaged one.  The cut bytes are kept in ``<journal>.damaged``.  Returns a line saying
    what was cut (also printed), or None.  A damaged line before the end is not repaired:
    :class:`UserError`.
    """
    from optuna.storages.journal import JournalFileSymlinkLock
    from optuna.storages.journal._file import get_lock_file

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with get_lock_file(JournalFileSymlinkLock(str(path))):
        data = path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last newline: b"" when the file is whole
        bad = [i for i, line in enumerate(lines) if not _json_line(line)]
        if bad and bad != [len(lines) - 1]:
            raise UserError(f"{path} is damaged at line {bad[0] + 1} of {len(lines)} (not at its "
                            "end, so it cannot be repaired): restore it from a backup")
        if not bad and not tail:
            return None
        keep = b"".join(line + b"\n" for line in lines[:bad[0] if bad else len(lines)])
        with open(f"{path}.damaged", "ab") as f:
            f.write(data[len(keep):])
        path.write_bytes(keep)
    message = (f"textsearch: {path}: cut a damaged last line ({len(data) - len(keep)} bytes, "
               f"kept in {path.name}.damaged); the study holds every trial before it")
    print(message, file=sys.stderr, flush=True)
    return message


def _json_line(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def load_study(search_dir: Path) -> optuna.Study:
    """The study of a search, read from its journal file (a damaged last line is cut)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = Path(search_dir) / STUDY_FILE
    if not journal.is_file():
        raise UserError(f"{search_dir} holds no {STUDY_FILE}")
    repair_journal(journal)
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(journal))
    except KeyError:
        raise UserError(f"{journal} holds no textsearch study") from None


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

    ``metric``/``mode``: one objective, or lists of 2-3 (a multi-objective study; Optuna
    keeps no intermediate values there, so each epoch's values go to the user attribute
    ``values_by_epoch``). ``max_epochs``: epochs of a trial that is never stopped.
    ``time_attr``: the result key holding the epoch (1-based).
    """

    def __init__(self, *args: Any, max_epochs: int, time_attr: str = "epoch",
                 search_dir: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs
        self.search_dir = search_dir
        self.time_attr = time_attr
        self._epochs: dict[str, int] = {}  # last epoch recorded, per Ray trial id
        self._values: dict[str, list[float]] = {}  # its objective values

    @property
    def objectives(self) -> list[str]:
        return list(self.metric) if isinstance(self.metric, (list, tuple)) else [self.metric]

    def _report(self, trial_id: str, result: dict) -> None:
        """Record ``result`` as the Optuna trial's value(s) at its epoch (once per epoch)."""
        values, epoch = [result.get(m) for m in self.objectives], result.get(self.time_attr)
        if epoch is None or any(v is None or not math.isfinite(float(v)) for v in values):
            return
        values, epoch = [float(v) for v in values], int(epoch)
        if epoch <= self._epochs.get(trial_id, 0):
            return
        ot_trial = self._ot_trials[trial_id]
        if len(values) == 1:
            ot_trial.report(values[0], epoch)
        else:
            by_epoch = dict(ot_trial.user_attrs.get("values_by_epoch", {}))
            by_epoch[str(epoch)] = values
            ot_trial.set_user_attr("values_by_epoch", by_epoch)
        self._epochs[trial_id] = epoch
        self._values[trial_id] = values
        ot_trial.set_user_attr("epochs", epoch)
        for key in ("train_samples_per_s", "device", "params", "infer_ms_per_image"):
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
        last = [(result or {}).get(m) for m in self.objectives]
        diverged = any(v is not None and not math.isfinite(float(v)) for v in last)
        if error or diverged:
            state, values = TrialState.FAIL, None
        elif self._epochs.get(trial_id, 0) >= self.max_epochs:
            state, values = TrialState.COMPLETE, self._values[trial_id]
        else:  # stopped early by the scheduler (or removed before it reported)
            state, values = TrialState.PRUNED, None
        try:
            self._ot_study.tell(self._ot_trials[trial_id], values, state=state)
        except Exception as err:  # e.g. the trial was already finished in the study
            log.warning("could not tell Optuna the end of trial %s: %s", trial_id, err)
        self._completed_trials.add(trial_id)


class SearchTrials(SearchGenerator):
    """Ray's generator of trials from a searcher, which a resume may ask for more trials.

    ``total``: set before ``--resume`` restores the search; when it exceeds the number of
    trials the search was started with, the search goes on to ``total`` trials, with the
    searcher's memory (the study) intact.
    """

    total: int | None = None

    @classmethod
    def around(cls, searcher: OptunaSearch, max_concurrent: int) -> SearchTrials:
        """``searcher`` running at most ``max_concurrent`` trials at once (0: no limit)."""
        return cls(ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
                   if max_concurrent else searcher)

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if SearchTrials.total is not None and SearchTrials.total > self._total_samples:
            self._total_samples, self._finished = SearchTrials.total, False
