"""The benchmark runner itself, on tiny data, so it cannot rot (no timing asserted)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

from tests.conftest import REPO


def load_runner():
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_data_path_and_lines_items_produce_a_table():
    run = load_runner()
    mode = dataclasses.replace(run.QUICK, reps=1, loader_batches=3)
    res = {"data_path": run.bench_data_path(mode), "lines": run.bench_lines(mode)}
    assert res["data_path"]["ours_images_per_s"]["median"] > 0
    assert res["data_path"]["speedup"]["median"] > 0
    assert res["lines"]["seconds_for_10000_lines"]["median"] > 0
    table = run.markdown(mode, res)
    assert "| data path: train-loader images/s" in table and "10,000 lines" in table


def test_epochs_to_reach_orders_reports_by_time(tmp_path):
    run = load_runner()
    trial = tmp_path / "trial_a"
    trial.mkdir()
    (trial / "progress.csv").write_text(
        "val_acc,timestamp,epoch\n0.2,10,1\n0.5,30,2\n")
    other = tmp_path / "trial_b"
    other.mkdir()
    (other / "progress.csv").write_text("val_acc,timestamp,epoch\n0.45,20,1\n")
    assert run.epochs_to_reach(tmp_path, 0.44) == 2
    assert run.epochs_to_reach(tmp_path, 0.5) == 3
    assert run.epochs_to_reach(tmp_path, 0.9) is None
