"""The LightningDataModule that serves any registered task from its cached splits."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
import lightning.pytorch as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from stm_lab.data.cache import SPLITS, materialise
from stm_lab.errors import ConfigError
from stm_lab.tasks import TASKS, Task

# Keys of the ``data`` config that belong to the data module; every other key is a task parameter.
MODULE_KEYS = {
    "task": "registered task name",
    "n_train": "training sequences",
    "n_val": "validation sequences",
    "n_test": "test sequences",
    "batch_size": "sequences per batch",
    "on_device": "keep the splits on the training device (batches are then sliced there, not copied)",
}


def build_task(data_cfg: Mapping[str, Any]) -> Task:
    """The task named by ``data.task``, with the remaining non-module keys as its parameters."""
    cls = TASKS.get(data_cfg["task"])
    allowed = {f.name for f in dataclasses.fields(cls)}
    params = {k: v for k, v in data_cfg.items() if k not in MODULE_KEYS}
    for key in params:
        if key not in allowed:
            raise ConfigError(f"data.{key}", params[key],
                              sorted(allowed | set(MODULE_KEYS)),
                              hint=f"not a parameter of task {data_cfg['task']!r}")
    try:
        return cls(**params)
    except TypeError as e:  # e.g. a list where a number belongs
        raise ConfigError(f"data ({data_cfg['task']})", params, sorted(allowed), hint=str(e)) from e


class _Batches(Dataset):
    """Tensors indexed by a whole batch of indices at once (no per-item collate)."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, idx: list[int]) -> dict[str, torch.Tensor]:
        first = next(iter(self.tensors.values()))
        index = torch.as_tensor(idx, device=first.device)  # one conversion (and copy) per batch
        return {k: v[index] for k, v in self.tensors.items()}


class MemoryDataModule(pl.LightningDataModule):
    """Train/val/test splits of one task, drawn from disjoint seed streams and cached as datasets."""

    def __init__(self, task: Task, n_train: int, n_val: int, n_test: int, batch_size: int,
                 seed: int = 0, cache_dir: str | Path | None = None, on_device: bool = True) -> None:
        super().__init__()
        for key, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test),
                           ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"data.{key}", value, "an integer >= 1")
        if not isinstance(on_device, bool):
            raise ConfigError("data.on_device", on_device, [True, False])
        self.task, self.seed, self.cache_dir = task, seed, cache_dir
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.batch_size, self.on_device = batch_size, on_device
        self.splits: dict[str, datasets.Dataset] = {}
        self._tensors: dict[str, dict[str, torch.Tensor]] = {}

    @property
    def spec(self):
        return self.task.spec

    def setup(self, stage: str | None = None) -> None:
        if self._tensors:
            return
        datasets.disable_progress_bars()
        for split in SPLITS:
            ds = materialise(self.task, split, self.sizes[split], self.seed, self.cache_dir)
            self.splits[split] = ds
            self._tensors[split] = {k: torch.from_numpy(v) for k, v in ds.with_format("numpy")[:].items()}

    def tensors(self, split: str) -> dict[str, torch.Tensor]:
        self.setup()
        return self._tensors[split]

    def _device(self) -> torch.device:
        """Where batches are made: the trainer's device with ``on_device``, else the host."""
        trainer = getattr(self, "trainer", None)
        if self.on_device and trainer is not None:
            return trainer.strategy.root_device
        return torch.device("cpu")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        # The splits are small (sequences of tokens): resident on a GPU they cost no per-batch
        # host-to-device copy. On the CPU this is a no-op.
        device = self._device()
        data = _Batches({k: v.to(device) for k, v in self.tensors(split).items()})
        if shuffle:  # a seeded generator: the same seed gives the same batch order
            sampler = RandomSampler(data, generator=torch.Generator().manual_seed(self.seed))
        else:
            sampler = SequentialSampler(data)
        return DataLoader(data, sampler=BatchSampler(sampler, self.batch_size, drop_last=False),
                          batch_size=None, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
