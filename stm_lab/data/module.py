"""The LightningDataModule that serves any registered task: held-out evaluation splits, and a
training split that is fixed (materialised once, cached) or fresh (new sequences every epoch)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import datasets
import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from stm_lab.data.cache import SPLITS, materialise
from stm_lab.data.items import draw_excluding, item_keys, overlap
from stm_lab.errors import ConfigError
from stm_lab.tasks import Task, TaskSpec
from stm_lab.tasks.spec import Arrays, split_rng

Regime = Literal["fixed", "fresh"]
_FRESH = 1  # the fresh regime's seed streams: [seed, train, _FRESH, epoch], apart from the fixed one


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


class _EpochBatches(BatchSampler):
    """Batches in order over data that are redrawn at each epoch: Lightning calls ``set_epoch``
    on the loader's sampler at the start of every training epoch (and after a resume)."""

    def __init__(self, data: _Batches, module: MemoryDataModule, batch_size: int) -> None:
        super().__init__(SequentialSampler(data), batch_size, drop_last=False)
        self.data, self.module = data, module

    def set_epoch(self, epoch: int) -> None:
        self.data.tensors = self.module.fresh_tensors(epoch)


class MemoryDataModule(pl.LightningDataModule):
    """Train/val/test splits of one task. Validation and test are materialised once and cached;
    for a generated task their items never occur in training (docs/tasks.md, "Data")."""

    def __init__(self, task: Task, n_train: int, n_val: int, n_test: int, batch_size: int,
                 on_device: bool, regime: Regime, seed: int, cache_dir: str | Path | None) -> None:
        super().__init__()
        for key, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test),
                           ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"data.{key}", value, "an integer >= 1")
        if not isinstance(on_device, bool):
            raise ConfigError("data.on_device", on_device, [True, False])
        if regime not in ("fixed", "fresh"):
            raise ConfigError("data.regime", regime, ["fixed", "fresh"])
        if regime == "fresh" and not task.held_out:
            raise ConfigError("data.regime", regime, ["fixed"],
                              hint=f"{task.name or type(task).__name__} holds no evaluation items out of training "
                                   "(a fixed dataset, or a task that tests what it trains on): it has one fixed "
                                   "training set")
        self.task, self.seed, self.cache_dir, self.regime = task, seed, cache_dir, regime
        self.data_seed = task.draw_seed(seed)  # the run's seed, unless the task fixes its data
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.batch_size, self.on_device = batch_size, on_device
        self._tensors: dict[str, dict[str, torch.Tensor]] = {}
        self._held_out = np.zeros(0, dtype=np.uint64)  # the items of val and test
        self._epoch: tuple[int, dict[str, torch.Tensor]] | None = None

    @property
    def spec(self) -> TaskSpec:
        return self.task.spec

    # ------------------------------------------------------------------------------- splits

    def _split(self, split: str, exclude: np.ndarray | None) -> dict[str, torch.Tensor]:
        n = self.sizes[split]
        if not self.task.held_out:
            ds = materialise(self.task, split, n, self.seed, self.cache_dir)
        else:
            digest = hashlib.sha256(np.sort(exclude).tobytes()).hexdigest()[:16] if exclude is not None else None
            ds = materialise(self.task, split, n, self.seed, self.cache_dir,
                             make=lambda: draw_excluding(self.task, n, split_rng(self.data_seed, split), exclude, split),
                             extra={"held_out": digest} if digest else None)
        return {k: torch.from_numpy(v) for k, v in ds.with_format("numpy")[:].items()}

    def setup(self, stage: str | None = None) -> None:
        if self._tensors:
            return
        datasets.disable_progress_bars()
        # Test first, then validation without the test items, then training without either.
        self._tensors["test"] = self._split("test", None)
        test_keys = item_keys(self.arrays("test"))
        self._tensors["val"] = self._split("val", test_keys if self.task.held_out else None)
        self._held_out = np.union1d(test_keys, item_keys(self.arrays("val")))
        if self.regime == "fixed":
            self._tensors["train"] = self._split("train", self._held_out if self.task.held_out else None)
        else:
            self._tensors["train"] = self.fresh_tensors(0)

    def fresh_tensors(self, epoch: int) -> dict[str, torch.Tensor]:
        """Epoch ``epoch``'s training sequences in the fresh regime: drawn from their own seed
        stream, none of them a validation or test item. The last epoch's are kept."""
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng(np.random.SeedSequence([self.data_seed, SPLITS.index("train"), _FRESH, epoch]))
            arrays = draw_excluding(self.task, self.sizes["train"], rng, self._held_out, "train")
            device = self._device()
            self._epoch = (epoch, {k: torch.from_numpy(v).to(device) for k, v in arrays.items()})
        return self._epoch[1]

    def tensors(self, split: str) -> dict[str, torch.Tensor]:
        self.setup()
        return self._tensors[split]

    def arrays(self, split: str) -> Arrays:
        """A split's arrays (host copies), e.g. for the baselines. Fresh training: epoch 0's."""
        return {k: v.cpu().numpy() for k, v in (self._tensors[split] if split in self._tensors
                                                 else self.tensors(split)).items()}

    def report(self) -> dict[str, Any]:
        """What summary.json records about the data: the regime, whether evaluation items are held
        out of training, and the measured share of validation and test items that also occur in
        the training split (fresh: in epoch 0's draw; every epoch excludes them the same way). An
        item is a whole input, unless the task says otherwise (:meth:`Task.overlap_with_train`)."""
        train = self.arrays("train")
        keys = item_keys(train)

        def shared(split: str) -> float:
            arrays = self.arrays(split)
            own = self.task.overlap_with_train(train, arrays)  # a task whose item is not a sequence
            return overlap(item_keys(arrays), keys) if own is None else own

        return {"regime": self.regime, "held_out": self.task.held_out,
                "overlap_with_train": {s: shared(s) for s in ("val", "test")},
                "sizes": dict(self.sizes)}

    # -------------------------------------------------------------------------- loaders

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
        if split == "train" and self.regime == "fresh":
            sampler: BatchSampler = _EpochBatches(data, self, self.batch_size)
        else:
            # A seeded generator: the same seed gives the same batch order.
            order = RandomSampler(data, generator=torch.Generator().manual_seed(self.seed)) if shuffle \
                else SequentialSampler(data)
            sampler = BatchSampler(order, self.batch_size, drop_last=False)
        return DataLoader(data, sampler=sampler, batch_size=None, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
