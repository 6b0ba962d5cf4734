"""ASHA's settings chosen from the budget, checked against successive halving counted by hand."""

from __future__ import annotations

import pytest

from textsearch import spaces
from textsearch.budget import EPOCH_SHARE, asha_from_budget, expected_epochs, milestones
from textsearch.tune import build_parser, make_settings


def halving_by_hand(n: int, max_epochs: int, grace: int, rf: int) -> int:
    """Synchronous successive halving of n trials, epochs counted one trial at a time."""
    alive, trained, epoch, rung = n, 0, 0, grace
    while alive and epoch < max_epochs:
        until = min(rung, max_epochs)
        trained += alive * (until - epoch)
        epoch = until
        if epoch < max_epochs:
            alive //= rf  # the best 1/rf go on
            rung *= rf
    return trained


@pytest.mark.parametrize("max_epochs,grace,rf", [(3, 1, 4), (3, 1, 3), (6, 2, 4), (10, 3, 4),
                                                 (8, 2, 2), (9, 1, 3)])
def test_expected_epochs_is_successive_halving(max_epochs, grace, rf):
    n = rf ** 4  # every rung divides evenly
    assert expected_epochs(max_epochs, grace, rf) * n == pytest.approx(
        halving_by_hand(n, max_epochs, grace, rf))


def test_milestones_are_rays_rungs_below_max_epochs():
    assert milestones(3, 1, 4) == [1]
    assert milestones(10, 1, 3) == [1, 3, 9]
    assert milestones(6, 2, 4) == [2]
    assert milestones(2, 2, 2) == []


@pytest.mark.parametrize("max_epochs,settings", [(1, (1, 4)), (3, (1, 4)), (6, (2, 4)),
                                                  (10, (3, 4)), (8, (2, 2))])
def test_the_longest_grace_period_the_budget_affords(max_epochs, settings):
    grace, rf = asha_from_budget(max_epochs)
    assert (grace, rf) == settings
    if max_epochs > 1:  # within the share; one epoch more of grace would not be
        assert expected_epochs(max_epochs, grace, rf) <= EPOCH_SHARE * max_epochs
        assert all(expected_epochs(max_epochs, grace + 1, r) > EPOCH_SHARE * max_epochs
                   for r in (2, 3, 4))


def test_a_search_gets_asha_from_its_budget_unless_told(tmp_path):
    space = spaces.load("cnn_emnist")
    assert space.defaults.grace_period is None and space.defaults.reduction_factor is None

    def settings(*flags):
        args = build_parser().parse_args(["--space", "cnn_emnist", "--results_dir",
                                          str(tmp_path), *flags])
        return make_settings(args, space)

    s = settings("--max_epochs", "6")
    assert (s.grace_period, s.reduction_factor) == (2, 4)
    s = settings("--max_epochs", "6", "--grace_period", "1", "--reduction_factor", "3")
    assert (s.grace_period, s.reduction_factor) == (1, 3)
    assert (settings().grace_period, settings().reduction_factor) == (3, 4)  # 10 epochs
    smoke = spaces.load("smoke")  # a space that names its own
    args = build_parser().parse_args(["--space", "smoke", "--results_dir", str(tmp_path)])
    s = make_settings(args, smoke)
    assert (s.grace_period, s.reduction_factor) == (smoke.defaults.grace_period,
                                                    smoke.defaults.reduction_factor)
