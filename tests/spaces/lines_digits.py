"""Lines of synthetic digits (the test's own glyphs and corpus): a line model that learns to
read them in a few epochs, for the line recognizer's quality test."""

DEFAULTS = {
    "fixed": {"data_class": "EMNISTLines", "model_class": "LineCNN", "max_length": 10,
              "num_train_lines": 3000, "num_val_lines": 100, "num_test_lines": 100,
              "max_overlap": 0.2, "num_blocks": 1, "conv_dim": 16, "fc_dim": 64, "dropout": 0.0,
              "batch_size": 32, "window_width": 28, "window_stride": 14},
    "metric": "val_cer",
    "mode": "min",
    "max_epochs": 1,
    "num_samples": 1,
}


def space(trial):
    trial.suggest_float("lr", 4e-3, 6e-3, log=True)
    return None
