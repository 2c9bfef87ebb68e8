"""Training regimes (fixed, fresh) and held-out evaluation items."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stm_lab import api
from stm_lab.build import build_datamodule
from stm_lab.data import MemoryDataModule
from stm_lab.data.items import item_keys, overlap
from stm_lab.errors import ConfigError
from stm_lab.tasks.spec import split_rng


def module(task, regime="fixed", n=(10000, 1000, 1000), seed=0) -> MemoryDataModule:
    dm = MemoryDataModule(task, *n, batch_size=64, on_device=False, regime=regime, seed=seed, cache_dir=None)
    dm.setup()
    return dm


def test_seed_streams_alone_do_not_hold_test_items_out():
    """Why the held-out draw exists: with the default copy task (5 of 8 symbols) a quarter of a
    test split drawn from its own stream also occurs in a 10,000-list training split."""
    task = api.task("copy")
    train = task.generate(10000, split_rng(0, "train"))
    test = task.generate(1000, split_rng(0, "test"))
    assert overlap(item_keys(test), item_keys(train)) > 0.2


@pytest.mark.parametrize("regime", ["fixed", "fresh"])
@pytest.mark.parametrize("name", ["copy", "dms", "serial_recall", "nback", "associative_recall"])
def test_no_validation_or_test_item_occurs_in_training(name, regime):
    dm = module(api.task(name), regime)
    report = dm.report()
    assert report["overlap_with_train"] == {"val": 0.0, "test": 0.0} and report["held_out"]
    test, val = item_keys(dm.arrays("test")), item_keys(dm.arrays("val"))
    assert overlap(val, test) == 0.0  # validation holds no test item either
    if regime == "fresh":  # every epoch, not only the first
        assert overlap(item_keys({k: v.numpy() for k, v in dm.fresh_tensors(3).items()}), np.union1d(val, test)) == 0


def test_held_out_splits_are_deterministic_and_the_test_split_does_not_depend_on_training():
    a, b = module(api.task("copy")), module(api.task("copy"), n=(500, 1000, 1000))
    assert torch.equal(a.tensors("test")["x"], b.tensors("test")["x"])  # whatever n_train is
    assert torch.equal(a.tensors("val")["x"], b.tensors("val")["x"])
    c = module(api.task("copy"))
    assert torch.equal(a.tensors("train")["x"], c.tensors("train")["x"])


def test_fresh_training_data_change_every_epoch_and_repeat_with_the_seed():
    dm, again = module(api.task("copy"), "fresh"), module(api.task("copy"), "fresh")
    e0, e1 = dm.fresh_tensors(0)["x"].clone(), dm.fresh_tensors(1)["x"].clone()
    assert not torch.equal(e0, e1)
    assert torch.equal(again.fresh_tensors(1)["x"], e1)
    assert torch.equal(dm.fresh_tensors(0)["x"], e0)
    assert not torch.equal(module(api.task("copy"), "fresh", seed=1).fresh_tensors(0)["x"], e0)


def test_the_training_loop_gets_new_data_each_epoch(make_cfg):
    """Lightning calls set_epoch on the loader's sampler: a real two-epoch run sees two draws."""
    import lightning.pytorch as pl

    seen = []

    class FirstBatch(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == 0:
                seen.append(batch["x"].clone())

    from stm_lab.build import build

    cfg = make_cfg("trainer.max_epochs=2", "data.regime=fresh")
    parts = build(cfg, callbacks=[FirstBatch()])
    parts.trainer.fit(parts.model, datamodule=parts.datamodule)
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])


def test_a_task_too_small_to_hold_items_out_says_which_keys():
    with pytest.raises(ConfigError, match=r"data\.num_symbols=2.*too few distinct trials"):
        module(api.task("copy", list_length=2, num_symbols=2), n=(100, 50, 50))


def test_fresh_needs_a_generator():
    with pytest.raises(ConfigError, match=r"data\.regime.*'fresh'; allowed: fixed"):
        MemoryDataModule(api.task("seq_digits"), 10, 10, 10, 8, on_device=False, regime="fresh", seed=0,
                         cache_dir=None)


def test_real_data_overlap_is_measured_not_removed(make_cfg):
    dm = build_datamodule(make_cfg("data=seq_digits", tiny=False))
    dm.setup()
    report = dm.report()
    assert report["held_out"] is False and report["regime"] == "fixed"
    assert set(report["overlap_with_train"]) == {"val", "test"}
    train = item_keys(dm.arrays("train"))
    assert report["overlap_with_train"]["test"] == overlap(item_keys(dm.arrays("test")), train)
