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
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from textsearch.errors import UserError
from textsearch.layout import (
    BEST_CHECKPOINT,
    ERROR_FILE,
    PROGRESS_FILE,
    RUNS_FILE,
    SETTINGS_FILE,
    SUMMARY_FILE,
    TEST_CLAIM,
    TEST_METRICS,
    TRIALS_FILE,
    trial_dir_name,
    trial_id,
    trial_number,
)


def finite_number(x: Any) -> float | None:
    """``x`` as a finite float, else None (a blank progress.csv cell, text, inf, NaN)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_progress(path: Path) -> list[dict[str, str]]:
    """The rows of a trial's ``progress.csv`` (a half-written last line left out)."""
    import csv
    import io

    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return list(csv.DictReader(io.StringIO(text[:text.rfind("\n") + 1])))


def read_runs(search_dir: Path) -> list[dict[str, float]]:
    """The runs of the search that ended, from ``runs.jsonl``: ``started`` and ``ended``."""
    try:
        lines = (Path(search_dir) / RUNS_FILE).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip().endswith("}")]


def wall_seconds(search_dir: Path) -> float | None:
    """Wall time of the search's runs that ended; None: none ended yet."""
    runs = read_runs(search_dir)
    return sum(r["ended"] - r["started"] for r in runs) if runs else None


def trial_rows(search_dir: Path, settings, study) -> list[dict[str, Any]]:
    """One row per own trial of the study, from the study and the trial's folder."""
    from textsearch.study import CONFIG_ATTR, is_own, status

    sign = 1 if settings.mode == "max" else -1
    rows = []
    for t in study.get_trials(deepcopy=False):
        if not is_own(t):
            continue
        folder = Path(search_dir) / trial_dir_name(t.number)
        progress = read_progress(folder / PROGRESS_FILE)
        scored = [(v, int(r["epoch"])) for v, r in
                  ((finite_number(r.get(settings.metric)), r) for r in progress) if v is not None]
        values = [v for v, _ in scored]
        best, best_epoch = max(scored, key=lambda p: (sign * p[0], -p[1])) if scored else (None, None)
        last = progress[-1] if progress else {}
        state = status(t)
        failure = _json(folder / ERROR_FILE) or {}
        rows.append({
            "trial_id": trial_id(t.number),
            "number": t.number,
            "status": state,
            "epochs": len(progress),
            f"best_{settings.metric}": best,
            "best_epoch": best_epoch,
            f"last_{settings.metric}": values[-1] if values else None,
            "objectives": {m: finite_number(last.get(m)) for m, _ in settings.objective_list},
            "stopped_at_epoch": len(progress) if state == "stopped_early" else None,
            "precision": last.get("precision") or None,  # what Lightning ran (auto resolved)
            "error": (t.user_attrs.get("error") or failure.get("error")
                      if state == "errored" else None),
            "config": dict(t.user_attrs.get(CONFIG_ATTR) or t.params),
            "path": folder.name,
        })
    return rows


