"""The LightningModule that wraps any model: loss, accuracy, optimizer, throughput.

Logged per epoch: ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` (and ``test_loss``,
``test_acc`` when testing), ``train_samples_per_s`` (training images per second of the
training loop, validation excluded) and ``epoch_s`` (wall seconds of the whole epoch).
A search's trials also report :meth:`LitModel.model_stats` (size and inference speed).
Line models (:class:`LineLitModel`) are trained with CTC and scored by character error rate.

Every checkpoint holds, besides Lightning's state, the full config the model was built from
(:data:`CONFIG_KEY`) and what it was built for (:data:`DATA_KEY`: input dims, number of
classes, the class mapping), so a checkpoint alone rebuilds its model
(:func:`textsearch.training.model_from_checkpoint`).
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
import torchmetrics
from torch import nn
from torchmetrics.text import CharErrorRate

from textsearch.models.ctc import BLANK, ctc_targets, greedy_decode, label_tokens, to_text

CONFIG_KEY = "textsearch_config"  # in a checkpoint: the TrainConfig dict of the run
DATA_KEY = "textsearch_data"  # in a checkpoint: input_dims, num_classes, mapping


class LitModel(pl.LightningModule):
    """lr: learning rate of Adam. one_cycle_max_lr: if set, a one-cycle schedule peaking there.

    config: the full config the model was built from (``TrainConfig.to_dict()``) and data:
    what it was built for (``input_dims``, ``num_classes``, ``mapping``); both are saved in
    every checkpoint, unchanged.
    """

    def __init__(self, model: nn.Module, num_classes: int, lr: float = 1e-3,
                 one_cycle_max_lr: float | None = None, weight_decay: float = 0.0,
                 config: dict[str, Any] | None = None, data: dict[str, Any] | None = None):
        super().__init__()
        self.model = model
        self.run_config = config
        self.data_info = data
        self.lr = lr
        self.one_cycle_max_lr = one_cycle_max_lr
        self.weight_decay = weight_decay
        self.loss_fn = nn.CrossEntropyLoss()
        kw = {"task": "multiclass", "num_classes": num_classes}
        self.train_acc = torchmetrics.Accuracy(**kw)
        self.val_acc = torchmetrics.Accuracy(**kw)
        self.test_acc = torchmetrics.Accuracy(**kw)
        self._epoch_start = self._last_batch_end = time.perf_counter()
        self._epoch_samples = 0
        self._model_stats: dict[str, float] | None = None
        self.first_batch_at: float | None = None  # wall clock (Unix s) of this run's first batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch, stage: str, metric: torchmetrics.Metric) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        metric(logits.detach(), y)
        on_step = False
        self.log(f"{stage}_loss", loss, on_step=on_step, on_epoch=True, prog_bar=stage != "train",
                 batch_size=len(y))
        self.log(f"{stage}_acc", metric, on_step=on_step, on_epoch=True, prog_bar=True,
                 batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        self._epoch_samples += len(batch[1])
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test", self.test_acc)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint[CONFIG_KEY] = dict(self.run_config)
        if self.data_info is not None:
            checkpoint[DATA_KEY] = dict(self.data_info)

    # -- throughput ---------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self._epoch_start = self._last_batch_end = time.perf_counter()
        self._epoch_samples = 0

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.first_batch_at is None:
            self.first_batch_at = time.time()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self._last_batch_end = time.perf_counter()

    def compute_epoch_stats(self) -> dict[str, float]:
        """Samples/s of this epoch's training loop and the epoch's seconds so far."""
        now = time.perf_counter()
        train_s = max(self._last_batch_end - self._epoch_start, 1e-9)
        return {
            "train_samples_per_s": self._epoch_samples / train_s,
            "epoch_s": now - self._epoch_start,
            # wall clock (Unix s): the run's first batch, and this epoch's end (the search's
            # start-up, the gaps between trials and its wrap-up are read from these)
            "first_batch_at": self.first_batch_at or time.time(),
            "epoch_end_at": time.time(),
        }

    def on_train_epoch_end(self) -> None:
        stats = self.compute_epoch_stats()
        if self.logger is not None:
            self.logger.log_metrics({k: stats[k] for k in ("train_samples_per_s", "epoch_s")},
                                    step=self.global_step)

    # -- size and speed -----------------------------------------------------------------
    INFER_BATCH = 256

    def model_stats(self, input_dims: tuple[int, ...]) -> dict[str, float]:
        """``params`` (parameter count) and ``infer_ms_per_image``, measured once per run.

        Inference: a batch of 256 images in eval and inference mode on the model's device,
        the median of 3 timed passes after one warm-up pass.
        """
        if self._model_stats is None:
            was_training = self.training
            x = torch.zeros(self.INFER_BATCH, *input_dims, device=self.device)
            times = []
            self.eval()
            with torch.inference_mode():
                for i in range(4):
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    start = time.perf_counter()
                    self(x)
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    if i:
                        times.append(time.perf_counter() - start)
            self.train(was_training)
            self._model_stats = {
                "params": float(sum(p.numel() for p in self.model.parameters())),
                "infer_ms_per_image": 1000 * sorted(times)[1] / self.INFER_BATCH,
            }
        return self._model_stats

    # -- optimisation -------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if not self.one_cycle_max_lr:
            return optimizer
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.one_cycle_max_lr,
            total_steps=int(self.trainer.estimated_stepping_batches),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class LineLitModel(LitModel):
    """A line model (``(B, C, T)`` scores) trained with CTC, read by greedy CTC decoding.

    Logged per epoch: ``train_loss``, ``val_loss``, ``val_cer`` (character error rate: the
    edit distance between the decoded and the true text over the true text's length, summed
    over the split, by torchmetrics' ``CharErrorRate``) and ``val_line_acc`` (the share of
    lines read exactly); when testing, ``test_cer`` and ``test_line_acc``.
    """

    INFER_BATCH = 32  # lines are 32 characters wide: as many characters as 1024 images

    def __init__(self, model: nn.Module, num_classes: int, mapping: list[str], **kwargs: Any):
        super().__init__(model, num_classes, **kwargs)
        self.mapping = list(mapping)
        self.ctc = nn.CTCLoss(blank=BLANK)
        self.val_cer, self.test_cer = CharErrorRate(), CharErrorRate()
        self.val_line_acc, self.test_line_acc = torchmetrics.MeanMetric(), torchmetrics.MeanMetric()

    def _line_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        scores = self(x)  # (B, C, T)
        log_probs = scores.float().log_softmax(dim=1).permute(2, 0, 1)  # (T, B, C)
        targets, target_lengths = ctc_targets(y)
        input_lengths = torch.full((len(y),), log_probs.shape[0], dtype=torch.long)
        loss = self.ctc(log_probs, targets, input_lengths, target_lengths)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "train",
                 batch_size=len(y))
        if stage != "train":
            read = [to_text(t, self.mapping) for t in greedy_decode(scores.detach())]
            truth = [to_text(t, self.mapping) for t in label_tokens(y)]
            cer, line_acc = getattr(self, f"{stage}_cer"), getattr(self, f"{stage}_line_acc")
            cer(read, truth)
            line_acc(torch.tensor([float(r == t) for r, t in zip(read, truth)]))
            self.log(f"{stage}_cer", cer, on_step=False, on_epoch=True, prog_bar=True,
                     batch_size=len(y))
            self.log(f"{stage}_line_acc", line_acc, on_step=False, on_epoch=True,
                     batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        self._epoch_samples += len(batch[1])
        return self._line_step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._line_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._line_step(batch, "test")
