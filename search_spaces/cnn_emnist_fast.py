"""CNN on EMNIST, accuracy against training throughput: cnn_emnist plus DataLoader workers.

DataLoader workers are noise against accuracy alone; against throughput they are a real
choice, so this is where ``num_workers`` pays off.  The search proposes trials for the
Pareto front of (val_acc, train_samples_per_s); ASHA stops trials on val_acc.
"""

from textsearch.search_spaces import cnn_emnist

DEFAULTS = {
    **{k: v for k, v in cnn_emnist.DEFAULTS.items() if k not in ("metric", "mode")},
    "objectives": {"val_acc": "max", "train_samples_per_s": "max"},
}


def space(trial):
    cnn_emnist.space(trial)
    trial.suggest_int("num_workers", 0, 1)
