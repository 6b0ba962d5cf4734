"""Tiny CNN with several epochs per trial: used to interrupt a search mid-way."""

DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN", "balance": False, "batch_size": 16,
              "fc_dim": 16, "dropout": 0.0, "num_blocks": 2},
    "max_epochs": 4,
    "num_samples": 3,
    "grace_period": 4,
}


def space(trial):
    trial.suggest_int("conv_dim", 4, 8)
    trial.suggest_float("lr", 1e-3, 1e-2, log=True)
    return None
