"""MLP on MNIST: hidden widths, dropout, learning rate and batch size."""

DEFAULTS = {
    "fixed": {"data_class": "MNIST", "model_class": "MLP"},
    "metric": "val_acc",
    "mode": "max",
    "max_epochs": 8,
    "num_samples": 20,
    "grace_period": 1,
    "reduction_factor": 3,
}


def space(trial):
    trial.suggest_int("fc1", 128, 2048, log=True)
    trial.suggest_int("fc2", 32, 512, log=True)
    trial.suggest_float("dropout", 0.0, 0.6, step=0.1)
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [64, 128, 256])
    return None
