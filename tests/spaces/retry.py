"""Tiny CNN with small batches, so each epoch lasts long enough to kill a trial mid-way."""

DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN", "balance": False, "batch_size": 4,
              "fc_dim": 16, "dropout": 0.0, "num_blocks": 2},
    "max_epochs": 5,
    "num_samples": 3,
    "grace_period": 5,
}


def space(trial):
    trial.suggest_int("conv_dim", 4, 8)
    trial.suggest_float("lr", 1e-3, 1e-2, log=True)
    return None
