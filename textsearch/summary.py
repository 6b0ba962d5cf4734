"""The end of a search: status of every trial, the best config, its test accuracy.

:func:`summarize` builds the summary (a dict) from Ray's results and the search's Optuna
study; the caller writes it (:func:`write_summary`: ``summary.json`` and ``trials.csv``).  A
trial's status is what the study says of it: ``completed`` (ran all epochs, COMPLETE),
``stopped_early`` (ASHA stopped it, PRUNED; ``stopped_at_epoch`` says when), ``errored``
(FAIL, with its message) or ``unfinished`` (interrupted or out of time budget, still
RUNNING; ``--resume`` continues it).

Reading and formatting a summary needs only pandas (the report imports this module).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from textsearch.layout import (
    CHECKPOINT_FILE,
    STUDY_FILE,
    SUMMARY_FILE,
    TRIALS_FILE,
    trial_id_of,
)

if TYPE_CHECKING:
    from textsearch.search import SearchSettings


def error_line(error: BaseException | None) -> str | None:
    """The last meaningful line of a trial's error (the exception and its message)."""
    if error is None:
        return None
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    for line in reversed(lines):
        if "Error" in line.split(":", 1)[0] or "Exception" in line.split(":", 1)[0]:
            return line
    return lines[-1] if lines else type(error).__name__


