"""The training function: real Lightning fits on tiny synthetic EMNIST."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import subprocess
import sys

import pytest
import torch
from pytorch_lightning.callbacks import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import cpu_flags
from textsearch.errors import UserError
from textsearch.training import (
    EpochLines,
    TrainConfig,
    evaluate_checkpoint,
    make_datamodule,
    make_lit_model,
    model_from_checkpoint,
    train,
)

# what --precision auto must give on this machine, from the CPU's own flags read here: native
# bf16 arithmetic (AVX512-BF16 or AMX) gives bf16-mixed, any other CPU 32
AUTO_PRECISION_HERE = "bf16-mixed" if {"avx512_bf16", "amx_bf16"} & cpu_flags() else "32"


class Spy(Callback):
    """Records what Lightning was really given and fed."""

    def __init__(self) -> None:
        self.seen: dict = {}
        self.train_y: list = []
        self.val_y: list = []

    def on_fit_start(self, trainer, pl_module) -> None:
        self.seen = {"precision": trainer.precision, "device": str(trainer.strategy.root_device),
                     "fast_dev_run": trainer.fast_dev_run}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.train_y.append(batch[1].tolist())

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.val_y.append(batch[1].tolist())


def tiny(**kw) -> TrainConfig:
    base = dict(model_class="CNN", data_class="EMNIST", max_epochs=1, batch_size=32,
                conv_dim=8, fc_dim=32, dropout=0.0, balance=False, lr=3e-3)
    return TrainConfig(**{**base, **kw})


def test_overfitting_two_batches_reaches_high_train_accuracy(tmp_path):
    cfg = tiny(overfit_batches=2, max_epochs=25, num_blocks=2, block="residual", batchnorm=True,
               downsample="stride")
    result = train(cfg, tmp_path / "run", test=False, enable_progress_bar=False)
    assert result.metrics["train_acc"] >= 0.95
    assert result.metrics["train_loss"] < 0.3


def test_short_fit_learns_tests_best_checkpoint_and_logs(tmp_path):
    result = train(tiny(max_epochs=3), tmp_path / "run", enable_progress_bar=False)
    assert result.test_acc is not None and result.test_acc > 0.5  # chance is 0.1
    assert result.best_checkpoint and result.best_checkpoint.endswith("best.ckpt")
    again = evaluate_checkpoint(result.best_checkpoint)  # the config comes from the checkpoint
    assert again["test_acc"] == pytest.approx(result.test_acc, abs=1e-6)
    ea = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"train_loss", "val_loss", "val_acc", "test_acc", "train_samples_per_s", "epoch_s"} <= tags
    assert len(ea.Scalars("val_acc")) == 3
    assert ea.Scalars("train_samples_per_s")[0].value > 0
    content = ea.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(content)


def test_progress_as_plain_lines_for_a_log(tmp_path):
    """In a log: a line per batch once ``every_s`` has passed (0 here: every batch), and a
    line per epoch with the validation figures TensorBoard holds for it."""
    out = io.StringIO()
    train(tiny(max_epochs=2, limit_train_batches=3), tmp_path / "run", test=False,
          enable_progress_bar=False, callbacks=[EpochLines(every_s=0, out=out)])
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    batches = [re.sub(r" \(\d+ s\)$", "", line) for line in lines if ": batch " in line]
    assert batches == [f"epoch {e}/2: batch {b}/3" for e in (1, 2) for b in (1, 2, 3)]
    ends = [line for line in lines if ": batch " not in line]
    assert [line.split(":")[0] for line in ends] == ["epoch 1/2", "epoch 2/2"]
    ea = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    ea.Reload()
    for line, event in zip(ends, ea.Scalars("val_acc")):
        shown = float(re.search(r"val_acc ([0-9.e-]+)", line).group(1))
        assert shown == pytest.approx(event.value, rel=1e-3)  # printed to 4 digits


def test_checkpoint_alone_rebuilds_its_model(tmp_path):
    cfg = tiny(num_blocks=2, block="residual", batchnorm=True, limit_train_batches=3)
    result = train(cfg, tmp_path / "run", test=False, enable_progress_bar=False)
    loaded_cfg, lit = model_from_checkpoint(result.best_checkpoint)
    # the config it ran: precision as Lightning ran it (auto resolved for this CPU)
    assert loaded_cfg == dataclasses.replace(cfg, precision=AUTO_PRECISION_HERE)
    bundle = make_datamodule(cfg).get_bundle()
    assert lit.data_info == {"input_dims": [1, 28, 28], "num_classes": 83,
                             "mapping": bundle.mapping}
    # the same outputs as the model built from the config and data by hand
    by_hand = make_lit_model(cfg, bundle)
    by_hand.load_state_dict(torch.load(result.best_checkpoint, weights_only=True)["state_dict"])
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = lit(x)
        torch.testing.assert_close(out, by_hand.eval()(x), rtol=0, atol=0)
        assert not torch.allclose(out, make_lit_model(cfg, bundle).eval()(x))  # trained weights
    # the data can be handed over in memory, or read from the cache its config names
    on_val = evaluate_checkpoint(result.best_checkpoint, bundle, split="val")
    assert on_val == evaluate_checkpoint(result.best_checkpoint, split="val")
    assert on_val["val_acc"] == pytest.approx(result.metrics["best_val_acc"], abs=1e-6)


def test_missing_damaged_and_foreign_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        model_from_checkpoint(tmp_path / "nope.ckpt")
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        model_from_checkpoint(damaged)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "epoch": 3}, foreign)
    with pytest.raises(UserError, match="not a textsearch checkpoint"):
        model_from_checkpoint(foreign)
    with pytest.raises(UserError, match="not a textsearch checkpoint"):
        evaluate_checkpoint(foreign)


def test_overfit_batches_validates_on_the_batches_it_overfits(tmp_path):
    spy = Spy()
    train(tiny(overfit_batches=2, max_epochs=2), tmp_path / "run", test=False,
          enable_progress_bar=False, callbacks=[spy])
    assert len(spy.train_y) == 4 and spy.train_y[:2] == spy.train_y[2:]  # same 2, every epoch
    assert spy.val_y == spy.train_y  # as Lightning's overfit_batches does


def test_fast_dev_run_and_precision_reach_lightning(tmp_path):
    spy = Spy()
    train(tiny(fast_dev_run=1, precision="bf16-mixed"), tmp_path / "run", enable_progress_bar=False,
          callbacks=[spy])
    assert spy.seen == {"precision": "bf16-mixed", "device": "cpu", "fast_dev_run": 1}
    assert len(spy.train_y) == 1 and len(spy.val_y) == 1
    with pytest.raises(UserError, match="16-mixed needs a GPU"):
        train(tiny(precision="16-mixed"), tmp_path / "r2", enable_progress_bar=False)
    with pytest.raises(UserError, match="precision must be one of"):
        train(tiny(precision="8"), tmp_path / "r3", enable_progress_bar=False)


def test_training_order_follows_the_run_seed(tmp_path):
    orders = []
    for seed in (0, 0, 1):
        spy = Spy()
        train(tiny(seed=seed, limit_train_batches=3, limit_val_batches=1), tmp_path / f"s{len(orders)}",
              test=False, enable_progress_bar=False, callbacks=[spy])
        orders.append(spy.train_y)
    assert orders[0] == orders[1] != orders[2]


def test_mlp_trains(tmp_path):
    result = train(tiny(model_class="MLP", fc1=64, fc2=32, max_epochs=2), tmp_path / "r",
                   enable_progress_bar=False)
    assert result.test_acc > 0.3


class LearningRates(Callback):
    """The learning rate the optimizer really held at each training batch."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_one_cycle_schedule_rises_to_its_peak_then_falls(tmp_path):
    seen = LearningRates()
    result = train(tiny(one_cycle_max_lr=0.01, max_epochs=2), tmp_path / "r", test=False,
                   enable_progress_bar=False, callbacks=[seen])
    assert result.epochs == 2
    lrs = seen.lrs
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    # OneCycleLR's defaults: start at max_lr / 25, peak at max_lr after 30% of the steps,
    # end far below the start
    assert lrs[0] == pytest.approx(0.01 / 25, rel=1e-6)
    assert lrs[peak] == pytest.approx(0.01, rel=0.05)
    assert 0.2 * len(lrs) <= peak <= 0.4 * len(lrs)
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))
    assert lrs[-1] < lrs[0] / 10