def best_row(rows: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    """The best trial: best epoch value of ``metric``, ties to the earlier trial."""
    key, sign = f"best_{metric}", 1 if mode == "max" else -1
    scored = [r for r in rows if r[key] is not None]
    return min(scored, key=lambda r: (-sign * r[key], r["number"])) if scored else None


def load_settings(search_dir: Path):
    from textsearch.search import SearchSettings

    if not (Path(search_dir) / SETTINGS_FILE).is_file():
        raise UserError(f"{search_dir} is not a search folder (no {SETTINGS_FILE})")
    return SearchSettings.load(Path(search_dir))


def summarize(search_dir: Path) -> dict[str, Any]:
    """The summary of the search in ``search_dir``, as its folder holds it now."""
    from textsearch.study import has_study, is_own, load_study, pareto_front

    search_dir = Path(search_dir)
    settings = load_settings(search_dir)
    if not has_study(search_dir):
        raise UserError(f"{search_dir} holds no study yet: its search has not started")
    study = load_study(search_dir)
    rows = trial_rows(search_dir, settings, study)
    best = best_row(rows, settings.metric, settings.mode)
    best_info = None
    if best is not None:
        checkpoint = search_dir / best["path"] / BEST_CHECKPOINT
        tested = _json(search_dir / best["path"] / TEST_METRICS) or {}
        fresh = tested.get("epoch") == best["best_epoch"]
        best_info = {
            "trial_id": best["trial_id"],
            "config": {**settings.fixed, **best["config"],  # precision: what Lightning ran
                       **({"precision": best["precision"]} if best["precision"] else {})},
            "params": best["config"],
            settings.metric: best[f"best_{settings.metric}"],
            "epoch": best["best_epoch"],
            "precision": best["precision"],
            **{name: tested.get(name) if fresh else None
               for name in test_names({**settings.fixed, **best["config"]})},
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
        "warm_start": json.loads((search_dir / SETTINGS_FILE).read_text()).get("warm_start", []),
        "warm_started": sum(1 for t in study.get_trials(deepcopy=False) if not is_own(t)),
        "trials": rows,
    }


def find_trial(summary: dict[str, Any], text: str) -> dict[str, Any] | None:
    """The summary's trial named by ``text`` (``7``, ``0007`` or ``trial_0007``)."""
    number = trial_number(text)
    return next((t for t in summary["trials"] if t["number"] == number), None)


def test_names(config: dict[str, Any]) -> tuple[str, ...]:
    """The test metrics of a trial's model (``config``: its fixed and searched values)."""
    from textsearch.config import test_metrics_of

    return test_metrics_of(str(config.get("model_class", "")))


TEST_LABELS = {"test_acc": "Test accuracy", "test_cer": "Test character error rate",
               "test_line_acc": "Test line accuracy"}


def headline_test(summary: dict[str, Any]) -> tuple[str, float | None]:
    """(label, value) of the best trial's headline test figure (value None: not tested)."""
    best = summary.get("best") or {}
    name = "test_cer" if "test_cer" in best else "test_acc"
    return TEST_LABELS[name], best.get(name)


def evaluate_best(search_dir: Path, bundle=None, gpus: float | None = None,
                  summary: dict[str, Any] | None = None, shared: bool = False,
                  threads: int | None = None) -> float | None:
    """Test the best trial's ``best.ckpt`` (once per checkpoint: ``test.json``).

    ``gpus``: 0 for the CPU, else this process's GPU (None: one if this process has one).
    ``summary``: the search's :func:`summarize`, if just read.  ``shared``: other processes
    may test the same checkpoint meanwhile (the trials and the driver while a search runs):
    it is left to the one that claimed it first (``.testing`` in its folder).  ``threads``:
    torch's CPU threads for the test (None: as they are).  Returns the
    headline test figure (the accuracy, or for lines the CER; None: no best trial, or
    another process tests it).
    """
    summary = summary or summarize(search_dir)
    best = summary["best"]
    if best is None or best["checkpoint"] is None:
        return None
    if headline_test(summary)[1] is not None:
        return headline_test(summary)[1]
    folder = Path(search_dir) / Path(best["checkpoint"]).parent
    claim = folder / TEST_CLAIM
    if shared:
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return None
    try:
        done = _json(folder / TEST_METRICS)  # tested by another process since summary was read
        if shared and done is not None and done.get("epoch") == best["epoch"]:
            return done.get("test_cer", done.get("test_acc"))
        import torch

        from textsearch.data.util import atomic_path
        from textsearch.training import evaluate_checkpoint

        if gpus is None:
            gpus = 1 if torch.cuda.is_available() else 0
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:  # the checkpoint holds its config; the data is the search's, already in memory
            metrics = evaluate_checkpoint(Path(search_dir) / best["checkpoint"], bundle, gpus=gpus)
        finally:
            torch.set_num_threads(before)
        with atomic_path(folder / TEST_METRICS) as tmp:  # read whole or not at all
            tmp.write_text(json.dumps({"epoch": best["epoch"], **metrics}))
    finally:  # a claim left by a process that was killed: the search's end tests regardless
        claim.unlink(missing_ok=True)
    return metrics.get("test_cer", metrics.get("test_acc"))


def evaluate_best_meanwhile(search_dir: Path, bundle, ready=None, **kwargs) -> None:
    """:func:`evaluate_best` from a process that shares a running search (a trial at its last
    epoch, the driver's tail thread), unless ``ready(summary)`` says not now.  A failure is
    said on stderr and left to the search's end, which tests the best again."""
    try:
        summary = summarize(search_dir)
        if ready is None or ready(summary):
            evaluate_best(search_dir, bundle, summary=summary, shared=True, **kwargs)
    except Exception as err:  # noqa: BLE001 - the search's end tests the best again
        print(f"textsearch: testing the best checkpoint of {search_dir} failed here "
              f"({type(err).__name__}: {err}); the search's end tests it", file=sys.stderr,
              flush=True)


def clear_test_claims(search_dir: Path) -> None:
    """Claims left by testers that were killed (a run starts with none testing)."""
    for claim in Path(search_dir).glob(f"trial_*/{TEST_CLAIM}"):
        claim.unlink(missing_ok=True)


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
        cols = [c for c in df.columns if c not in ("error",)]
        with pd.option_context("display.width", 200, "display.max_columns", 30,
                               "display.float_format", "{:.4g}".format):
            lines.append(f"Top trials by {metric}:")
            lines.append(df[cols].head(top).to_string(index=False))
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
        lines.append("Best config: " + json.dumps(best["params"], sort_keys=True)
                     + (f" (trained in precision {best['precision']})"
                        if best.get("precision") else ""))
        label, test = headline_test(summary)
        lines.append(f"{label} of the best checkpoint: "
                     f"{test:.4f}" if test is not None else f"{label}: n/a")
    if summary.get("pareto") is not None:
        names = ", ".join(f"{m} ({d})" for m, d in summary["objectives"])
        lines.append(f"Pareto front of {names}: {len(summary['pareto'])} trial(s)")
        for t in summary["pareto"]:
            lines.append(f"  {t['trial_id']}  " + "  ".join(f"{k}={v:.4g}"
                                                            for k, v in t["values"].items()))
    return "\n".join(lines)
