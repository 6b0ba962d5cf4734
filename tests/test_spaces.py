"""Finding, loading and checking search spaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from textsearch import spaces
from textsearch.errors import UserError

HERE = Path(__file__).parent / "spaces"


def test_shipped_spaces_load_and_sample():
    names = set(spaces.known_spaces())
    assert {"cnn_emnist", "mlp_mnist", "smoke", "resnet_emnist"} <= names
    for name in names:
        s = spaces.load(name)
        assert s.description
        params, dists = spaces.sample(s, seed=0)
        assert params and dists


def test_cnn_emnist_searches_what_it_promises():
    s = spaces.load("cnn_emnist")
    _, dists = spaces.sample(s, seed=0)
    assert {"num_blocks", "block", "batchnorm", "downsample", "conv_dim",
            "fc_dim", "dropout", "lr", "batch_size"} <= set(dists)
    # workers only where throughput is an objective: against accuracy alone they idle a core
    assert "num_workers" not in dists
    _, fast = spaces.sample(spaces.load("cnn_emnist_fast"), seed=0)
    assert set(fast) == set(dists) | {"num_workers"}
    # never an impossible architecture, whatever the sample
    from textsearch.models import CNN
    from textsearch.training import TrainConfig

    for seed in range(40):
        params, _ = spaces.sample(s, seed=seed)
        cfg = TrainConfig.from_dict({**s.defaults.fixed, **params})
        CNN((1, 28, 28), 83, cfg.cnn_config())


def test_first_sample_is_seeded():
    s = spaces.load("cnn_emnist")
    assert spaces.sample(s, seed=5)[0] == spaces.sample(s, seed=5)[0]
    assert spaces.sample(s, seed=5)[0] != spaces.sample(s, seed=6)[0]


def test_path_and_name_resolution():
    assert spaces.resolve("smoke").name == "smoke.py"
    assert spaces.resolve(str(HERE / "failing.py")) == (HERE / "failing.py").resolve()
    with pytest.raises(UserError, match="unknown search space 'nope'; known: .*cnn_emnist"):
        spaces.resolve("nope")
    with pytest.raises(UserError, match="does not exist"):
        spaces.resolve("missing/file.py")


def test_broken_space_files_point_at_file_and_line():
    with pytest.raises(UserError) as err:
        spaces.load(str(HERE / "broken_import.py"))
    assert f"{HERE / 'broken_import.py'}:6: ValueError: math domain error" in str(err.value)
    with pytest.raises(UserError) as err:
        spaces.load(str(HERE / "broken_function.py"))
    assert f"{HERE / 'broken_function.py'}:8: ZeroDivisionError" in str(err.value)


def test_pins_are_typed_against_the_space():
    s = spaces.load("cnn_emnist")
    params, fixed = spaces.sample_pinned(s, 0, ["num_blocks=4", "block=residual", "batchnorm=true",
                                                "lr=0.001", "max_epochs=2"])
    assert {k: params[k] for k in ("num_blocks", "block", "batchnorm", "lr")} == {
        "num_blocks": 4, "block": "residual", "batchnorm": True, "lr": 0.001}
    assert fixed == {"max_epochs": 2}
    for bad, match in [("num_blocks=four", "expected an integer"), ("block=dense", "not one of"),
                       ("num_blocks=9", r"outside the range \[1, 6\]"),
                       ("colour=red", "unknown parameter"), ("novalue", "key=value")]:
        with pytest.raises(UserError, match=match):
            spaces.sample_pinned(s, 0, [bad])


def test_pins_are_checked_against_the_ranges_the_other_pins_give():
    s = spaces.load("cnn_emnist")
    # 6 blocks leave room for at most 4 halvings: downsampling after every block is refused
    with pytest.raises(UserError, match=r"downsample_every: 1 is outside the range \[2, 3\]"):
        spaces.sample_pinned(s, 0, ["num_blocks=6", "downsample_every=1"])
    params, _ = spaces.sample_pinned(s, 0, ["num_blocks=6", "downsample_every=2"])
    assert (params["num_blocks"], params["downsample_every"]) == (6, 2)
    # alone, downsample_every=1 is fine: the unpinned block count is drawn to suit it
    for seed in range(5):
        params, _ = spaces.sample_pinned(s, seed, ["downsample_every=1"])
        assert params["downsample_every"] == 1 and params["num_blocks"] <= 4


def test_conditional_pin_picks_a_sample_that_searches_it():
    s = spaces.load("resnet_emnist")
    # lr is only searched without the one-cycle schedule: pinning it picks such a sample
    params, fixed = spaces.sample_pinned(s, 0, ["lr=0.005"])
    assert params["lr"] == 0.005 and params["one_cycle_max_lr"] == 0.0 and fixed == {}
    for seed in range(20):
        params, dists = spaces.sample(s, seed=seed)
        assert ("lr" in dists) == (params["one_cycle_max_lr"] == 0.0)


def test_cnn_emnist_offers_both_blocks_the_same_widths():
    s = spaces.load("cnn_emnist")
    for block in ("plain", "residual"):
        _, dists = spaces.sample(s, 0, pinned={"block": block})
        assert (dists["conv_dim"].low, dists["conv_dim"].high) == (16, 96)


def test_answering_trial_checks_given_values_against_conditional_ranges():
    """Warm start's use: an old trial's values, each kept only where the new range takes it."""
    s = spaces.load("cnn_emnist")
    old = {"num_blocks": 6, "downsample_every": 1, "block": "residual", "batchnorm": 1,
           "dropout": 0.25, "lr": 3e-3, "colour": "red"}
    replay = spaces.AnsweringTrial(old)
    s.space(replay)
    # 6 blocks narrow downsample_every to [2, 3]; batchnorm's 1 is not the choice True;
    # dropout 0.25 is off its 0.1 step
    assert replay.dropped == ["batchnorm", "downsample_every", "dropout"]
    assert replay.params == {"num_blocks": 6, "block": "residual", "lr": 3e-3}
    assert set(replay.distributions) == set(replay.params)
    assert (replay.distributions["num_blocks"].low, replay.distributions["num_blocks"].high) == (1, 6)
    assert "colour" not in replay.asked and {"conv_dim", "fc_dim", "batch_size"} <= replay.asked
    with pytest.raises(AttributeError, match="suggest_"):
        replay.set_user_attr("a", 1)


def test_answering_trial_with_a_trial_draws_the_rest_and_strict_refuses():
    import optuna

    s = spaces.load("cnn_emnist")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    pinned = spaces.AnsweringTrial({"num_blocks": 5}, study.ask(), strict=True)
    s.space(pinned)
    assert pinned.params["num_blocks"] == 5 and pinned.dropped == []
    assert pinned.params["downsample_every"] in (2, 3)  # drawn from the range 5 blocks give
    assert set(pinned.params) == set(pinned.distributions) == pinned.asked
    strict = spaces.AnsweringTrial({"num_blocks": 5, "downsample_every": 1}, study.ask(),
                                   strict=True)
    with pytest.raises(spaces.AnswerOutOfRange) as err:
        s.space(strict)
    assert (err.value.name, err.value.value) == ("downsample_every", 1)
    assert (err.value.distribution.low, err.value.distribution.high) == (2, 3)


@pytest.mark.parametrize("value,kind,args,inside", [
    (3, "int", (1, 6), True), (7, "int", (1, 6), False), (3.0, "int", (1, 6), True),
    (3.5, "int", (1, 6), False), (True, "int", (0, 6), False), (4, "int", (0, 8, 2), True),
    (3, "int", (0, 8, 2), False), (0.3, "float", (0.0, 0.5, 0.1), True),
    (0.25, "float", (0.0, 0.5, 0.1), False), (0.25, "float", (0.0, 0.5), True),
    ("0.3", "float", (0.0, 0.5), False), ("plain", "cat", ["plain", "residual"], True),
    ("dense", "cat", ["plain", "residual"], False), (1, "cat", [True, False], False),
    (True, "cat", [True, False], True), (64, "cat", [64, 128], True),
])
def test_in_distribution(value, kind, args, inside):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if kind == "cat":
        dist = CategoricalDistribution(args)
    else:
        low, high, *step = args
        cls = IntDistribution if kind == "int" else FloatDistribution
        dist = cls(low, high, step=step[0] if step else (1 if kind == "int" else None))
    assert spaces.in_distribution(value, dist) is inside