def test_without_one_cycle_the_learning_rate_stays(tmp_path):
    seen = LearningRates()
    train(tiny(max_epochs=1, lr=3e-3), tmp_path / "r", test=False, enable_progress_bar=False,
          callbacks=[seen])
    assert seen.lrs and set(seen.lrs) == {3e-3}


@pytest.mark.parametrize("kw,match", [
    ({"model_class": "Transformer"}, "model_class must be one of MLP, CNN, LineCNN, got 'Transformer'"),
    ({"data_class": "IAM"}, "data_class must be one of EMNIST, MNIST"),
    ({"gpus": 64}, "GPU"),  # more than any machine has
    ({"batch_size": 0}, "batch_size must be > 0, got 0"),
    ({"max_epochs": -1}, "max_epochs"),
    ({"num_blocks": 6, "downsample_every": 1}, "impossible architecture"),
    ({"data_class": "EMNISTLines"}, "single characters"),
])
def test_bad_configs_are_refused_before_anything_is_written(tmp_path, kw, match):
    import torch

    if kw.get("gpus") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match=match):
        train(tiny(**kw), tmp_path / "run", enable_progress_bar=False)
    assert not (tmp_path / "run").exists()


def test_config_from_dict_checks_names_and_types():
    cfg = TrainConfig.from_dict({"num_blocks": 3.0, "lr": 1, "batchnorm": "true"})
    assert cfg.num_blocks == 3 and cfg.lr == 1.0 and cfg.batchnorm is True
    with pytest.raises(UserError, match="unknown config key 'num_blocksss'"):
        TrainConfig.from_dict({"num_blocksss": 3})
    with pytest.raises(UserError, match="num_blocks must be of type int"):
        TrainConfig.from_dict({"num_blocks": "three"})


