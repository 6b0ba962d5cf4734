"""Plots of a finished search, shared by ``textsearch.report`` and the notebooks.

:func:`load_search` reads a search directory (its summary, computed from the folder, and
every trial's ``progress.csv``); each ``plot_*`` function draws one figure from it and returns it.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd

from textsearch.metrics import best, running_best
from textsearch.record import PROGRESS_FILE, read_progress, read_runs
from textsearch.study import load_study, own_front_study, ranked_study
from textsearch.summary import summarize

# The plots' look, applied while each figure is drawn (matplotlib's settings of the process
# are left as they are; the report saves with bbox_inches="tight").
STYLE = {"font.size": 11, "axes.titlesize": 13, "axes.labelsize": 11, "figure.dpi": 100}


def styled(plot):
    """Draw ``plot``'s figure in :data:`STYLE`."""

    @functools.wraps(plot)
    def draw(*args, **kwargs):
        with plt.rc_context(STYLE):
            return plot(*args, **kwargs)

    return draw

STATUS_STYLE = {
    "completed": {"color": "tab:blue", "linestyle": "-"},
    "stopped_early": {"color": "tab:orange", "linestyle": "--"},
    "unfinished": {"color": "tab:gray", "linestyle": ":"},
    "errored": {"color": "tab:red", "linestyle": ":"},
}


@dataclass
class SearchData:
    """A search as tables: ``trials`` (one row per trial) and ``epochs`` (one per report)."""

    path: Path
    summary: dict[str, Any]
    trials: pd.DataFrame
    epochs: pd.DataFrame

    @functools.cached_property
    def study(self):
        """The search's Optuna study, read once for all the plots that need it."""
        return load_study(self.path)

    @property
    def metric(self) -> str:
        return self.summary["metric"]

    @property
    def mode(self) -> str:
        return self.summary["mode"]

    def param_names(self) -> list[str]:
        """Searched parameters: config keys that vary across trials."""
        names = []
        for key in sorted({k for c in self.trials["config"] for k in c}):
            values = {json.dumps(c.get(key), sort_keys=True) for c in self.trials["config"]}
            if len(values) > 1:
                names.append(key)
        return names


def load_search(search_dir: str | Path) -> SearchData:
    """A search as its folder holds it now (running, stopped or finished)."""
    path = Path(search_dir)
    summary = summarize(path)
    trials = pd.DataFrame(summary["trials"])
    frames = []
    for t in summary["trials"]:
        rows = read_progress(path / t["path"] / PROGRESS_FILE)
        if rows:
            df = pd.DataFrame(rows).apply(_numeric)
            df["trial_id"] = t["trial_id"]
            df["status"] = t["status"]
            frames.append(df)
    epochs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["trial_id", "status", "epoch", summary["metric"], "timestamp"])
    return SearchData(path, summary, trials, epochs)


def _numeric(column: pd.Series) -> pd.Series:
    """A progress.csv column as numbers where it holds numbers (``device`` stays text)."""
    try:
        return pd.to_numeric(column)
    except (TypeError, ValueError):
        return column


def best_so_far(data: SearchData) -> pd.DataFrame:
    """Every report in time order with the best metric seen up to it and the trial's rank."""
    m = data.metric
    df = data.epochs.dropna(subset=[m]).copy()
    if df.empty:
        return df.assign(wall_s=[], best=[], trial_index=[])
    start = search_start(data, df)
    df = df.sort_values(["timestamp", "epoch"]).reset_index(drop=True)
    df["wall_s"] = df["timestamp"] - start
    order = {tid: i + 1 for i, tid in enumerate(df.drop_duplicates("trial_id")["trial_id"])}
    df["trial_index"] = df["trial_id"].map(order)
    df["best"] = running_best(df[m], data.mode)
    return df


def best_by_trial(data: SearchData) -> pd.Series:
    """The best metric of trials 1..k (in order of first report), for each k: a running
    maximum (minimum for a minimised metric) of each trial's own best report."""
    df = best_so_far(data)
    if df.empty:
        return pd.Series(dtype=float)
    own_best = df.groupby("trial_index")[data.metric].agg(lambda v: best(v, data.mode))
    return pd.Series(running_best(own_best, data.mode), index=own_best.index)


def search_start(data: SearchData, reports: pd.DataFrame) -> float:
    """When the search started: its first run's start, else the first report less its epoch."""
    runs = read_runs(data.path)
    if runs:
        return float(runs[0]["started"])
    if "epoch_s" in reports:
        return float((reports["timestamp"] - reports["epoch_s"]).min())
    return float(reports["timestamp"].min())


@styled
def plot_best_vs_time(data: SearchData):
    df = best_so_far(data)
    fig, ax = plt.subplots(figsize=(7, 4))
    if not df.empty:
        ax.step(df["wall_s"], df["best"], where="post", color="tab:green", lw=2)
        ax.scatter(df["wall_s"], df[data.metric], s=12, color="tab:gray", alpha=0.6,
                   label="each epoch report")
        ax.legend(loc="lower right")
    ax.set(title=f"Best {data.metric} so far against wall time", xlabel="wall time since start (s)",
           ylabel=f"best {data.metric}")
    ax.grid(alpha=0.3)
    return fig


