"""The benchmark runner itself, on tiny data, so it cannot rot (no timing asserted)."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest

from benchmarks import accuracy, data_path, gpu, lines, run, search_quality, tpe_startup, warm_start
from benchmarks.common import FULL, QUICK, settings_for
from tests.synthetic import write_emnist


@pytest.fixture
def small_emnist(tmp_path, monkeypatch) -> None:
    """A smaller EMNIST than the session's, for the items that train in bf16-mixed: on a CPU
    without native bf16 it is emulated, several times slower than fp32."""
    write_emnist(tmp_path / "small" / "downloaded" / "emnist", n_train=200, n_test=60)
    monkeypatch.setenv("TEXTSEARCH_DATA_DIR", str(tmp_path / "small"))


def test_data_path_and_lines_items_produce_a_table():
    mode = dataclasses.replace(QUICK, reps=1, loader_batches=3)
    res = {"data_path": data_path.run(mode), "lines": lines.run(mode)}
    assert res["data_path"]["ours_images_per_s"]["median"] > 0
    assert res["data_path"]["speedup"]["median"] > 0
    assert res["lines"]["seconds_for_10000_lines"]["median"] > 0
    table = run.markdown(mode, res)
    assert "| data path: train-loader images/s" in table and "10,000 lines" in table


def test_epochs_to_reach_orders_reports_by_time(tmp_path):
    trial = tmp_path / "trial_a"
    trial.mkdir()
    (trial / "progress.csv").write_text(
        "val_acc,timestamp,epoch\n0.2,10,1\n0.5,30,2\n")
    other = tmp_path / "trial_b"
    other.mkdir()
    (other / "progress.csv").write_text("val_acc,timestamp,epoch\n0.45,20,1\n")
    assert warm_start.epochs_to_reach(tmp_path, 0.44) == 2
    assert warm_start.epochs_to_reach(tmp_path, 0.5) == 3
    assert warm_start.epochs_to_reach(tmp_path, 0.9) is None


def test_arms_take_turns_running_first():
    names = ["textsearch", "random", "plain"]
    orders = [search_quality.arm_order(names, seed) for seed in range(4)]
    assert orders[0] == names
    assert orders[1] == ["random", "plain", "textsearch"]
    assert orders[2] == ["plain", "textsearch", "random"]
    assert orders[3] == names
    # over any 3 consecutive seeds each arm runs first once, and every seed runs all arms
    assert sorted(o[0] for o in orders[1:4]) == sorted(names)
    assert all(sorted(o) == sorted(names) for o in orders)


def quality_arm(best: float, epochs: int, wall: float) -> dict:
    return {"dir": "x", "best_val_acc": best, "test_acc": best - 0.01, "epochs": epochs,
            "wall_s": wall, "curve": [(wall / 2, best - 0.05), (wall, best)]}


def test_one_seed_has_no_spread_to_call_a_difference_larger_than():
    names = [search_quality.TEXTSEARCH, search_quality.RANDOM]
    one = [{"seed": 0, "arms": {"textsearch": quality_arm(0.813, 96, 750),
                                "random": quality_arm(0.810, 180, 773)}}]
    r = search_quality.summarize((30, 6, 0.1), one, names)
    v = r["versus"]["textsearch"]["random"]
    assert r["spread"]["random"] is None and v["larger_than_spread"] is None
    assert v["epoch_ratio"]["median"] == pytest.approx(96 / 180)
    text = "\n".join(search_quality.section({"30x6": r}))
    assert "one seed: no seed-to-seed spread" in text and "larger than" not in text

    # two seeds: random's bests 0.810 and 0.790 spread by 0.010 (population std, by hand);
    # textsearch's differences +0.003 and +0.030, median 0.0165 > 0.010
    two = one + [{"seed": 1, "arms": {"textsearch": quality_arm(0.820, 90, 700),
                                      "random": quality_arm(0.790, 180, 760)}}]
    r = search_quality.summarize((30, 6, 0.1), two, names)
    assert r["spread"]["random"] == pytest.approx(0.010)
    assert r["versus"]["textsearch"]["random"]["larger_than_spread"] is True
    assert "the median difference is larger than that spread" in "\n".join(
        search_quality.section({"30x6": r}))


def test_search_quality_and_accuracy_items_run_end_to_end(tmp_path):
    """Each arm of the search-quality item as a user runs it (one tiny budget, one seed),
    and a time-boxed search + retraining, on synthetic EMNIST."""
    mode = dataclasses.replace(
        QUICK, quality_seeds=1, quality_budgets=((2, 2, 1.0),), accuracy_budget_s=40,
        accuracy_fraction=1.0, accuracy_epochs=1, retrain_epochs=2, retrain_budget_s=15,
        retrain_fraction=1.0)
    res = {"search_quality": search_quality.run(mode, tmp_path / "work", plots=tmp_path),
           "accuracy": accuracy.run(mode, tmp_path / "work")}
    assert (tmp_path / "search_quality_2x2_quick.png").stat().st_size > 0
    r = res["search_quality"]["2x2"]
    assert r["seeds"] == [0] and r["arms"] == list(search_quality.ARMS)
    for seed in r["per_seed"]:
        for arm, a in seed["arms"].items():
            # every arm's epochs and best, counted here from what it wrote
            if arm == search_quality.PLAIN:
                lines = [json.loads(x) for x in (tmp_path / "work" / a["dir"]).read_text().splitlines()]
                vals = [x["val_acc"] for x in lines if "epoch" in x]
            else:
                rows = [row for f in (tmp_path / "work" / a["dir"]).glob("trial_*/progress.csv")
                        for row in csv.DictReader(f.open())]
                vals = [float(row["val_acc"]) for row in rows]
            assert a["epochs"] == len(vals) and a["best_val_acc"] == pytest.approx(max(vals))
            assert 0.0 <= a["test_acc"] <= 1.0
        assert seed["arms"][search_quality.RANDOM]["epochs"] == 4  # 2 trials x 2 epochs
        assert 2 <= seed["arms"][search_quality.PLAIN]["epochs"] <= 4
    versus = r["versus"]["textsearch"]
    diffs = [s["arms"]["textsearch"]["best_val_acc"] - s["arms"]["random"]["best_val_acc"]
             for s in r["per_seed"]]
    assert versus["random"]["per_seed_diff"] == pytest.approx(diffs)
    acc = res["accuracy"]
    assert acc["search_trials"] >= 1 and 1 <= acc["retrain_epochs"] <= 2
    assert 0.0 <= acc["test_acc"] <= 1.0
    table = run.markdown(mode, res)
    assert "search quality 2x2" in table and "test accuracy" in table
    # the saved results name their searches and model inside --results, no machine's path
    assert str(tmp_path) not in json.dumps(res)
    assert (tmp_path / "work" / acc["model"]).is_file()


def test_retraining_epochs_fit_the_time_budget():
    mode = dataclasses.replace(FULL, retrain_epochs=10, retrain_budget_s=600)
    assert accuracy.retrain_epochs(mode, samples_per_s=100, train_size=20_000) == 3  # 200 s an epoch
    assert accuracy.retrain_epochs(mode, samples_per_s=10_000, train_size=20_000) == 10  # capped
    assert accuracy.retrain_epochs(mode, samples_per_s=1, train_size=20_000) == 1  # at least one


def test_gpu_item_measures_concurrent_trials_and_their_devices(tmp_path, small_emnist):
    """The GPU-sharing item's own code, run on the CPU; on a machine without CUDA the real
    item says it was not measured."""
    import torch

    mode = dataclasses.replace(QUICK, gpu_fraction=1.0, gpu_epochs=1)
    res = gpu.run(mode, tmp_path / "work", counts=(1, 2), use_gpu=False)
    for precision in gpu.GPU_PRECISIONS:
        runs = res["runs"][precision]
        assert runs[1]["trials"] == 1 and runs[2]["trials"] == 2
        assert runs[2]["reports"] == 2 and runs[2]["reports_on_cuda"] == 0
        assert runs[2]["devices"] == ["cpu"] and runs[2]["loop_samples_per_s"] > 0
        assert runs[1]["speedup_vs_1"] == 1.0
    table = "\n".join(gpu.section(res))
    assert "| bf16-mixed | 2 |" in table and "0/2" in table
    if not torch.cuda.is_available():
        skipped = gpu.run(mode, tmp_path / "work2")
        assert skipped == {"skipped": "no CUDA GPU on this machine"}
        assert "not measured" in run.markdown(mode, {"gpu": skipped})


def test_tpe_startup_item_runs_every_startup_count(tmp_path):
    mode = dataclasses.replace(QUICK, tpe_trials=3, tpe_seeds=1, tpe_fraction=1.0)
    res = tpe_startup.run(mode, tmp_path)
    assert set(res["best_val_acc"]) == set(tpe_startup.STARTUP_CHOICES)
    for k in tpe_startup.STARTUP_CHOICES:
        assert 0.0 <= res["best_val_acc"][k]["median"] <= 1.0
    # the arms share their random start-up trials, so fewer configs are trained than trials run
    assert res["distinct_configs_trained"] < 3 * len(tpe_startup.STARTUP_CHOICES)
    assert res["default_for_trials"] == 2
    table = "\n".join(tpe_startup.section(res))
    assert "| 2 |" in table and "half of --num_samples" in table


def test_benchmark_settings_come_from_the_cli(tmp_path):
    """A benchmark's search is set up by textsearch.tune's own settings builder."""
    settings, space = settings_for("cnn_emnist", "b", tmp_path, num_samples=3, max_epochs=2,
                                   data_fraction=0.05, searcher="random", precision="bf16-mixed")
    assert (settings.num_samples, settings.max_epochs, settings.searcher) == (3, 2, "random")
    assert settings.fixed["precision"] == "bf16-mixed" and settings.fixed["data_fraction"] == 0.05
    assert settings.search_dir == tmp_path.resolve() / "b" and space.name == "cnn_emnist"
    import pytest

    with pytest.raises(TypeError, match="not textsearch.tune flags"):
        settings_for("cnn_emnist", "c", tmp_path, fixed={"lr": 1.0})


def test_startup_timeline_reads_first_batches_gaps_and_wrap_up():
    from benchmarks import startup

    rows = [  # two slots: a and b start at once, c takes a's slot, d takes b's
        {"trial": "a", "first_batch_at": 110.0, "epoch_end_at": 120.0},
        {"trial": "a", "first_batch_at": 110.0, "epoch_end_at": 130.0},
        {"trial": "b", "first_batch_at": 111.0, "epoch_end_at": 140.0},
        {"trial": "c", "first_batch_at": 130.5, "epoch_end_at": 150.0},
        {"trial": "d", "first_batch_at": 142.0, "epoch_end_at": 155.0},
    ]
    t = startup.timeline(rows, start=100.0, summary_at=158.0)
    assert t["first_batch_s"] == 10.0 and t["wrap_up_s"] == 3.0 and t["trials"] == 4
    assert t["gaps_s"] == [0.5, 2.0]


def test_startup_steps_come_from_the_run_record_and_the_first_trial(tmp_path):
    """Each start-up step's end, from the command's start: the driver's steps from the first
    line of runs.jsonl, the trial's from the reports of the trial whose first batch came
    first."""
    from benchmarks import startup

    (tmp_path / "runs.jsonl").write_text(
        json.dumps({"started": 100.5, "ended": 190.0, "ray_ready": 105.0, "data_ready": 101.5,
                    "tune_started": 106.0}) + "\n"
        + json.dumps({"started": 200.0, "ended": 210.0, "ray_ready": 204.0}) + "\n")
    first = {"trial": "b", "first_batch_at": 114.0, "process_started_at": 106.5,
             "trial_started_at": 108.0, "modules_loaded_at": 113.5}
    later = {**first, "trial": "a", "first_batch_at": 115.0, "process_started_at": 107.0}
    steps = startup.start_up_steps(tmp_path, [later, first], start=100.0)
    assert steps == {"ray_ready": 5.0, "data_ready": 1.5, "tune_started": 6.0,
                     "process_started_at": 6.5, "trial_started_at": 8.0,
                     "modules_loaded_at": 13.5, "first_batch_at": 14.0}
    res = {"reps": 1, "steps_s": {k: {"min": v, "median": v, "max": v} for k, v in steps.items()}}
    table = "\n".join(startup.section(res))
    assert "| Ray started (ray.init returned) | 5.0 (5.0-5.0) |" in table
    assert "| its first training batch | 14.0 (14.0-14.0) |" in table


def test_startup_item_times_help_list_and_bad_input():
    from benchmarks import startup

    for args, code in startup.QUICK_COMMANDS.values():
        assert startup.time_command(args, code) > 0  # and exits with the code it must
    quick = {name: {"min": 0.4, "median": 0.5, "max": 0.6} for name in startup.QUICK_COMMANDS}
    res = {"quick_commands_s": quick, "first_batch_s": {"min": 9, "median": 9, "max": 9},
           "gap_s": {"min": 0, "median": 0, "max": 0}, "wrap_up_s": {"min": 1, "median": 1, "max": 1},
           "smoke_total_seconds": {"min": 15, "median": 15, "max": 15}}
    table = "\n".join(startup.rows(res))
    assert "--help, --list, bad input: seconds to exit" in table and "| < 1.5 s | yes |" in table


def test_plain_optuna_arm_runs_against_textsearch(tmp_path):
    """Both arms for real on synthetic EMNIST: the CLI search and the hand-written loop."""
    from benchmarks import plain

    mode = dataclasses.replace(QUICK, reps=1, plain_samples=2, plain_epochs=1, plain_fraction=1.0)
    res = plain.run(mode, tmp_path)
    rep = res["reps"][0]
    for arm in ("textsearch", "plain"):
        assert rep[arm]["epochs"] == 2 and 0.0 <= rep[arm]["best_val_acc"] <= 1.0
        assert rep[arm]["wall_s"] > 0
    best = max(rep["textsearch"]["best_val_acc"], rep["plain"]["best_val_acc"])
    winner = "textsearch" if rep["textsearch"]["best_val_acc"] == best else "plain"
    assert rep[winner]["s_to_within_1pt"] is not None
    # the same-configs run: both arms trained exactly the fixed configs, each to max_epochs
    from benchmarks.spaces import fixed_cnn

    for arm in ("textsearch", "plain", "textsearch_1x2"):
        fixed = rep["fixed"][arm]
        assert fixed["epochs"] == 2, (arm, fixed["epochs"])
        got = sorted(json.dumps({k: c[k] for k in fixed_cnn.CONFIGS[0]}, sort_keys=True)
                     for c in fixed["configs"])
        assert got == sorted(json.dumps(c, sort_keys=True) for c in fixed_cnn.CONFIGS[:2]), arm
    assert rep["fixed"]["wall_ratio"] > 0
    table = "\n".join(plain.rows(res) + plain.section(res))
    assert "plain Optuna loop" in table and "| plain |" in table and "fixed configs" in table


def test_fused_trials_train_like_separate_ones():
    """The fusion item's fused step is K independent Adam steps, and its table renders."""
    import torch

    from benchmarks import fusion

    arch = fusion.ARCHS["3 residual blocks, 24 ch"]
    nets = fusion.models(arch, 2)
    xs, ys = torch.rand(2, 8, 1, 28, 28), torch.randint(0, fusion.CLASSES, (2, 8))
    step, params = fusion.fused_step(nets, xs, ys, lr=1e-2)
    step()
    step()
    for i, net in enumerate(nets):  # the same two steps, apart
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(2):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xs[i]), ys[i]).backward()
            opt.step()
        for name, p in net.named_parameters():
            torch.testing.assert_close(params[name][i], p.detach(), rtol=1e-3, atol=1e-4)
    res = fusion.run(dataclasses.replace(QUICK, reps=1, fusion_k=2, fusion_seconds=0.1), None)
    for per in res["archs"].values():
        assert set(per) == {1, 2} and all(v["ratio"]["median"] > 0 for v in per.values())
    assert "fused / apart" in "\n".join(fusion.rows(res) + fusion.section(res))


