import numpy as np
import pytest

from stm_lab import api
from stm_lab.build import build_task
from stm_lab.data import MemoryDataModule
from stm_lab.data.cache import split_rng
from stm_lab.errors import ConfigError
from stm_lab.tasks import TASKS
from stm_lab.tasks.copy import CopyTask


def module(task, n_train, n_val, n_test, batch_size, seed=0, cache_dir=None, regime="fixed"):
    return MemoryDataModule(task, n_train, n_val, n_test, batch_size, on_device=False, regime=regime, seed=seed,
                            cache_dir=cache_dir)


def test_arjovsky_indices():
    """T=100, L=10, S=8: delimiter at T+9, targets at T+10..T+19, length T+20."""
    task = api.task("copy", delay=100, list_length=10, num_symbols=8)
    d = task.generate(5, np.random.default_rng(0))
    x, y, mask = d["x"], d["y"], d["mask"]
    assert x.shape == (5, 120)
    assert (x[:, 109] == 9).all()
    assert (x[:, :10] >= 1).all() and (x[:, :10] <= 8).all()
    assert (x[:, 10:109] == 0).all() and (x[:, 110:] == 0).all()
    assert np.flatnonzero(mask[0]).tolist() == list(range(110, 120))
    assert (y[:, 110:] == x[:, :10] - 1).all()  # ordered recall, classes 0..7
    assert (y[~mask] == -100).all()


@pytest.mark.parametrize("delay,length", [(1, 1), (1, 3), (4, 2), (7, 5)])
def test_small_layouts(delay, length):
    task = api.task("copy", delay=delay, list_length=length, num_symbols=3)
    d = task.generate(3, np.random.default_rng(1))
    T = delay + 2 * length
    assert d["x"].shape == (3, T) == d["mask"].shape
    assert np.flatnonzero(d["x"][0] == 4).tolist() == [length + delay - 1]  # the one delimiter
    assert np.flatnonzero(d["mask"][0]).tolist() == list(range(length + delay, T))
    assert task.spec.positions == length and task.spec.seq_len == T


def test_chance_is_what_a_memoryless_guess_scores():
    task = api.task("copy", delay=5, list_length=10, num_symbols=8)
    d = task.generate(20000, np.random.default_rng(2))
    targets = d["y"][d["mask"]]
    # A memoryless predictor can do no better than the most frequent symbol.
    best_constant = np.bincount(targets, minlength=8).max() / targets.size
    assert best_constant == pytest.approx(task.spec.chance["acc"], abs=0.01)
    assert task.spec.chance["acc"] == 1 / 8 and task.spec.chance["acc_sequence"] == 8 ** -10


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="data.delay.*-1"):
        api.task("copy", delay=-1)
    with pytest.raises(ConfigError, match="data.dealy.*allowed:.*delay"):
        build_task({"task": "copy", "dealy": 3, "delay": 3, "list_length": 2, "num_symbols": 3})
    with pytest.raises(ConfigError, match="data.task.*'nope'.*copy"):
        build_task({"task": "nope"})


def test_registry_lists_copy():
    assert "copy" in TASKS.names()


def test_splits_same_seed_same_data_and_disjoint_streams(tmp_path):
    task = api.task("copy", delay=2, list_length=4, num_symbols=8)
    a = module(task, 200, 50, 50, 16, seed=3, cache_dir=tmp_path / "a")
    b = module(task, 200, 50, 50, 16, seed=3, cache_dir=None)
    c = module(task, 200, 50, 50, 16, seed=4, cache_dir=None)
    for split in ("train", "val", "test"):
        for key in ("x", "y", "mask"):
            assert (a.tensors(split)[key] == b.tensors(split)[key]).all()
    assert not (a.tensors("train")["x"] == c.tensors("train")["x"]).all()
    # The splits come from different streams, not from one stream cut in three.
    lists = {s: {tuple(r) for r in a.tensors(s)["x"][:, :4].tolist()} for s in ("train", "val", "test")}
    assert len(lists["val"] & lists["test"]) < 5
    assert not (split_rng(3, "val").integers(0, 1 << 30, 8) == split_rng(3, "test").integers(0, 1 << 30, 8)).all()


def test_cache_is_reused_and_keyed_by_parameters(tmp_path, monkeypatch):
    task = api.task("copy", delay=2, list_length=4, num_symbols=8)
    module(task, 100, 20, 20, 16, seed=0, cache_dir=tmp_path).setup()
    calls = []

    def spy(self, n, rng):
        calls.append(n)
        raise RuntimeError("generated")

    monkeypatch.setattr(CopyTask, "generate", spy)
    module(task, 100, 20, 20, 16, seed=0, cache_dir=tmp_path).setup()
    assert calls == []  # all three splits loaded from the cache
    with pytest.raises(RuntimeError, match="generated"):  # a new parameter misses the cache
        module(api.task("copy", delay=3, list_length=4), 100, 20, 20, 16, seed=0, cache_dir=tmp_path).setup()
    assert calls == [20]  # the test split is drawn first (validation and training exclude its items)


def test_batches_are_seeded():
    task = api.task("copy", delay=2, list_length=4)
    first = [next(iter(module(task, 100, 20, 20, 16, seed=s).train_dataloader()))["x"] for s in (0, 0)]
    assert (first[0] == first[1]).all()
