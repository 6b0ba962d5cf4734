"""Tiny CNN space that names a known-good first trial."""

DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN", "balance": False, "batch_size": 64,
              "fc_dim": 16, "dropout": 0.0, "num_blocks": 1},
    "max_epochs": 1,
    "num_samples": 2,
    "first_trial": {"conv_dim": 7, "lr": 0.004, "downsample": "stride"},
}


def space(trial):
    trial.suggest_int("conv_dim", 4, 8)
    trial.suggest_float("lr", 1e-3, 1e-2, log=True)
    trial.suggest_categorical("downsample", ["maxpool", "stride"])
    return None
