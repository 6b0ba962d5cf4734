"""Tiny CNN whose trials differ in DataLoader workers: each asks Ray for 1 + num_workers CPUs."""

DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN", "balance": False, "batch_size": 64,
              "fc_dim": 16, "dropout": 0.0, "num_blocks": 1, "conv_dim": 4},
    "max_epochs": 1, "num_samples": 2, "grace_period": 1, "reduction_factor": 2,
}


def space(trial):
    trial.suggest_categorical("num_workers", [0, 1])
    trial.suggest_float("lr", 1e-3, 1e-2, log=True)
    return None