def test_real_emnist_sample_beats_chance_by_far(shared_root, monkeypatch, tmp_path):
    """Integration: the real EMNIST ByClass sample, a slice of it, a real (short) fit."""
    monkeypatch.setenv("TEXTSEARCH_DATA_DIR", str(shared_root))
    cfg = TrainConfig(model_class="CNN", data_class="EMNIST", max_epochs=1, batch_size=64,
                      num_blocks=2, block="residual", batchnorm=True, downsample="stride",
                      conv_dim=16, fc_dim=64, dropout=0.1, lr=3e-3, data_fraction=0.15,
                      limit_val_batches=20)
    result = train(cfg, tmp_path / "real", enable_progress_bar=False)
    # 62 balanced classes: chance is under 2%
    assert result.test_acc > 0.4, result.metrics


FLAGS_WITH = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni\n"
FLAGS_AMX = "flags\t\t: fpu avx512f amx_tile amx_bf16\n"
FLAGS_WITHOUT = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    from textsearch.devices import cpu_has_native_bf16

    assert cpu_has_native_bf16(FLAGS_WITH) and cpu_has_native_bf16(FLAGS_AMX)
    assert not cpu_has_native_bf16(FLAGS_WITHOUT) and not cpu_has_native_bf16("")


def test_auto_precision_is_what_lightning_runs_and_what_is_recorded(tmp_path):
    """--precision auto: Lightning is given bf16-mixed on a CPU with native bf16 (this
    CPU's flags in /proc/cpuinfo), 32 elsewhere; config.json, the checkpoint's config
    and the HParams record what Lightning ran, not 'auto'."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from textsearch.training import ConfigFile, model_from_checkpoint

    expected = AUTO_PRECISION_HERE
    spy = Spy()
    cfg = tiny(precision="auto", limit_train_batches=2, limit_val_batches=1)
    result = train(cfg, tmp_path / "run", enable_progress_bar=False,
                   callbacks=[spy, ConfigFile(cfg, tmp_path / "run")])
    assert spy.seen["precision"] == ("32-true" if expected == "32" else expected)
    assert result.precision == expected
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == expected
    ran, _ = model_from_checkpoint(result.best_checkpoint)
    assert ran.precision == expected
    ea = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    ea.Reload()
    content = ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hp = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hp["precision"].string_value == expected


def test_lightning_info_lines_stay_quiet_when_lightning_is_imported_after_the_command_starts():
    """The search's driver quiets Lightning at its start and imports it only at the end, to
    test the best checkpoint: Lightning's import must not bring its info lines back."""
    code = ("from textsearch import cli; cli.quiet_library_logs()\n"
            "import logging, pytorch_lightning as pl\n"
            "pl.Trainer(accelerator='cpu', logger=False, enable_checkpointing=False)\n"
            "logging.getLogger('pytorch_lightning').warning('a warning still shows')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "a warning still shows" in out
    assert "GPU available" not in out and "Tip" not in out, out