def _finite(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def study_trials(search_dir: Path) -> dict[str, Any]:
    """The study's trials by Ray trial id (empty if the search has no study)."""
    if not (search_dir / STUDY_FILE).exists():
        return {}
    from textsearch.searcher import load_study

    return {t.user_attrs["ray_trial_id"]: t for t in load_study(search_dir).trials
            if "ray_trial_id" in t.user_attrs}


def trial_rows(settings: SearchSettings, grid, errors: dict[str, str] | None = None
               ) -> list[dict[str, Any]]:
    """One row per trial; ``errors``: messages of errored trials Ray did not record."""
    from optuna.trial import TrialState

    errors = errors or {}
    study = study_trials(settings.search_dir)
    sign = 1 if settings.mode == "max" else -1
    rows = []
    for result in grid:
        df = result.metrics_dataframe
        trial_id = (result.metrics or {}).get("trial_id") or trial_id_of(result.path)
        told = study.get(trial_id)
        state = told.state if told is not None else None
        epochs = int(df["epoch"].max()) if df is not None and "epoch" in df and len(df) else 0
        values = ([v for v in (df[settings.metric].map(_finite) if df is not None
                   and settings.metric in df else []) if v is not None])
        best = max(values, key=lambda v: sign * v) if values else None
        if result.error is not None or trial_id in errors or state == TrialState.FAIL:
            status = "errored"
        elif state == TrialState.PRUNED:
            status = "stopped_early"
        elif state == TrialState.COMPLETE or epochs >= settings.max_epochs:
            status = "completed"
        else:
            status = "unfinished"
        # a trial that never started has no result config; the study has its params
        config = dict(result.config or {}) or (dict(told.params) if told is not None else {})
        last = df.iloc[-1] if df is not None and len(df) else {}
        rows.append({
            "trial_id": trial_id,
            "status": status,
            "epochs": epochs,
            f"best_{settings.metric}": best,
            f"last_{settings.metric}": values[-1] if values else None,
            "objectives": {m: _finite(last.get(m)) for m, _ in settings.objective_list},
            "stopped_at_epoch": epochs if status == "stopped_early" else None,
            "error": errors.get(trial_id) or error_line(result.error),
            "config": config,
            "path": str(result.path),
            "_result": result,
        })
    return rows


def summarize(settings: SearchSettings, grid, bundle=None, wall_s: float | None = None,
              evaluate: bool = True, errors: dict[str, str] | None = None) -> dict[str, Any]:
    from textsearch.training import TrainConfig, evaluate_checkpoint

    rows = trial_rows(settings, grid, errors)
    key = f"best_{settings.metric}"
    sign = 1 if settings.mode == "max" else -1
    scored = [r for r in rows if r[key] is not None]
    best = max(scored, key=lambda r: sign * r[key]) if scored else None
    best_info = None
    if best is not None:
        test_acc, checkpoint = None, None
        ckpt = best["_result"].get_best_checkpoint(settings.metric, settings.mode)
        if ckpt is not None:
            checkpoint = str(Path(ckpt.path) / CHECKPOINT_FILE)
            if evaluate:
                import torch

                cfg = TrainConfig.from_dict({**settings.fixed, **best["config"]})
                # on the driver's GPU when it has one
                cfg.gpus = 1 if torch.cuda.is_available() else 0
                if not cfg.gpus and cfg.precision == "16-mixed":
                    cfg.precision = "32"
                test_acc = evaluate_checkpoint(cfg, checkpoint, bundle).get("test_acc")
        best_info = {
            "trial_id": best["trial_id"],
            "config": {**settings.fixed, **best["config"]},
            "params": best["config"],
            settings.metric: best[key],
            "test_acc": test_acc,
            "checkpoint": checkpoint,
        }
    pareto = pareto_trials(settings, rows) if settings.multi_objective else None
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = {
        "search": settings.name,
        "space": settings.space,
        "metric": settings.metric,
        "mode": settings.mode,
        "max_epochs": settings.max_epochs,
        "num_trials": len(rows),
        "status_counts": counts,
        "total_epochs": sum(r["epochs"] for r in rows),
        "wall_s": wall_s,
        "best": best_info,
        "objectives": [list(o) for o in settings.objective_list],
        "pareto": pareto,
        "warm_start": list(settings.warm_start),
        "trials": [{k: v for k, v in r.items() if k != "_result"} for r in rows],
    }
    return summary


def pareto_trials(settings: SearchSettings, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Pareto-optimal trials of a multi-objective search, as the study finds them.

    Only trials that ran all their epochs (COMPLETE) are on the front, each with its
    objective values; trials added by ``--warm_start`` are left out.
    """
    if not (settings.search_dir / STUDY_FILE).exists():
        return []
    from textsearch.searcher import load_study

    ours = {r["trial_id"] for r in rows}
    front = []
    for t in load_study(settings.search_dir).best_trials:
        trial_id = t.user_attrs.get("ray_trial_id")
        if trial_id in ours:
            front.append({"trial_id": trial_id,
                          "values": dict(zip([m for m, _ in settings.objective_list], t.values)),
                          "params": dict(t.params)})
    return front


def write_summary(search_dir: Path, summary: dict[str, Any]) -> None:
    """``summary.json`` and ``trials.csv`` (one row per trial, best first)."""
    (search_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1, default=str))
    trials_table(summary).to_csv(search_dir / TRIALS_FILE, index=False)


def trials_table(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per trial: id, status, epochs, metric, and every searched parameter."""
    metric = summary["metric"]
    records = []
    for t in summary["trials"]:
        rec = {"trial_id": t["trial_id"], "status": t["status"], "epochs": t["epochs"],
               f"best_{metric}": t[f"best_{metric}"], "stopped_at_epoch": t["stopped_at_epoch"]}
        rec.update(t["config"])
        rec["error"] = t["error"]
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    if len(df):
        ascending = summary["mode"] == "min"
        df = df.sort_values(f"best_{metric}", ascending=ascending, na_position="last")
    return df


def format_summary(summary: dict[str, Any], top: int = 10) -> str:
    """The end-of-search text: top trials, best config, its test accuracy."""
    metric = summary["metric"]
    df = trials_table(summary)
    lines = [f"Search {summary['search']!r}: {summary['num_trials']} trials "
             f"({', '.join(f'{n} {s}' for s, n in sorted(summary['status_counts'].items()))}), "
             f"{summary['total_epochs']} epochs trained"]
    if len(df):
        cols = [c for c in df.columns if c not in ("error",)]
        with pd.option_context("display.width", 200, "display.max_columns", 30,
                               "display.float_format", "{:.4g}".format):
            lines.append(f"Top trials by {metric}:")
            lines.append(df[cols].head(top).to_string(index=False))
        errored = df[df["status"] == "errored"]
        for _, row in errored.iterrows():
            lines.append(f"trial {row['trial_id']} errored: {row['error']}")
    best = summary["best"]
    if best is None:
        lines.append(f"No trial reported {metric}.")
    else:
        lines.append(f"Best trial: {best['trial_id']}  {metric} = {best[metric]:.4f}")
        lines.append("Best config: " + json.dumps(best["params"], sort_keys=True))
        test = best["test_acc"]
        lines.append(f"Test accuracy of the best checkpoint: "
                     f"{test:.4f}" if test is not None else "Test accuracy: n/a")
    if summary.get("pareto") is not None:
        names = ", ".join(f"{m} ({d})" for m, d in summary["objectives"])
        lines.append(f"Pareto front of {names}: {len(summary['pareto'])} trial(s)")
        for t in summary["pareto"]:
            lines.append(f"  {t['trial_id']}  " + "  ".join(f"{k}={v:.4g}"
                                                            for k, v in t["values"].items()))
    return "\n".join(lines)
