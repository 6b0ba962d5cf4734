"""The search report and the notebooks, on a real tiny search."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO, run_main
from textsearch.report import main as report_main
from textsearch.report import write_report
from textsearch.tune import main as tune_main

SPACES = Path(__file__).parent / "spaces"
NOTEBOOKS = REPO / "notebooks"


@pytest.fixture(scope="module")
def search_dir(data_root, tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("report-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEXTSEARCH_DATA_DIR", str(data_root))
        code = tune_main(["--space", str(SPACES / "asha_certain.py"), "--results_dir", str(results),
                          "--name", "r", "--max_concurrent", "1"])
    assert code == 0
    return results / "r"


def test_search_ends_with_a_report_and_pngs(search_dir):
    assert (search_dir / "report.html").exists()
    for name in ("best_vs_time", "best_vs_trials", "curves", "params", "importance"):
        png = search_dir / f"plot_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_plots_draw_the_searchs_own_numbers(search_dir):
    """What the plots draw, against the trial folders' progress.csv read here by hand."""
    import csv
    import itertools

    from textsearch.plots import best_so_far, load_search, param_importances, plot_curves

    by_trial = {f.parent.name.removeprefix("trial_"):
                [(float(r["timestamp"]), int(r["epoch"]), float(r["val_acc"]))
                 for r in csv.DictReader(f.open())] for f in search_dir.glob("trial_*/progress.csv")}
    reports = sorted((ts, ep, v) for rows in by_trial.values() for ts, ep, v in rows)
    data = load_search(search_dir)
    assert list(best_so_far(data)["best"]) == pytest.approx(
        list(itertools.accumulate((v for _, _, v in reports), max)))
    fig = plot_curves(data)
    drawn = sorted(list(line.get_ydata()) for line in fig.axes[0].get_lines())
    assert drawn == sorted([v for _, _, v in rows] for rows in by_trial.values())
    imp = param_importances(data)
    assert imp and set(imp) <= {"lr", "conv_dim", "downsample", "batch_size"}
    assert sum(imp.values()) == pytest.approx(1.0)


def test_report_is_self_contained(search_dir):
    page = write_report(search_dir).read_text()
    assert len(re.findall(r"<img [^>]*src='data:image/png;base64,", page)) == 5
    assert not re.search(r"(src|href)=['\"]https?://", page)
    assert "test accuracy of its best checkpoint" in page
    assert page.count("<tr") == 1 + 4  # header + one row per trial
    assert "stopped_early" in page


def test_report_cli_bad_input(tmp_path, capsys):
    code, err = run_main(report_main, [str(tmp_path / "missing")], capsys)
    assert code == 2 and "is not a directory" in err
    code, err = run_main(report_main, [str(tmp_path)], capsys)
    assert code == 2 and "not a search folder (no search.json)" in err
    assert len(err.strip().splitlines()) == 1
    code, err = run_main(report_main, [""], capsys)
    assert code == 2 and "must not be empty" in err


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_report_in_a_real_headless_browser(search_dir, tmp_path):
    browser = _chromium()
    if browser is None:
        from tests.conftest import skip_or_fail

        skip_or_fail("no chromium here (install Debian's chromium to run this check)")
    page = (search_dir / "report.html").resolve()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
             "--v=0", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the page's own check: every <img> decoded to a real bitmap
    assert 'data-plots-loaded="5"' in dom.stdout, dom.stdout[:500]
    assert 'data-plots-broken="0"' in dom.stdout
    console_errors = [ln for ln in dom.stderr.splitlines()
                      if "CONSOLE" in ln and ("ERROR" in ln or "Uncaught" in ln)]
    assert console_errors == []
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
                   capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000


@pytest.mark.parametrize("name", ["01-look-at-emnist", "02-look-at-emnist-lines",
                                  "03-compare-trials"])
def test_notebook_runs_top_to_bottom(name, search_dir, monkeypatch):
    monkeypatch.setenv("TEXTSEARCH_SEARCH_DIR", str(search_dir))
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit without outputs"
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError on any failing cell
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
                 if "image/png" in o.get("data", {}))
    assert images >= 3


@pytest.mark.parametrize("mode", ["max", "min"])
def test_best_so_far_against_trials_never_goes_back(tmp_path, mode):
    """Trial 1 reaches its best late, after trial 2's reports: the plot of the best of trials
    1..k must hold trial 1's best at k = 2 (it once drew 0.753, then 0.675, then 0.753)."""
    import pandas as pd

    from textsearch.plots import SearchData, best_by_trial, plot_best_vs_trials

    sign = 1 if mode == "max" else -1  # a minimised metric: the same numbers, negated
    reports = [("a", 1, 1.0, 0.600), ("b", 1, 2.0, 0.500), ("b", 2, 4.0, 0.675),
               ("a", 2, 10.0, 0.753), ("c", 1, 12.0, 0.700)]
    epochs = pd.DataFrame([{"trial_id": t, "status": "completed", "epoch": e, "timestamp": ts,
                            "m": sign * v} for t, e, ts, v in reports])
    data = SearchData(tmp_path, {"metric": "m", "mode": mode}, pd.DataFrame(), epochs)
    # by hand: trial a's best is 0.753, b's 0.675, c's 0.700; the best of the first k trials
    expected = [sign * 0.753] * 3
    assert list(best_by_trial(data)) == pytest.approx(expected)
    fig = plot_best_vs_trials(data)
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == pytest.approx(expected)
