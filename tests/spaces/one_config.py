"""One config, nothing to choose: searches of it differ only by their seed."""

DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN", "balance": False, "batch_size": 32,
              "conv_dim": 6, "fc_dim": 32, "dropout": 0.3, "num_blocks": 1, "lr": 3e-3},
    "metric": "val_acc",
    "mode": "max",
    "max_epochs": 1,
    "num_samples": 1,
}


def space(trial):
    trial.suggest_categorical("downsample", ["maxpool"])
