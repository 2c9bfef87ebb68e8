"""The LightningDataModule that serves any registered task from its cached splits."""

from __future__ import annotations

from pathlib import Path

import datasets
import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from stm_lab.data.cache import SPLITS, materialise
from stm_lab.errors import ConfigError
from stm_lab.tasks import Task, TaskSpec


def module_keys() -> list[str]:
    """The keys of the ``data`` config that belong to the data module; every other key (but
    ``task``) is a parameter of the task. Read from the constructor: one source."""
    import inspect

    skip = {"self", "task", "seed", "cache_dir"}
    return [n for n in inspect.signature(MemoryDataModule.__init__).parameters if n not in skip]


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
                 on_device: bool, seed: int, cache_dir: str | Path | None) -> None:
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
    def spec(self) -> TaskSpec:
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

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        """A split's arrays (host copies), e.g. for the baselines."""
        return {k: v.cpu().numpy() for k, v in self.tensors(split).items()}

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
