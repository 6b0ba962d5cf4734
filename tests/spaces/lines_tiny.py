"""Tiny line-recognizer space on a few hundred short lines.  Trial 2 asks for a window
stride too large for CTC (fewer output steps than the longest line needs): it must fail."""

DEFAULTS = {
    "fixed": {"data_class": "EMNISTLines", "model_class": "LineCNN", "max_length": 10,
              "num_train_lines": 240, "num_val_lines": 60, "num_test_lines": 60,
              "num_blocks": 1, "fc_dim": 32, "dropout": 0.0, "batch_size": 32},
    "metric": "val_cer",
    "mode": "min",
    "max_epochs": 2,
    "num_samples": 2,
    "grace_period": 1,
    "reduction_factor": 2,
}


def space(trial):
    trial.suggest_int("conv_dim", 8, 16)
    trial.suggest_float("lr", 1e-3, 5e-3, log=True)
    # 280-pixel lines of at most 8 characters: stride 8 gives 33 steps, stride 112 gives 2
    return {"window_stride": 112 if trial.number == 2 else 8, "window_width": 112 if
            trial.number == 2 else 16}
