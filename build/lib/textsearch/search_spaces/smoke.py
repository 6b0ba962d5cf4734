"""Tiny CNN search on 2% of EMNIST: checks the whole search path in well under a minute."""

DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN", "fc_dim": 32, "batch_size": 128},
    "metric": "val_acc",
    "mode": "max",
    "max_epochs": 3,
    "num_samples": 4,
    "grace_period": 1,
    "reduction_factor": 2,
    "data_fraction": 0.02,
}


def space(trial):
    trial.suggest_int("num_blocks", 1, 2)
    trial.suggest_categorical("block", ["plain", "residual"])
    trial.suggest_categorical("downsample", ["maxpool", "stride"])
    trial.suggest_int("conv_dim", 4, 8, log=True)
    trial.suggest_float("lr", 1e-3, 1e-2, log=True)
    return {"dropout": 0.0}
