"""The summary of a search, computed from its folder whenever it is asked for.

:func:`summarize` reads the search folder, the one record of a search: its settings
(``search.json``), its study (each trial's state) and each trial's folder (the epochs it
logged, its best checkpoint, that checkpoint's test metrics, its error).  It works while the
search runs, after it was interrupted or killed, after it ended, and after the folder was
moved: ``textsearch.report``, ``textsearch.retrain`` and the end of a search all call it,
and the ``summary.json`` a search writes when it stops is its output.

A trial's status is what the study says of it: ``completed`` (ran all epochs, COMPLETE),
``stopped_early`` (ASHA stopped it, PRUNED; ``stopped_at_epoch`` says when), ``errored``
(FAIL, with its message) or ``unfinished`` (still RUNNING: training now, or interrupted;
``--resume`` continues it).  Trials that ``--warm_start`` copied in from older searches
are not the search's own: they are counted in ``warm_started``, and left out of the trial
list, the best trial, the Pareto front and the importance plot, since another search
trained them (on its own data share and epochs) and nothing of them is in this folder.

**The best trial** is the own trial whose best epoch scored best on the search's metric
(the first objective), ties going to the earlier trial; its ``best.ckpt`` is that epoch.

Reading a summary needs pandas and Optuna, not Ray or torch (the report imports this module).
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd

from textsearch import metrics
from textsearch.config import reads_lines
from textsearch.errors import UserError
from textsearch.record import (
    BEST_CHECKPOINT,
    PROGRESS_FILE,
    SUMMARY_FILE,
    TRIALS_FILE,
    SearchSettings,
    finite_number,
    read_error,
    read_progress,
    read_test,
    trial_dir,
    trial_id,
    trial_number,
    wall_seconds,
)
from textsearch.study import CONFIG_ATTR, has_study, is_own, load_study, pareto_front, status


def trial_rows(search_dir: Path, settings, study) -> list[dict[str, Any]]:
    """One row per own trial of the study, from the study and the trial's folder."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if not is_own(t):
            continue
        folder = trial_dir(search_dir, t.number)
        progress = read_progress(folder / PROGRESS_FILE)
        values = [finite_number(r.get(settings.metric)) for r in progress]
        at = metrics.best_index(values, settings.mode)  # the trial's best epoch, the first
        best, best_epoch = (values[at], int(progress[at]["epoch"])) if at is not None else (None, None)
        scored = [v for v in values if v is not None]
        last = progress[-1] if progress else {}
        state = status(t)
        rows.append({
            "trial_id": trial_id(t.number),
            "number": t.number,
            "status": state,
            "epochs": len(progress),
            f"best_{settings.metric}": best,
            "best_epoch": best_epoch,
            f"last_{settings.metric}": scored[-1] if scored else None,
            "objectives": {m: finite_number(last.get(m)) for m, _ in settings.objective_list},
            "stopped_at_epoch": len(progress) if state == "stopped_early" else None,
            "precision": last.get("precision") or None,  # what Lightning ran (auto resolved)
            "error": (t.user_attrs.get("error") or read_error(folder)
                      if state == "errored" else None),
            "config": dict(t.user_attrs.get(CONFIG_ATTR) or t.params),
            "path": folder.name,
        })
    return rows


def summarize(search_dir: Path) -> dict[str, Any]:
    """The summary of the search in ``search_dir``, as its folder holds it now."""
    search_dir = Path(search_dir)
    settings = SearchSettings.load(search_dir)
    if not has_study(search_dir):
        raise UserError(f"{search_dir} holds no study yet: its search has not started")
    study = load_study(search_dir)
    rows = trial_rows(search_dir, settings, study)
    best = metrics.best_trial(rows, settings.metric, settings.mode)
    best_info = None
    if best is not None:
        checkpoint = search_dir / best["path"] / BEST_CHECKPOINT
        tested = read_test(search_dir / best["path"], epoch=best["best_epoch"]) or {}
        config = {**settings.fixed, **best["config"]}
        best_info = {
            "trial_id": best["trial_id"],
            "config": {**settings.fixed, **best["config"],  # precision: what Lightning ran
                       **({"precision": best["precision"]} if best["precision"] else {})},
            "params": best["config"],
            settings.metric: best[f"best_{settings.metric}"],
            "epoch": best["best_epoch"],
            "precision": best["precision"],
            **{name: tested.get(name) for name in metrics.test_metrics(reads_lines(config))},
            "checkpoint": f"{best['path']}/{BEST_CHECKPOINT}" if checkpoint.is_file() else None,
        }
    pareto = None
    if settings.multi_objective:
        pareto = [{"trial_id": trial_id(p["number"]), "values": p["values"], "params": p["params"]}
                  for p in pareto_front(study, settings.objective_list)]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {
        "search": search_dir.name,
        "space": settings.space,
        "metric": settings.metric,
        "mode": settings.mode,
        "max_epochs": settings.max_epochs,
        "num_samples": settings.num_samples,
        "num_trials": len(rows),
        "status_counts": counts,
        "total_epochs": sum(r["epochs"] for r in rows),
        "wall_s": wall_seconds(search_dir),
        "best": best_info,
        "objectives": [list(o) for o in settings.objective_list],
        "pareto": pareto,
        "warm_start": settings.warm_start_saved(),
        "warm_started": sum(1 for t in study.get_trials(deepcopy=False) if not is_own(t)),
        "trials": rows,
    }


