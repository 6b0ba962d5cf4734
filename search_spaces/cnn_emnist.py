"""CNN on EMNIST: block count, plain vs residual, BatchNorm, max-pool vs stride, widths, lr.

Accuracy alone: DataLoader workers are not searched here.  Against accuracy they are noise,
and a trial with a worker asks Ray for one more CPU, so it idles a core and cannot take over
another trial's process.  ``cnn_emnist_fast`` searches them against training throughput.
"""

DEFAULTS = {
    "fixed": {"data_class": "EMNIST", "model_class": "CNN"},
    "metric": "val_acc",
    "mode": "max",
    "max_epochs": 10,
    "num_samples": 30,
    # ASHA's grace period and reduction factor: chosen from max_epochs (textsearch.budget)
    # A known-good config, trial 0 of every fresh search: the lab's CNN of three ConvBlocks
    # with BatchNorm, a wider head and less dropout (val_acc 0.740 after 3 epochs on 5% of
    # the sample, against 0.587 for the lab's own defaults).
    "first_trial": {"num_blocks": 3, "block": "plain", "batchnorm": True,
                    "downsample": "maxpool", "downsample_every": 1, "conv_dim": 64,
                    "fc_dim": 256, "dropout": 0.2, "lr": 0.002, "batch_size": 64},
}


def space(trial):
    num_blocks = trial.suggest_int("num_blocks", 1, 6)
    trial.suggest_categorical("block", ["plain", "residual"])
    trial.suggest_categorical("batchnorm", [True, False])
    trial.suggest_categorical("downsample", ["maxpool", "stride"])
    # Halve the feature map after every n-th block.  Conditional on the block count: at most
    # four halvings fit a 28x28 input (28 -> 14 -> 7 -> 4 -> 2), so 5-6 blocks need n >= 2.
    trial.suggest_int("downsample_every", 1 if num_blocks <= 4 else 2, 3)
    # One width range for both block types, so "plain vs residual" is not mixed up with width.
    trial.suggest_int("conv_dim", 16, 96, log=True)
    trial.suggest_categorical("fc_dim", [64, 128, 256])
    trial.suggest_float("dropout", 0.0, 0.5, step=0.1)
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [64, 128, 256])
    return None
