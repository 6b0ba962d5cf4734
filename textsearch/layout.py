"""The layout of a search directory, ``<results_dir>/<name>/``: every file name in one place.

- ``search.json``: the settings the search was started with (``--resume`` reads them);
- ``runs.jsonl``: when each run of the search (the first, each resume) started and ended;
- ``study.journal``: the Optuna study, each trial's true state (:mod:`textsearch.searcher`);
- ``space.py``: a copy of the space file, made when the search started (a resume and a
  later warm start read it, not the original);
- one ``trial_<number>/`` per trial, named after its number in the study: ``progress.csv``
  (one row per reported epoch, written by the trial), ``config.json`` (the full config it
  trains), TensorBoard events, ``latest.ckpt`` (the last epoch the trial reported, with its
  metrics: where a resume goes on), ``best.ckpt`` (its best epoch by the search's metric),
  ``test.json`` (that checkpoint's test metrics, once evaluated) and ``error.json`` (why it
  failed);
- ``summary.json`` and ``trials.csv``: the summary when the search last stopped
  (:func:`textsearch.summary.summarize` computes the same from the folder at any moment);
- ``report.html`` and ``plot_<name>.png``: :mod:`textsearch.report`;
- ``retrain/<trial>/``: ``model.pt`` and ``model.json``, :mod:`textsearch.retrain`;
- ``.search.lock``: held by the running search;
- Ray Tune's own files (``experiment_state-*``, ``tuner.pkl``, ...): written by each run, read
  by nothing of textsearch (a resume starts from the study and the trial folders).

Nothing here imports torch, Ray or Lightning.
"""

from __future__ import annotations

from pathlib import Path

SETTINGS_FILE = "search.json"
RUNS_FILE = "runs.jsonl"  # one line per run of the search: its start and end (Unix s)
STUDY_FILE = "study.journal"
SUMMARY_FILE = "summary.json"
TRIALS_FILE = "trials.csv"
REPORT_FILE = "report.html"
LOCK_FILE = ".search.lock"
TRIAL_PREFIX = "trial_"
SPACE_COPY = "space.py"  # the space file as it was when the search started
LIVE_FILE = "live.json"  # in a running trial's folder: where in its epoch it is (textsearch.live)
PROGRESS_FILE = "progress.csv"  # in a trial's folder: one row per reported epoch
LATEST_CHECKPOINT = "latest.ckpt"  # in a trial's folder: its last reported epoch
BEST_CHECKPOINT = "best.ckpt"  # its best epoch by the search's metric (a hard link)
TEST_METRICS = "test.json"  # that checkpoint's test metrics, once evaluated
TEST_CLAIM = ".testing"  # there while a process tests that checkpoint (others leave it be)
ERROR_FILE = "error.json"  # why the trial failed: exception type and line
RETRAIN_DIR = "retrain"  # retrain/<trial>/: the winner trained again (textsearch.retrain)
MODEL_FILE = "model.pt"  # in it: the exported model (TorchScript)
MODEL_INFO = "model.json"  # beside it: config, metrics, data, class mapping


def trial_id(number: int) -> str:
    """A trial's id in a search: its number in the study, as ``0007``."""
    return f"{number:04d}"


def trial_dir_name(number: int) -> str:
    return f"{TRIAL_PREFIX}{trial_id(number)}"


def trial_number(text: str) -> int | None:
    """The study number in a trial id or folder name (``7``, ``0007``, ``trial_0007``)."""
    text = Path(text).name.removeprefix(TRIAL_PREFIX)
    return int(text) if text.isdigit() else None


def plot_file(name: str) -> str:
    return f"plot_{name}.png"
