"""Two trials: 0 learns and is quick, 1 cannot learn (lr 1e-9) and is slow, so trial 0 is the
best and ends while trial 1 still trains."""

DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN", "balance": False, "batch_size": 32,
              "dropout": 0.0, "num_blocks": 1, "fc_dim": 16},
    "max_epochs": 3,
    "num_samples": 2,
    "grace_period": 3,
}


def space(trial):
    trial.suggest_int("conv_dim", 4, 5)
    slow = trial.number == 1
    return {"lr": 1e-9 if slow else 3e-3, "num_blocks": 3 if slow else 1,
            "conv_dim": 48 if slow else 4, "batch_size": 16 if slow else 32}
