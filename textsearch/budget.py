"""How a search spends its epochs: ASHA's settings chosen from the budget.

ASHA (Ray Tune's ``ASHAScheduler``, ``time_attr="epoch"``) lets every trial train
``grace_period`` epochs, then keeps the best ``1/reduction_factor`` of the trials at each
milestone ``grace_period * reduction_factor**k`` below ``max_epochs``.  A search of
``num_samples`` trials so costs about :func:`expected_epochs` epochs, against
``num_samples * max_epochs`` for running every trial to its end.

:func:`asha_from_budget` picks the settings a search gets when neither the space file nor
the command line names them: the longest grace period (a trial is judged on as many epochs
as the budget affords, not on one noisy first epoch) whose expected cost stays within
:data:`EPOCH_SHARE` of running every trial to the end, then the smallest reduction factor
that keeps it there (more trials reach the next milestone).
"""

from __future__ import annotations

EPOCH_SHARE = 0.5  # expected epochs / (num_samples * max_epochs) that ASHA may spend
REDUCTION_FACTORS = (2, 3, 4)  # tried in this order for each grace period


def milestones(max_epochs: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The epochs at which ASHA compares trials (Ray's rungs below ``max_epochs``)."""
    out, k = [], 0
    while True:
        m = grace_period * reduction_factor ** k
        if m >= max_epochs:
            return out
        out.append(int(m))
        k += 1


def expected_epochs(max_epochs: int, grace_period: int, reduction_factor: float) -> float:
    """Epochs one trial trains on average under synchronous successive halving: all train
    to the first milestone, ``1/rf**k`` of them past the k-th, ``1/rf**K`` to the end.

    Ray's ASHA is asynchronous: early trials are promoted against fewer rivals, so it
    trains somewhat more than this (measured in ``benchmarks/search_quality.py``).
    """
    rungs = milestones(max_epochs, grace_period, reduction_factor)
    if not rungs:
        return float(max_epochs)
    total, previous = float(rungs[0]), rungs[0]
    for k, m in enumerate([*rungs[1:], max_epochs], start=1):
        total += (m - previous) / reduction_factor ** k
        previous = m
    return total


def asha_from_budget(max_epochs: int, share: float = EPOCH_SHARE) -> tuple[int, int]:
    """``(grace_period, reduction_factor)`` for trials of at most ``max_epochs`` epochs.

    The longest grace period whose :func:`expected_epochs` stays within ``share`` of
    ``max_epochs``, with the smallest reduction factor that does; ``(1, 4)`` if none does.
    Examples: 3 epochs -> (1, 4); 6 -> (2, 4); 10 -> (3, 4); 20 -> (4, 4)...
    """
    for grace in range(max_epochs, 0, -1):
        for rf in REDUCTION_FACTORS:
            if expected_epochs(max_epochs, grace, rf) <= share * max_epochs + 1e-9:
                return grace, rf
    return 1, REDUCTION_FACTORS[-1]
