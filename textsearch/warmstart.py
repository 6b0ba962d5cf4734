"""``--warm_start runs/<old>``: older searches' finished trials, added to a new study.

TPE then starts from what the older searches learnt instead of from random samples.  Each
old trial is replayed through the new space's function, so every parameter is checked
against the range the new space gives it *for that trial* (conditional ranges included):

- COMPLETE trials are added with their final values, PRUNED ones with their per-epoch
  values (TPE ranks them by the epochs they reached); FAIL and unfinished ones are left out;
- a parameter the new space does not search, or a value outside its new range, is
  dropped from the trial; a trial left with no parameter is left out;
- old searches with other objectives than the new one are left out whole.

One line per old search says what was taken and what was left out, and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from textsearch.errors import UserError
from textsearch.metrics import best_index
from textsearch.record import SETTINGS_FILE, STUDY_FILE, SearchSettings
from textsearch.spaces import AnsweringTrial
from textsearch.study import RAY_TRIAL_ATTR, WARM_START_ATTR, last_value, load_study


@dataclass
class WarmStart:
    """What one old search gave: trials to add, and counts of what was left out."""

    source: Path
    trials: list[Any] = field(default_factory=list)  # optuna FrozenTrials, ready to add
    left_out: Counter = field(default_factory=Counter)  # reason -> trials
    dropped: Counter = field(default_factory=Counter)  # "param: reason" -> trials

    def line(self) -> str:
        states = Counter(t.state.name.lower() for t in self.trials)
        taken = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        text = f"warm start from {self.source}: {len(self.trials)} trial(s) taken"
        if taken:
            text += f" ({taken})"
        n_out = sum(self.left_out.values())
        text += f", {n_out} left out"
        if n_out:
            text += " (" + ", ".join(f"{n} {r}" for r, n in self.left_out.most_common()) + ")"
        if self.dropped:
            text += "; dropped: " + ", ".join(f"{r} in {n} trial(s)"
                                              for r, n in self.dropped.most_common())
        return text


def check_source(path: str | Path) -> Path:
    """An old search's folder, or one clear error."""
    if not str(path).strip():
        raise UserError("--warm_start must not be empty: give an older search's folder")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(f"--warm_start {path}: no such folder")
    if not (folder / STUDY_FILE).is_file():
        raise UserError(f"--warm_start {path}: no {STUDY_FILE} there (not a textsearch search, "
                        "or one started before searches kept their study)")
    if not (folder / SETTINGS_FILE).is_file():
        raise UserError(f"--warm_start {path}: no {SETTINGS_FILE} there")
    return folder.resolve()


def collect(source: Path, space, objectives: list[tuple[str, str]]) -> WarmStart:
    """The trials of the old search at ``source`` that fit ``space`` and ``objectives``."""
    out = WarmStart(source)
    try:
        study = load_study(source)
    except UserError as err:
        raise UserError(f"--warm_start {source}: {err}") from None
    except Exception as err:  # e.g. a journal line Optuna cannot apply
        raise UserError(f"--warm_start {source}: cannot read its study: {err}") from None
    trials = study.get_trials(deepcopy=False)
    old = SearchSettings.load(source).objective_list
    if old != [tuple(o) for o in objectives]:
        out.left_out["with other objectives (" + ",".join(f"{m}:{d}" for m, d in old) + ")"] \
            += len(trials)
        return out
    for t in trials:
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            out.left_out["failed" if t.state == TrialState.FAIL else "unfinished"] += 1
            continue
        replay = AnsweringTrial(t.params)
        try:
            space.space(replay)
        except Exception as err:  # the new space cannot replay this trial
            out.left_out[f"not replayable ({type(err).__name__})"] += 1
            continue
        out.dropped.update(f"{name} outside its new range" for name in replay.dropped)
        out.dropped.update(f"{name} not in this space" for name in t.params
                           if name not in replay.asked)
        if not replay.params:
            out.left_out["no parameter of this space"] += 1
            continue
        if t.state == TrialState.PRUNED and not t.intermediate_values and \
                "values_by_epoch" not in t.user_attrs:
            out.left_out["pruned before any epoch"] += 1
            continue
        out.trials.append(optuna.trial.create_trial(
            state=t.state,
            values=t.values if t.state == TrialState.COMPLETE else None,
            params=replay.params,
            distributions=replay.distributions,
            intermediate_values=dict(t.intermediate_values),
            user_attrs={**{k: v for k, v in t.user_attrs.items() if k != RAY_TRIAL_ATTR},
                        WARM_START_ATTR: source.name, "warm_start_trial": t.number},
        ))
    return out


def add_to_study(study, sources: list[str], space, objectives: list[tuple[str, str]]
                 ) -> list[WarmStart]:
    """Add the fitting trials of every old search to ``study``; one WarmStart per source."""
    results = []
    for src in sources:
        ws = collect(check_source(src), space, objectives)
        if ws.trials:
            study.add_trials(ws.trials)
        results.append(ws)
    return results


def best_params(warm_starts: list[WarmStart], mode: str) -> dict[str, Any] | None:
    """The parameters of the best trial the old searches gave (by the value it ended on, as
    TPE ranks it), or None if they gave none."""
    scored = [(v, t) for ws in warm_starts for t in ws.trials
              if (v := last_value(t)) is not None]
    if not scored:
        return None
    top = best_index([v for v, _ in scored], mode)
    return dict(scored[top][1].params)
