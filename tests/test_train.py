"""``python -m textsearch.train`` as a user runs it."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from tests.conftest import cpu_flags, run_cli, run_main
from textsearch.config import TrainConfig
from textsearch.train import main as train_main
from textsearch.training import CONFIG_FILE

# what --precision auto must give on this machine, from the CPU's own flags read here: native
# bf16 arithmetic (AVX512-BF16 or AMX) gives bf16-mixed, any other CPU 32
AUTO_PRECISION_HERE = "bf16-mixed" if {"avx512_bf16", "amx_bf16"} & cpu_flags() else "32"


def test_train_cli_prints_val_and_test_accuracy(tmp_path):
    proc = run_cli("textsearch.train", "--model_class", "CNN", "--data_class", "EMNIST",
                   "--max_epochs", "2", "--num_blocks", "2", "--block", "residual", "--batchnorm",
                   "--downsample", "stride", "--conv_dim", "8", "--fc_dim", "32",
                   "--batch_size", "32", "--no-balance", "--runs_dir", str(tmp_path),
                   "--name", "r1")
    assert proc.returncode == 0, proc.stderr
    # stderr is a pipe here: no bar redrawn with carriage returns, one plain line per epoch
    assert "\r" not in proc.stderr + proc.stdout and "it/s" not in proc.stderr
    epochs = [line for line in proc.stderr.splitlines() if re.match(r"epoch \d/2: ", line)]
    assert [e.split(":")[0] for e in epochs] == ["epoch 1/2", "epoch 2/2"], proc.stderr
    assert all("val_acc" in e for e in epochs)
    val = float(re.search(r"val_acc: ([0-9.]+)", proc.stdout).group(1))
    test = float(re.search(r"test_acc: ([0-9.]+)", proc.stdout).group(1))
    assert val > 0.3 and test > 0.3
    assert (tmp_path / "r1" / "checkpoints" / "best.ckpt").exists()
    assert f"tensorboard --logdir {tmp_path / 'r1'}" in proc.stdout


def test_train_cli_writes_the_config_it_ran(tmp_path, capsys):
    code, err = run_main(train_main, ["--model_class", "MLP", "--fc1", "16", "--fc2", "8",
                                      "--lr", "0.003", "--no-balance", "--max_epochs", "1",
                                      "--limit_train_batches", "2", "--limit_val_batches", "1",
                                      "--batch_size", "16", "--runs_dir", str(tmp_path),
                                      "--name", "c", "--no_progress_bar"], capsys)
    assert code == 0, err
    given = TrainConfig(model_class="MLP", fc1=16, fc2=8, lr=0.003, balance=False, max_epochs=1,
                        limit_train_batches=2, limit_val_batches=1, batch_size=16)
    written = json.loads((tmp_path / "c" / CONFIG_FILE).read_text())
    # precision: what Lightning ran, the default auto resolved for this machine's CPU
    ran = dataclasses.replace(given, precision=AUTO_PRECISION_HERE)
    assert written == ran.to_dict()
    assert TrainConfig.from_dict(written) == ran


BAD = [
    (["--model_class", "Transformer"], "invalid choice: 'Transformer'"),
    (["--data_class", ""], "must not be empty"),
    (["--max_epochs", "zero"], "expected a positive integer"),
    (["--max_epochs", "0"], "must be > 0"),
    (["--max_epochs", ""], "expected a positive integer"),
    (["--batch_size", "-4"], "must be > 0"),
    (["--lr", "fast"], "expected a positive number"),
    (["--lr", "nan"], "finite"),
    (["--num_workers", "-1"], "must be >= 0"),
    (["--gpus", "64"], "GPU"),  # more than any machine here: "no usable GPU" or "only N"
    (["--num_blocks", "9"], "num_blocks must be between 1 and 6"),
    (["--num_blocks", "6", "--downsample_every", "1"], "impossible architecture"),
    (["--block", "dense"], "invalid choice"),
    (["--overfit_batches", "-1"], "must be >= 0"),
    (["--data_fraction", "1.5"], "fraction in (0, 1]"),
    (["--runs_dir", ""], "must not be empty"),
    (["--precision", "16-mixed", "--gpus", "0"], "16-mixed needs a GPU"),
    (["--precision", "8"], "invalid choice: '8'"),
    (["--fast_dev_run", "many"], "expected an integer >= 0"),
    (["--unknown_flag", "1"], "unrecognized arguments"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message, capsys):
    extra = [] if "--runs_dir" in args else ["--runs_dir", str(tmp_path / "runs")]
    extra += [] if "--max_epochs" in args else ["--max_epochs", "1"]
    code, err = run_main(train_main, [*args, *extra], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bad_input_from_a_real_process_is_one_line(tmp_path):
    proc = run_cli("textsearch.train", "--max_epochs", "0", "--runs_dir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("textsearch.train: error: argument --max_epochs/--max-epochs: "
                                   "must be > 0, got 0")


def test_fast_dev_run_alone_means_one_batch(tmp_path, capsys):
    from textsearch import tune as tune_cli
    from textsearch.train import build_parser

    assert build_parser().parse_args(["--fast_dev_run"]).fast_dev_run == 1
    assert build_parser().parse_args(["--fast_dev_run", "3"]).fast_dev_run == 3
    assert build_parser().parse_args([]).fast_dev_run == 0
    tune_parser = tune_cli.build_parser()
    assert tune_parser.parse_args(["--space", "smoke", "--fast_dev_run"]).fast_dev_run == 1
    assert tune_parser.parse_args(["--space", "smoke", "--fast-dev-run", "2"]).fast_dev_run == 2
    code, err = run_main(train_main, ["--fast_dev_run", "--conv_dim", "8", "--batch_size", "16",
                                      "--runs_dir", str(tmp_path), "--name", "f",
                                      "--no_progress_bar"], capsys)
    assert code == 0, err


def test_flags_and_pin_checks_come_from_the_config_options():
    """Each option is declared once (its dataclass); the flag and the --set check follow."""
    from textsearch import spaces
    from textsearch.errors import UserError
    from textsearch.options import options_of
    from textsearch.train import build_parser
    from textsearch.training import TrainConfig

    actions = {a.dest: a for a in build_parser()._actions}
    options = options_of(TrainConfig)
    assert {f.name for f in options} <= set(actions)
    for f in options:
        assert actions[f.name].help.startswith(f.metadata["help"][:30])
        if f.metadata["choices"] is not None:
            assert list(actions[f.name].choices) == f.metadata["choices"]
    smoke = spaces.load("smoke")
    for pin, message in (("max_epochs=0", "max_epochs must be > 0"),
                         ("precision=8", "precision must be one of auto, 32, 16-mixed, bf16-mixed"),
                         ("data_fraction=2", "data_fraction must be a fraction in (0, 1]")):
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")
                           .replace("[", r"\[").replace("]", r"\]")):
            spaces.sample_pinned(smoke, 0, [pin])
