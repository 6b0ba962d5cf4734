"""CNN on EMNIST, accuracy against training throughput: the cnn_emnist space, two objectives.

DataLoader workers are noise against accuracy alone; against throughput they are a real
choice, so this is where ``num_workers`` pays off.  The search proposes trials for the
Pareto front of (val_acc, train_samples_per_s); ASHA stops trials on val_acc.
"""

from textsearch.search_spaces.cnn_emnist import DEFAULTS as ACCURACY_DEFAULTS
from textsearch.search_spaces.cnn_emnist import space  # noqa: F401  (the same parameters)

DEFAULTS = {
    **{k: v for k, v in ACCURACY_DEFAULTS.items() if k not in ("metric", "mode")},
    "objectives": {"val_acc": "max", "train_samples_per_s": "max"},
}
