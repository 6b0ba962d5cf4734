"""A CNN whose epochs last seconds on a slice of the EMNIST sample: for watching the live view."""

DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN", "batch_size": 16, "fc_dim": 32,
              "dropout": 0.0, "num_blocks": 3, "downsample_every": 3, "precision": "32"},
    "max_epochs": 2,
    "num_samples": 2,
    "data_fraction": 0.04,
    "grace_period": 2,
}


def space(trial):
    trial.suggest_int("conv_dim", 40, 48)
    trial.suggest_float("lr", 1e-3, 3e-3, log=True)
    return None
