"""Tiny CNN where every second trial has a useless learning rate, so ASHA must stop it."""

DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN", "balance": False, "batch_size": 32,
              "fc_dim": 32, "dropout": 0.0, "num_blocks": 1},
    "metric": "val_acc",
    "mode": "max",
    "max_epochs": 3,
    "num_samples": 4,
    "grace_period": 1,
    "reduction_factor": 2,
}


def space(trial):
    trial.suggest_int("conv_dim", 4, 8)
    trial.suggest_categorical("downsample", ["maxpool", "stride"])
    # Trials 0, 2 learn; trials 1, 3 cannot (lr 1e-9): run one at a time, each of the
    # latter is behind the former at the first rung, where ASHA stops it.
    return {"lr": 3e-3 if trial.number % 2 == 0 else 1e-9}
