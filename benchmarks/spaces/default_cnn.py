"""The default CNN (TrainConfig's defaults) on EMNIST, nothing searched: for timing trials."""

DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN"},
    "max_epochs": 1,
    "num_samples": 1,
}


def space(trial):
    return {"num_workers": 0}
