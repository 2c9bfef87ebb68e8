"""Batches are sliced where the splits live: on the trainer's device with data.on_device."""

from types import SimpleNamespace

import pytest
import torch

from stm_lab.errors import ConfigError
from stm_lab.run import build_datamodule


@pytest.mark.parametrize("on_device,expected", [(True, "meta"), (False, "cpu")])
def test_batches_are_made_on_the_training_device(make_cfg, on_device, expected):
    dm = build_datamodule(make_cfg(f"data.on_device={on_device}"))
    dm.setup()
    # A stand-in trainer on the "meta" device: tensors there have shapes but no storage.
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")))
    batch = next(iter(dm.train_dataloader()))
    assert {v.device.type for v in batch.values()} == {expected}
    assert batch["x"].shape == (32, dm.spec.seq_len)


def test_same_batches_as_indexing_by_hand(make_cfg):
    dm = build_datamodule(make_cfg())
    dm.setup()
    order = list(torch.utils.data.RandomSampler(range(256), generator=torch.Generator().manual_seed(0)))
    first = next(iter(dm.train_dataloader()))
    assert torch.equal(first["x"], dm.tensors("train")["x"][order[:32]])


def test_on_device_must_be_a_bool(make_cfg):
    with pytest.raises(ConfigError, match=r"data\.on_device"):
        build_datamodule(make_cfg("data.on_device=sometimes"))
