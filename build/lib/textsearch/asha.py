"""ASHA that remembers which trials it stopped early, and at which epoch."""

from __future__ import annotations

import json
from pathlib import Path

from ray.tune.schedulers import ASHAScheduler, TrialScheduler


class RecordingASHA(ASHAScheduler):
    """:class:`ray.tune.schedulers.ASHAScheduler` that appends every early stop to a file.

    A trial that reaches ``max_t`` is finished, not stopped; only decisions to stop a trial
    before that are recorded, as ``{trial_id: epoch}`` in ``record_path``.
    """

    def __init__(self, record_path: str, **kwargs):
        super().__init__(**kwargs)
        self.record_path = record_path
        self._max_t_value = kwargs.get("max_t", 100)
        self._time_attr_name = kwargs.get("time_attr", "training_iteration")

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        t = result.get(self._time_attr_name, 0)
        if decision == TrialScheduler.STOP and t < self._max_t_value:
            path = Path(self.record_path)
            stops = json.loads(path.read_text()) if path.exists() else {}
            stops[trial.trial_id] = int(t)
            path.write_text(json.dumps(stops, indent=1))
        return decision
