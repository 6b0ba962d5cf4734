"""Eight fixed `cnn_emnist` configs, one per trial number, nothing searched: for timing systems.

Both arms of the plain benchmark's same-configs item train exactly these configs for the same
epochs, so their wall times differ only by how each system runs trials, not by which configs
its sampler happened to propose or which trials its pruner stopped.  The configs are random
draws (seed 0) from `cnn_emnist`, without DataLoader workers.
"""

import optuna
from textsearch.search_spaces import cnn_emnist

DEFAULTS = {
    "fixed": {**cnn_emnist.DEFAULTS["fixed"], "num_workers": 0},
    "metric": "val_acc",
    "mode": "max",
    "max_epochs": 2,
    "num_samples": 8,
}


def _draw(n: int, seed: int) -> list[dict]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(n):
        trial = study.ask()
        cnn_emnist.space(trial)
        configs.append(trial.params)
        study.tell(trial, 0.0)
    return configs


CONFIGS = _draw(DEFAULTS["num_samples"], seed=0)


def space(trial):
    return dict(CONFIGS[trial.number % len(CONFIGS)])
