"""ResNet-style CNN on EMNIST: residual blocks with BatchNorm and strided downsampling, depth and width."""

DEFAULTS = {
    "fixed": {
        "data_class": "EMNIST",
        "model_class": "CNN",
        "block": "residual",
        "batchnorm": True,
        "downsample": "stride",
    },
    "metric": "val_acc",
    "mode": "max",
    "max_epochs": 10,
    "num_samples": 20,
    "grace_period": 1,
    "reduction_factor": 3,
}


def space(trial):
    num_blocks = trial.suggest_int("num_blocks", 1, 6)
    trial.suggest_int("downsample_every", 1 if num_blocks <= 4 else 2, 3)
    trial.suggest_int("conv_dim", 16, 64, log=True)
    trial.suggest_categorical("fc_dim", [64, 128, 256])
    trial.suggest_float("dropout", 0.0, 0.5, step=0.1)
    # A one-cycle schedule often suits BatchNorm networks: 0 means a constant lr.  The
    # schedule sets the lr itself, so lr is only searched without it (conditional).
    if trial.suggest_categorical("one_cycle_max_lr", [0.0, 0.01, 0.03]) == 0.0:
        trial.suggest_float("lr", 3e-4, 3e-2, log=True)
    return None
