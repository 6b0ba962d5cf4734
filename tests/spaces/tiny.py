"""Tiny, fast CNN space (1 epoch or a few): for the study's tests (warm start, objectives)."""

DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN", "balance": False, "batch_size": 64,
              "fc_dim": 16, "dropout": 0.0, "num_blocks": 1},
    "max_epochs": 2,
    "num_samples": 4,
    "grace_period": 1,
    "reduction_factor": 2,
}


def space(trial):
    trial.suggest_int("conv_dim", 4, 8)
    trial.suggest_float("lr", 1e-3, 1e-2, log=True)
    trial.suggest_categorical("downsample", ["maxpool", "stride"])
    return None
