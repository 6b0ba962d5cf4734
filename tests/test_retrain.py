"""``textsearch.retrain`` on search folders made by hand: its defaults and each refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from tests.conftest import run_main
from textsearch.retrain import main as retrain_main
from textsearch.study import create_study, make_sampler

FIXED = {"data_class": "EMNIST", "model_class": "CNN", "balance": False, "batch_size": 64,
         "fc_dim": 16, "dropout": 0.0, "num_blocks": 1, "lr": 3e-3}


def search_folder(folder: Path, trials: list[tuple[TrialState, float | None]]) -> Path:
    """search.json, a study, and each trial's progress.csv: what a search leaves."""
    study, _ = create_study(folder, folder.name, ["maximize"], make_sampler("random", 0, 2))
    (folder / "search.json").write_text(json.dumps({
        "space": "tiny", "space_source": "tiny", "num_samples": len(trials), "max_epochs": 2,
        "grace_period": 1, "reduction_factor": 2, "metric": "val_acc", "mode": "max",
        "fixed": FIXED}))
    for number, (state, acc) in enumerate(trials):
        conv = 4 + number
        study.add_trial(create_trial(
            state=state, value=acc if state == TrialState.COMPLETE else None,
            params={"conv_dim": conv}, distributions={"conv_dim": IntDistribution(4, 8)},
            intermediate_values={1: acc} if acc is not None else {},
            user_attrs={"config": {"conv_dim": conv}}))
        if acc is not None:
            trial_dir = folder / f"trial_{number:04d}"
            trial_dir.mkdir()
            (trial_dir / "progress.csv").write_text(f"val_acc,epoch\n{acc},1\n")
    return folder


def test_default_is_the_best_trial_for_the_searchs_epochs(tmp_path, capsys):
    folder = search_folder(tmp_path / "s", [(TrialState.COMPLETE, 0.5),
                                            (TrialState.COMPLETE, 0.7),
                                            (TrialState.PRUNED, 0.6)])
    code, err = run_main(retrain_main, [str(folder), "--no_progress"], capsys)
    assert code == 0, err
    info = json.loads((folder / "retrain" / "0001" / "model.json").read_text())
    assert info["trial_id"] == "0001" and info["config"]["conv_dim"] == 5  # the best: 0.7
    assert info["epochs"] == 2 == info["config"]["max_epochs"]  # the search's max_epochs
    assert info["metrics"]["search_val_acc"] == pytest.approx(0.7)
    assert info["search"] == "s" and info["data"]["data_fraction"] == 1.0
    assert (folder / "retrain" / "0001" / "model.pt").is_file()


def test_optimisation_flags_replace_the_trials_own(tmp_path, capsys):
    """--one_cycle_max_lr and --weight_decay reach the retraining's optimiser: its checkpoint
    holds a one-cycle schedule peaking there and Adam's weight decay, the trial's lr is kept."""
    import torch

    folder = search_folder(tmp_path / "s", [(TrialState.COMPLETE, 0.5)])
    code, err = run_main(retrain_main, [str(folder), "--no_progress", "--one_cycle_max_lr",
                                        "0.02", "--weight_decay", "0.0001"], capsys)
    assert code == 0, err
    info = json.loads((folder / "retrain" / "0000" / "model.json").read_text())
    assert info["config"]["one_cycle_max_lr"] == 0.02 and info["config"]["lr"] == FIXED["lr"]
    (checkpoint,) = (folder / "retrain" / "0000" / "checkpoints").glob("*.ckpt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    (schedule,) = state["lr_schedulers"]  # what Lightning stepped: torch's OneCycleLR
    assert schedule["total_steps"] >= state["global_step"] > 0
    (group,) = state["optimizer_states"][0]["param_groups"]  # what Adam was given
    assert group["max_lr"] == 0.02 and group["initial_lr"] == pytest.approx(0.02 / 25)
    assert group["weight_decay"] == 0.0001


@pytest.mark.parametrize("make, argv, message", [
    (lambda d: d, [], "is not a search folder (no search.json)"),
    (lambda d: (d / "search.json").write_text("{}") and d, [],
     "search.json is damaged: missing space, space_source, num_samples"),
    (lambda d: search_folder(d, [(TrialState.FAIL, None)]), [], "no trial with a result"),
    (lambda d: search_folder(d, [(TrialState.COMPLETE, 0.5)]), ["--trial", "7"],
     "--trial 7: no such trial"),
    (lambda d: search_folder(d, [(TrialState.COMPLETE, 0.5)]), ["--trial", "abc"],
     "--trial abc: no such trial"),
])
def test_each_refusal_is_one_line(make, argv, message, tmp_path, capsys):
    folder = tmp_path / "s"
    folder.mkdir()
    make(folder)
    code, err = run_main(retrain_main, [str(folder), *argv], capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (folder / "retrain").exists()
