"""Line recognizer on EMNIST Lines: the character CNN slid across the line, trained with CTC.

Minimises the validation character error rate (``val_cer``).  Searched: the CNN's block
options, the window's width and stride (in pixels of the 28-pixel-high line), lr and batch
size.  A window stride that gives fewer output steps than the longest line needs under CTC
fails its trial with one line saying so.
"""

DEFAULTS = {
    "fixed": {"data_class": "EMNISTLines", "model_class": "LineCNN", "max_length": 32},
    "metric": "val_cer",
    "mode": "min",
    "max_epochs": 10,
    "num_samples": 20,
    "grace_period": 1,
    "reduction_factor": 3,
}


def space(trial):
    num_blocks = trial.suggest_int("num_blocks", 1, 4)
    trial.suggest_categorical("block", ["plain", "residual"])
    trial.suggest_categorical("batchnorm", [True, False])
    trial.suggest_categorical("downsample", ["maxpool", "stride"])
    # at most three halvings of the 28-pixel height (28 -> 14 -> 7 -> 4)
    trial.suggest_int("downsample_every", 1 if num_blocks <= 3 else 2, 2)
    trial.suggest_int("conv_dim", 16, 64, log=True)
    trial.suggest_categorical("fc_dim", [64, 128, 256])
    trial.suggest_float("dropout", 0.0, 0.3, step=0.1)
    # a character is 28 pixels wide and advances 19-28 pixels (overlap up to 0.33)
    trial.suggest_categorical("window_width", [20, 28, 36])
    trial.suggest_categorical("window_stride", [8, 12, 16])
    trial.suggest_float("lr", 3e-4, 3e-3, log=True)
    trial.suggest_categorical("batch_size", [32, 64, 128])
    return None
