"""The DataModule base: uint8 arrays in memory, batches built by indexing.

The lab's datasets converted every image on its own (``PIL`` + ``ToTensor``).  Here a
dataset holds the whole split as one uint8 array and is indexed with a *list* of indices,
so one ``__getitem__`` call returns a whole batch; the DataLoader is driven by a
:class:`~torch.utils.data.BatchSampler`.  Batches travel as uint8 (4x less to copy) and
become float in ``[0, 1]`` on the device, in :meth:`BaseDataModule.on_after_batch_transfer`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, SequentialSampler

from textsearch import cli
from textsearch.config import DataConfig
from textsearch.data.bundle import DataBundle
from textsearch.errors import UserError, say_error


class BatchDataset(Dataset):
    """A split as views into shared arrays: ``x[indices]`` / ``y[indices]``.

    ``__getitem__`` takes a list (or array) of positions and returns a whole batch.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, indices: np.ndarray):
        self.x, self.y, self.indices = x, y, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, positions) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.indices[np.asarray(positions, dtype=np.int64)]
        # Fancy indexing copies just this batch; the arrays may be read-only (object store).
        return torch.from_numpy(self.x[rows]), torch.from_numpy(self.y[rows].astype(np.int64))


class EpochShuffleSampler(Sampler[int]):
    """A random order of ``range(n)`` drawn from ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every training epoch (on the DataLoader's
    sampler), so each epoch has its own order, and a run resumed at epoch k sees the
    same order it would have seen without the interruption.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


class EpochBatchSampler(BatchSampler):
    """A :class:`BatchSampler` that passes Lightning's ``set_epoch`` on to its sampler."""

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


def batch_loader(
    dataset: BatchDataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    pin_memory: bool = False,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader that fetches whole batches with one indexing call each.

    ``shuffle``: a new order every epoch, drawn from ``seed`` and the epoch number.
    """
    sampler = EpochShuffleSampler(len(dataset), seed) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        sampler=EpochBatchSampler(sampler, batch_size=batch_size, drop_last=False),
        batch_size=None,  # the sampler already yields batches
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


def uint8_to_float(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W) uint8 -> (B, 1, H, W) float32 in [0, 1]."""
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    return x.unsqueeze(1) if x.dim() == 3 else x


MIN_VAL = 1000  # validation examples kept when data_fraction shrinks the splits


class BaseDataModule(pl.LightningDataModule):
    """Base for every dataset: a subclass implements :meth:`load`."""

    name = "base"

    def __init__(self, config: DataConfig | None = None, bundle: DataBundle | None = None):
        super().__init__()
        self.config = config or DataConfig()
        self.bundle = bundle
        self.data_train: BatchDataset | None = None
        self.data_val: BatchDataset | None = None
        self.data_test: BatchDataset | None = None

    def load(self) -> DataBundle:
        """The data, prepared (downloaded, checked, cached) and in memory.  Each dataset's
        check of its cache reads every byte of it, so preparing and loading are one step."""
        raise NotImplementedError

    def prepare_data(self) -> None:
        """Prepare and load the data, unless it was handed over in memory or loaded already.

        Lightning calls this in every ``fit``: a search trial holds the driver's bundle and
        must never touch the disk of the node it runs on.
        """
        if self.bundle is None:
            self.bundle = self.load()

    def get_bundle(self) -> DataBundle:
        """The data in memory: handed over, or loaded once here."""
        self.prepare_data()
        return self.bundle

    @property
    def mapping(self) -> list[str]:
        return self.get_bundle().mapping

    @property
    def input_dims(self) -> tuple[int, ...]:
        return self.get_bundle().input_dims

    @property
    def output_dims(self) -> tuple[int, ...]:
        return self.get_bundle().output_dims

    def split_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Fixed-seed train/val split of the training file, then ``data_fraction`` of each."""
        n = len(self.get_bundle().y_trainval)
        perm = np.random.default_rng(self.config.split_seed).permutation(n)
        n_val = max(1, int(round(n * self.config.val_fraction)))
        val, train = perm[:n_val], perm[n_val:]
        f = self.config.data_fraction
        if f < 1.0:
            train = train[: max(1, int(round(len(train) * f)))]
            val = val[: max(min(len(val), MIN_VAL), int(round(len(val) * f)))]
        return np.sort(train), np.sort(val)

    def setup(self, stage: str | None = None) -> None:
        b = self.get_bundle()
        train, val = self.split_indices()
        self.data_train = BatchDataset(b.x_trainval, b.y_trainval, train)
        self.data_val = BatchDataset(b.x_trainval, b.y_trainval, val)
        self.data_test = BatchDataset(b.x_test, b.y_test, np.arange(len(b.y_test)))

    def _ensure_setup(self) -> None:
        if self.data_train is None:
            self.setup()

    def _loader(self, ds: BatchDataset, shuffle: bool) -> DataLoader:
        c = self.config
        return batch_loader(ds, c.batch_size, shuffle, c.num_workers, c.pin_memory, c.seed)

    def train_dataloader(self) -> DataLoader:
        self._ensure_setup()
        return self._loader(self.data_train, shuffle=not self.config.overfit)

    def val_dataloader(self) -> DataLoader:
        """The validation split; when overfitting, the training batches it overfits."""
        self._ensure_setup()
        data = self.data_train if self.config.overfit else self.data_val
        return self._loader(data, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        self._ensure_setup()
        return self._loader(self.data_test, shuffle=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        return uint8_to_float(x), y

    # -- summary ------------------------------------------------------------------------
    def summary(self) -> str:
        """Sizes, mapping and statistics of one training batch, as text."""
        self._ensure_setup()
        b = self.get_bundle()
        x, y = next(iter(batch_loader(self.data_train, self.config.batch_size, True, 0)))
        xf = uint8_to_float(x)
        lines = [
            f"{type(self).__name__} dataset",
            f"  train/val/test sizes: {len(self.data_train)}, {len(self.data_val)}, "
            f"{len(self.data_test)}",
            f"  input dims: {b.input_dims}   output dims: {b.output_dims}",
            f"  mapping ({len(b.mapping)} tokens): {''.join(m if len(m) == 1 else f' {m} ' for m in b.mapping)!r}",
            f"  memory: {b.nbytes / 2**20:.1f} MiB (uint8 images)",
            f"  batch x: {tuple(xf.shape)} {xf.dtype}  min {xf.min():.3f}  max {xf.max():.3f}  "
            f"mean {xf.mean():.3f}  std {xf.std():.3f}",
            f"  batch y: {tuple(y.shape)} {y.dtype}  min {int(y.min())}  max {int(y.max())}",
        ]
        return "\n".join(lines)


def summary_main(make: Callable[[], BaseDataModule], prog: str) -> int:
    """A dataset's ``python -m`` command: build ``make()``'s data if needed and print its
    summary.  Data that cannot be had is one line on stderr and exit code 2."""
    try:
        dm = make()
        dm.prepare_data()
        dm.setup()
    except UserError as err:
        return say_error(prog, err)
    print(dm.summary())
    return 0


def batch_size_parser(prog: str, description: str):
    """The parser of a dataset's ``python -m`` command: ``--batch_size`` of the summary."""
    parser = cli.Parser(prog=prog, description=description)
    parser.add_flag("batch_size", type=cli.positive_int, default=128,
                    help="examples per batch (default 128)")
    return parser
