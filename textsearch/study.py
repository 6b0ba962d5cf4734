"""The Optuna study of a search: its storage, repair, loading, and what it says of trials.

A search keeps its study in ``<search dir>/study.journal`` (Optuna's journal file storage),
named after the search.  This module is the one place that opens, creates and reads it; it
imports neither Ray nor torch, so the summary, the report, the dashboard, warm start and
the notebooks read a search without them.

- :func:`load_study` opens the one study in a journal (by whatever name it has, so a
  renamed or moved folder still opens), after :func:`repair_journal` cut a line that a
  killed writer left half written.
- Trials of the search itself are told apart from those that ``--warm_start`` copied in
  (:func:`is_own`): only its own trials count toward the budget, the summary, the Pareto
  front and the importance plot.
- :func:`pareto_front` and :func:`trial_values` read what was told: final values of
  COMPLETE trials, per-epoch values of PRUNED and RUNNING ones.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from textsearch.errors import UserError
from textsearch.record import STUDY_FILE

WARM_START_ATTR = "warm_start_from"  # user attribute of trials copied from an older search
CONFIG_ATTR = "config"  # user attribute: everything the space function returned for a trial
RAY_TRIAL_ATTR = "ray_trial_id"  # user attribute: the Ray trial that last ran a study trial
VALUES_BY_EPOCH = "values_by_epoch"  # user attribute of multi-objective trials: epoch -> values
FIRST_TRIAL_ATTR = "first_trial"  # user attribute of an enqueued first trial: "space" or "warm_start"

STATUS = {  # how a search names the study's trial states
    TrialState.COMPLETE: "completed",  # ran all its epochs
    TrialState.PRUNED: "stopped_early",  # ASHA stopped it
    TrialState.FAIL: "errored",  # crashed (after its retries) or diverged
    TrialState.RUNNING: "unfinished",  # interrupted; --resume continues it
    TrialState.WAITING: "unfinished",
}


def journal_storage(path: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def repair_journal(path: Path) -> str | None:
    """Cut a damaged last line off a study journal (a writer killed mid-line).

    Taken under the journal's own lock, so a line being written is never mistaken for a
    damaged one.  The cut bytes are kept in ``<journal>.damaged``.  Returns a line saying
    what was cut (also printed), or None.  A damaged line before the end is not repaired:
    :class:`UserError`.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
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
    finally:
        lock.release()
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


def has_study(search_dir: Path) -> bool:
    return (Path(search_dir) / STUDY_FILE).is_file()


def open_study(search_dir: Path, sampler: optuna.samplers.BaseSampler | None = None
               ) -> tuple[optuna.Study, optuna.storages.JournalStorage]:
    """The study of a search and its storage, read from its journal file (a damaged last
    line is cut first).  The journal holds one study; it opens by whatever name it has."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = Path(search_dir) / STUDY_FILE
    if not journal.is_file():
        raise UserError(f"{search_dir} holds no {STUDY_FILE}")
    repair_journal(journal)
    storage = journal_storage(journal)
    names = optuna.get_all_study_names(storage)
    if len(names) != 1:
        raise UserError(f"{journal} holds {len(names)} studies, not one search's")
    return optuna.load_study(study_name=names[0], storage=storage, sampler=sampler), storage


def load_study(search_dir: Path) -> optuna.Study:
    """The study of a search, read from its journal file."""
    return open_study(search_dir)[0]


def create_study(search_dir: Path, name: str, directions: list[str],
                 sampler: optuna.samplers.BaseSampler
                 ) -> tuple[optuna.Study, optuna.storages.JournalStorage]:
    """A new study named after its search, in ``<search_dir>/study.journal``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    Path(search_dir).mkdir(parents=True, exist_ok=True)
    storage = journal_storage(Path(search_dir) / STUDY_FILE)
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                directions=directions)
    return study, storage


class StoredTrial:
    """A trial already in the study (a RUNNING trial of an earlier run, which a resumed
    search hands out again) that can be told more: its per-epoch values and user attributes.

    Optuna hands out live :class:`optuna.Trial` objects only from ``study.ask()`` and says
    not to build them by hand; this one writes through the storage's public methods, by the
    trial's id in the storage (found from the study and the trial's number).
    """

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage,
                 number: int) -> None:
        study_id = storage.get_study_id_from_name(study.study_name)
        self.storage, self.number = storage, number
        self.trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)

    def report(self, value: float, step: int) -> None:
        self.storage.set_trial_intermediate_value(self.trial_id, step, float(value))

    def set_user_attr(self, key: str, value: Any) -> None:
        self.storage.set_trial_user_attr(self.trial_id, key, value)