def test_memory_format_item_compares_both_formats():
    from benchmarks import memory_format

    res = memory_format.run(dataclasses.replace(QUICK, reps=1, fixed_samples=1,
                                                fusion_seconds=0.2), None)
    (c,) = res["configs"]
    assert c["nchw"]["median"] > 0 and c["channels_last"]["median"] > 0
    assert "channels_last / NCHW" in "\n".join(memory_format.rows(res))


def test_precision_item_trains_each_config_in_both_precisions(tmp_path, small_emnist):
    from benchmarks import precision

    mode = dataclasses.replace(QUICK, reps=1, fixed_samples=1, fusion_seconds=0.4,
                               precision_epochs=1, precision_fraction=1.0)
    res = precision.run(mode, tmp_path)
    assert len(res["speed"]) == 1 and res["speed"][0]["ratio"]["median"] > 0
    runs = res["runs"]  # what Lightning ran, from each run's trainer
    pairs = precision.ACCURACY_CONFIGS * len(precision.SEEDS)
    assert sorted(r["precision"] for r in runs) == ["32"] * pairs + ["bf16-mixed"] * pairs
    # the medians, by hand from the runs
    for metric in ("val_acc", "test_acc"):
        by_pair = {}
        for r in runs:
            by_pair.setdefault((r["config"], r["seed"]), {})[r["precision"]] = r[metric]
        diffs = sorted(100 * (p["bf16-mixed"] - p["32"]) for p in by_pair.values())
        assert res["median_diff_points"][metric] == pytest.approx(
            (diffs[2] + diffs[3]) / 2)  # six pairs
    table = "\n".join(precision.rows(res) + precision.section(res))
    assert "bf16 / fp32 training samples/s" in table and "accuracy parity" in table
