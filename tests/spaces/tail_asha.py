"""Two trials: 0 learns, with epochs of about a second; 1 cannot learn (lr 1e-9) and its first
epoch takes a few of trial 0's, so ASHA stops it at the first rung while trial 0 still has
many seconds of epochs to train."""

DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN", "balance": False, "dropout": 0.0,
              "fc_dim": 16, "batch_size": 4},
    "max_epochs": 12,
    "num_samples": 2,
    "grace_period": 1,
    "reduction_factor": 2,
}


def space(trial):
    trial.suggest_int("conv_dim", 4, 5)
    slow = trial.number == 1
    return {"lr": 1e-9 if slow else 1e-3, "num_blocks": 2 if slow else 1,
            "conv_dim": 48 if slow else 16}
