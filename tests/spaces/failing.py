"""Every second trial asks for an impossible architecture (six halvings of 28x28)."""

DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN", "balance": False, "batch_size": 32,
              "fc_dim": 16, "dropout": 0.0, "conv_dim": 4, "downsample_every": 1},
    "max_epochs": 1,
    "num_samples": 4,
}


def space(trial):
    trial.suggest_float("lr", 1e-3, 1e-2, log=True)
    return {"num_blocks": 1 if trial.number % 2 == 0 else 6}
