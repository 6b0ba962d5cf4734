"""A space file that fails when imported."""

import math

DEFAULTS = {"max_epochs": 1}
RATE = math.sqrt(-1)


def space(trial):
    return None