@styled
def plot_best_vs_trials(data: SearchData):
    df = best_so_far(data)
    fig, ax = plt.subplots(figsize=(7, 4))
    if not df.empty:
        per_trial = best_by_trial(data)
        ax.step(per_trial.index, per_trial.values, where="post", color="tab:green", lw=2, marker="o")
        ax.set_xticks(per_trial.index)
    ax.set(title=f"Best {data.metric} so far against trials started",
           xlabel="trial (in order of first report)", ylabel=f"best {data.metric}")
    ax.grid(alpha=0.3)
    return fig


@styled
def plot_curves(data: SearchData):
    """The metric per epoch for every trial; ASHA-stopped trials dashed, with an x at the stop."""
    m = data.metric
    fig, ax = plt.subplots(figsize=(7, 4.5))
    seen = set()
    for _, df in data.epochs.groupby("trial_id", sort=False):
        df = df.dropna(subset=[m]).sort_values("epoch")
        status = df["status"].iloc[0] if len(df) else "unfinished"
        style = STATUS_STYLE.get(status, STATUS_STYLE["unfinished"])
        label = status.replace("_", " ") if status not in seen else None
        seen.add(status)
        ax.plot(df["epoch"], df[m], marker="o", ms=3, lw=1.5, label=label, **style)
        if status == "stopped_early" and len(df):
            ax.scatter(df["epoch"].iloc[-1], df[m].iloc[-1], marker="x", s=60, color="black",
                       zorder=3)
    ax.set(title=f"{m} per epoch, every trial (x: stopped by ASHA)", xlabel="epoch", ylabel=m)
    if seen:
        ax.legend(loc="best")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    return fig


def _final_metric(data: SearchData) -> pd.Series:
    return data.trials[f"best_{data.metric}"].astype(float)


@styled
def plot_params(data: SearchData):
    """Each searched parameter against the trial's best metric."""
    names = data.param_names()
    n = max(1, len(names))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    y = _final_metric(data)
    for ax, name in zip(axes.flat, names):
        values = [c.get(name) for c in data.trials["config"]]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            x = np.asarray(values, dtype=float)
            ax.scatter(x, y, color="tab:blue", alpha=0.8)
            if x.min() > 0 and x.max() / x.min() > 50:
                ax.set_xscale("log")
        else:
            cats = sorted({str(v) for v in values})
            pos = [cats.index(str(v)) for v in values]
            jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(pos))
            ax.scatter(np.asarray(pos) + jitter, y, color="tab:blue", alpha=0.8)
            ax.set_xticks(range(len(cats)), cats)
        ax.set(xlabel=name, ylabel=f"best {data.metric}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if not names:
        axes.flat[0].text(0.5, 0.5, "no parameter varied", ha="center", va="center")
    fig.suptitle(f"Each parameter against the best {data.metric} of its trial", y=1.0)
    fig.tight_layout()
    return fig


def search_study(data: SearchData):
    """The search's own Optuna study (``study.journal``)."""
    return data.study


def param_importances(data: SearchData) -> dict[str, float]:
    """Optuna's fANOVA importance of each parameter for the metric (empty if too few trials)."""
    study = ranked_study(search_study(data), data.mode)
    if len(study.trials) < 3:
        return {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return optuna.importance.get_param_importances(study, evaluator=evaluator)


@styled
def plot_importance(data: SearchData):
    try:
        imp, failed = param_importances(data), None
    except (RuntimeError, ValueError) as err:  # shown on the plot, not hidden
        imp, failed = {}, f"importance could not be computed: {type(err).__name__}: {err}"
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(3, len(imp)) + 1))
    if failed:
        ax.text(0.5, 0.5, failed, ha="center", va="center", wrap=True, transform=ax.transAxes)
    elif imp:
        names = list(imp)[::-1]
        ax.barh(names, [imp[n] for n in names], color="tab:purple")
    else:
        ax.text(0.5, 0.5, "too few finished trials for importance", ha="center", va="center",
                transform=ax.transAxes)
    ax.set(title=f"Parameter importance for {data.metric} (Optuna fANOVA)",
           xlabel="importance (share of variance, sums to 1)")
    ax.grid(alpha=0.3, axis="x")
    return fig


@styled
def plot_pareto(data: SearchData):
    """Optuna's Pareto-front plot of a multi-objective search (its first two objectives)."""
    objectives = data.summary.get("objectives") or [[data.metric, data.mode]]
    if len(objectives) < 2:
        fig, ax = plt.subplots(figsize=(7, 2))
        ax.text(0.5, 0.5, "one objective: no Pareto front", ha="center", va="center",
                transform=ax.transAxes)
        ax.axis("off")
        return fig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # the search's own trials only, as the summary's Pareto list (see textsearch.summary)
        ax = optuna.visualization.matplotlib.plot_pareto_front(
            own_front_study(search_study(data)), target_names=[m for m, _ in objectives], include_dominated_trials=True)
    fig = ax.figure
    fig.set_size_inches(7, 5)
    return fig


PLOTS = {
    "best_vs_time": plot_best_vs_time,
    "best_vs_trials": plot_best_vs_trials,
    "curves": plot_curves,
    "params": plot_params,
    "importance": plot_importance,
    "pareto": plot_pareto,
}
