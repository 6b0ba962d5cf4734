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
    assert {"num_blocks", "block", "batchnorm", "downsample", "num_workers", "conv_dim",
            "fc_dim", "dropout", "lr", "batch_size"} <= set(dists)
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
    pins = spaces.parse_pins(["num_blocks=4", "block=residual", "batchnorm=true", "lr=0.001",
                              "max_epochs=2"], s)
    assert pins == {"num_blocks": 4, "block": "residual", "batchnorm": True, "lr": 0.001,
                    "max_epochs": 2}
    params, _ = spaces.sample(s, seed=0, pinned=pins)
    assert params["num_blocks"] == 4 and params["block"] == "residual"
    for bad, match in [("num_blocks=four", "expected an integer"), ("block=dense", "not one of"),
                       ("num_blocks=9", "outside the space's range"), ("colour=red", "unknown parameter"),
                       ("novalue", "key=value")]:
        with pytest.raises(UserError, match=match):
            spaces.parse_pins([bad], s)
