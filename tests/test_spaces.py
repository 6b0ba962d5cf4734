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