def find_trial(summary: dict[str, Any], text: str) -> dict[str, Any] | None:
    """The summary's trial named by ``text`` (``7``, ``0007`` or ``trial_0007``)."""
    number = trial_number(text)
    return next((t for t in summary["trials"] if t["number"] == number), None)


def headline_test(summary: dict[str, Any]) -> tuple[str, float | None]:
    """(label, value) of the best trial's headline test figure (value None: not tested)."""
    return metrics.headline_test(summary.get("best") or {})


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
        rec["precision"] = t.get("precision")
        rec["error"] = t["error"]
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    if len(df):
        ascending = summary["mode"] == "min"
        df = df.sort_values([f"best_{metric}", "trial_id"], ascending=[ascending, True],
                            na_position="last")
    return df


TABLE_WIDTH = 100  # the end-of-search table fits a terminal this wide


def cell(value: Any) -> str:
    """A table cell: empty where nothing applies (None, NaN), 4 significant digits for floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def text_table(df: pd.DataFrame, metric: str, width: int = TABLE_WIDTH) -> list[str]:
    """The trials as a plain-text table no wider than ``width``: the trial, its status, its
    epochs, its best ``metric`` and when ASHA stopped it (empty for a trial it did not stop),
    then as many of the searched parameters as fit; a last line names those left out
    (``trials.csv`` holds them all)."""
    head = {"trial_id": "trial", "status": "status", "epochs": "epochs",
            f"best_{metric}": f"best_{metric}", "stopped_at_epoch": "stopped_at"}
    params = [c for c in df.columns if c not in head and c not in ("error", "precision")]
    if df["precision"].nunique(dropna=True) > 1:  # one precision: the best config line says it
        params.append("precision")
    columns: list[tuple[str, list[str], bool]] = []  # (header, cells, right-aligned)
    for name in [*head, *params]:
        values = df[name].tolist()
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) or v is None
                      for v in values)
        columns.append((head.get(name, name), [cell(v) for v in values], numeric))

    def fits(cols) -> bool:
        return sum(max(len(h), *map(len, c)) for h, c, _ in cols) + 2 * (len(cols) - 1) <= width

    shown = columns[:len(head)]
    left_out = []
    for col in columns[len(head):]:
        if fits([*shown, col]):
            shown.append(col)
        else:
            left_out.append(col[0])

    def row(cells: list[str]) -> str:
        out = []
        for (h, c, right), text in zip(shown, cells):
            w = max(len(h), *map(len, c))
            out.append(text.rjust(w) if right else text.ljust(w))
        return "  ".join(out).rstrip()

    lines = [row([h for h, _, _ in shown])]
    lines += [row([c[i] for _, c, _ in shown]) for i in range(len(df))]
    if left_out:
        lines.append(f"(not shown here: {', '.join(left_out)}; every column is in {TRIALS_FILE})")
    return lines


def format_summary(summary: dict[str, Any], top: int = 10) -> str:
    """The end-of-search text: top trials, best config, its test accuracy."""
    metric = summary["metric"]
    df = trials_table(summary)
    lines = [f"Search {summary['search']!r}: {summary['num_trials']} trials "
             f"({', '.join(f'{n} {s}' for s, n in sorted(summary['status_counts'].items()))}), "
             f"{summary['total_epochs']} epochs trained"]
    if summary.get("warm_started"):
        lines[0] += f"; {summary['warm_started']} trial(s) added from older searches"
    if len(df):
        lines.append(f"Top trials by {metric}:")
        lines += text_table(df.head(top), metric)
        errored = df[df["status"] == "errored"]
        for _, row in errored.iterrows():
            lines.append(f"trial {row['trial_id']} errored: {row['error']}")
        for t in summary["trials"]:
            if t["status"] == "unfinished":
                lines.append(f"trial {t['trial_id']} unfinished after {t['epochs']} epoch(s)")
    best = summary["best"]
    if best is None:
        lines.append(f"No trial reported {metric}.")
    else:
        lines.append(f"Best trial: {best['trial_id']}  {metric} = {best[metric]:.4f}")
        config = " ".join(f"{k}={cell(v)}" for k, v in sorted(best["params"].items()))
        ran = f" (trained in precision {best['precision']})" if best.get("precision") else ""
        lines.append(f"Best config: {config}{ran}")
        label, test = headline_test(summary)
        lines.append(f"{label} of the best checkpoint: "
                     f"{test:.4f}" if test is not None else f"{label}: n/a")
    if summary.get("pareto") is not None:
        names = ", ".join(f"{m} ({d})" for m, d in summary["objectives"])
        lines.append(f"Pareto front of {names}: {len(summary['pareto'])} trial(s)")
        for t in summary["pareto"]:
            lines.append(f"  {t['trial_id']}  " + "  ".join(f"{k}={v:.4g}"
                                                            for k, v in t["values"].items()))
    return "\n".join(fold(line) for line in lines)


def fold(line: str, width: int = TABLE_WIDTH) -> str:
    """A line longer than ``width`` folded at spaces, its next lines indented; a word longer
    than that (a path) stays whole, so it can still be copied."""
    if len(line) <= width:
        return line
    return "\n".join(textwrap.wrap(line, width, subsequent_indent="  ", break_on_hyphens=False,
                                   break_long_words=False))