def is_own(trial: FrozenTrial) -> bool:
    """Whether a trial is the search's own (not copied in by ``--warm_start``)."""
    return WARM_START_ATTR not in trial.user_attrs


def own_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if is_own(t)]


def status(trial: FrozenTrial) -> str:
    return STATUS.get(trial.state, "unfinished")


def last_value(trial: FrozenTrial) -> float | None:
    """The first objective's value a trial ended on (or reached last, if not COMPLETE)."""
    if trial.state == TrialState.COMPLETE and trial.values:
        return float(trial.values[0])
    if trial.intermediate_values:
        return float(trial.intermediate_values[max(trial.intermediate_values)])
    by_epoch = trial.user_attrs.get(VALUES_BY_EPOCH)
    if by_epoch:
        return float(by_epoch[max(by_epoch, key=int)][0])
    return None


def ranked_study(study: optuna.Study, direction: str) -> optuna.Study:
    """The search's own finished trials in a study of one objective, each valued by
    :func:`last_value` (as TPE ranks a stopped trial): what Optuna's importance reads.

    Optuna's importance takes COMPLETE trials only, and ASHA completes few.
    """
    ranked = optuna.create_study(direction="maximize" if direction == "max" else "minimize")
    for t in own_trials(study):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED) or not t.params:
            continue
        value = last_value(t)
        if value is None or not math.isfinite(value):
            continue
        ranked.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                   value=value))
    return ranked


def own_front_study(study: optuna.Study) -> optuna.Study:
    """The search's own trials in an in-memory study of the same objectives.

    Optuna's Pareto front (``best_trials``) and its Pareto plot read a whole study; this one
    leaves out the trials ``--warm_start`` copied in, which another search trained.
    """
    own = optuna.create_study(directions=[d.name.lower() for d in study.directions])
    for t in own_trials(study):
        if t.state == TrialState.COMPLETE:
            own.add_trial(optuna.trial.create_trial(
                params=t.params, distributions=t.distributions, values=t.values,
                user_attrs={"number": t.number}))
    return own


def pareto_front(study: optuna.Study, objectives: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The Pareto-optimal own COMPLETE trials: number, objective values, parameters."""
    if len(study.directions) < 2:
        return []
    names = [m for m, _ in objectives]
    return [{"number": t.user_attrs["number"], "values": dict(zip(names, t.values)),
             "params": dict(t.params)} for t in own_front_study(study).best_trials]


STARTUP_RULE = "half of --num_samples, 2 to 10"


def default_startup_trials(num_samples: int) -> int:
    """Random trials before TPE models the results: half of the search, 2 to 10.

    Optuna's own default (10) turns a search of 10 trials or fewer into a random search.
    Fewer start-up trials did worse in ``benchmarks/run.py --only tpe_startup``: with 2 or 3
    random trials TPE settled early on the best of too few configs.
    """
    return max(2, min(10, num_samples // 2))


def make_sampler(searcher: str, seed: int, startup_trials: int) -> optuna.samplers.BaseSampler:
    """TPE as Optuna advises for conditional define-by-run spaces, a Gaussian process, or
    random search.

    TPE: ``multivariate`` models the parameters jointly; ``group`` splits the space by which
    parameters a trial used, so conditional parameters are modelled where they exist;
    ``constant_liar`` keeps concurrent trials from proposing the same point.  It ranks a
    PRUNED trial by the epochs it reached, so ASHA's stops teach it too.

    GP (Optuna's ``GPSampler``, which loads torch in the driver once it models): it models
    the parameters every COMPLETE trial shares (categorical ones included) and draws the
    rest (a range that depends on another parameter, such as ``downsample_every``) from a
    seeded random sampler; running trials count as pending points.  It learns from COMPLETE
    trials only: under ASHA, from the trials that ran to ``max_epochs``.
    """
    if searcher == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if searcher == "gp":
            return optuna.samplers.GPSampler(
                seed=seed, n_startup_trials=startup_trials,
                independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                warn_independent_sampling=False)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials,
                                          multivariate=True, group=True, constant_liar=True)
