"""A space whose function raises."""

DEFAULTS = {"fixed": {"data_class": "EMNIST"}}


def space(trial):
    blocks = trial.suggest_int("num_blocks", 1, 3)
    return {"conv_dim": 64 // (blocks - blocks)}
