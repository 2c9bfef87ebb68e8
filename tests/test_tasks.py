"""Every registered task: seeded splits, a well-formed batch, its indices at a tiny size, and a
chance level that a memoryless predictor really scores on generated data."""

from __future__ import annotations

import numpy as np
import pytest

from stm_lab import api
from stm_lab.build import build_head
from stm_lab.data import MemoryDataModule
from stm_lab.errors import ConfigError
from stm_lab.tasks import TASKS

SEQUENCE_HEAD = {"_target_": "stm_lab.heads.SequenceHead", "pool": "last"}

# Tiny parameters for every registered task. A new task must add itself here (checked below).
TINY_PARAMS = {
    "copy": {"delay": 3, "list_length": 3, "num_symbols": 4},
    "serial_recall": {"min_length": 2, "max_length": 4, "delay": 2, "num_items": 5},
    "adding": {"length": 10},
    "associative_recall": {"num_pairs": 3, "num_keys": 6, "num_values": 4},
    "nback": {"n": 2, "length": 8, "num_symbols": 4},
    "dms": {"num_stimuli": 4, "delay": 3},
    "memory_capacity": {"max_delay": 4, "length": 12, "washout": 4},
    "seq_digits": {"mode": "rows", "permute": True},
    "text": {"text_column": "text", "test_split": None, "val_fraction": 0.2, "test_fraction": 0.2},
    "scan": {"split": "add_jump"},
    "babi": {"qa": 2, "distractors": 1, "context_max": 2, "gap_max": 1},
    # The text file's review -> label columns serve as a (tiny) paired-text set.
    "pairs": {"source_column": "text", "target_column": "label", "test_split": None, "val_fraction": 0.2,
              "test_fraction": 0.2},
    # Recall benchmarks (their own indices and baselines: tests/test_recall_tasks.py).
    "mqar": {"vocab_size": 16, "seq_len": 16, "num_pairs": 3},
    "selective_copy": {"num_tokens": 3, "num_blanks": 5, "vocab_size": 6},
    "in_context_recall": {"vocab_size": 8, "seq_len": 12},
    "fuzzy_in_context_recall": {"vocab_size": 9, "seq_len": 20, "key_motif_size": 2, "value_motif_size": 2},
    "compression": {"vocab_size": 5, "seq_len": 6},
    "memorization": {"vocab_size": 12, "seq_len": 8},
}
FIXED_DATA = ("seq_digits", "text", "scan", "pairs")  # real data or a fixed set: the run seed does not change it


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("text") / "reviews.csv"
    rows = [f"{w} film number {i},{lab}" for i in range(40)
            for w, lab in (("a good", "pos"), ("a bad", "neg"))]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return str(path)


def make(name: str, text_file: str):
    params = dict(TINY_PARAMS[name])
    if name in ("text", "pairs"):
        params.update(dataset=None, data_files=text_file)
    return api.task(name, **params)


def module(task, n_train: int, n_val: int, n_test: int, batch_size: int, seed: int, cache_dir=None,
           regime: str = "fixed"):
    return MemoryDataModule(task, n_train, n_val, n_test, batch_size, on_device=False, regime=regime, seed=seed,
                            cache_dir=cache_dir)


def test_every_registered_task_is_covered():
    assert set(TINY_PARAMS) == set(TASKS.names())


@pytest.mark.parametrize("name", sorted(TINY_PARAMS))
def test_same_seed_same_splits(name, text_file, tmp_path):
    task = make(name, text_file)
    a = module(task, 40, 16, 16, 8, seed=3, cache_dir=tmp_path)
    b = module(task, 40, 16, 16, 8, seed=3)
    for split in ("train", "val", "test"):
        assert a.tensors(split).keys() == b.tensors(split).keys()
        for key, value in a.tensors(split).items():
            assert value.dtype == b.tensors(split)[key].dtype
            assert (value == b.tensors(split)[key]).all(), (split, key)
    # Train and test never hold the same data (disjoint seed streams, or disjoint partitions).
    assert a.tensors("train")["x"].shape[1:] == a.tensors("test")["x"].shape[1:]
    assert not (a.tensors("train")["x"][:16] == a.tensors("test")["x"]).all()
    if name not in FIXED_DATA:  # generated: another seed, other data
        c = module(task, 40, 16, 16, 8, seed=4)
        assert not (c.tensors("train")["x"] == a.tensors("train")["x"]).all()


@pytest.mark.parametrize("name", sorted(TINY_PARAMS))
def test_batches_match_the_spec(name, text_file):
    task = make(name, text_file)
    spec = task.spec
    d = task.make_split("train", 32, seed=0)
    x, y, mask = d["x"], d["y"], d["mask"]
    if spec.default_head == "seq2seq":  # source and target have lengths of their own
        assert x.shape == (len(x), spec.seq_len) and y.shape == mask.shape == (len(x), spec.positions)
    else:
        assert x.shape[:2] == mask.shape == (len(x), spec.seq_len)
    if spec.input_kind == "tokens":
        assert x.dtype == np.int64 and x.min() >= 0 and x.max() < spec.input_size
    else:
        assert x.dtype == np.float32 and x.shape[2] == spec.input_size
    assert mask.any(1).all()  # every sequence asks for memory somewhere
    if spec.scored == "one":
        assert (mask.sum(1) == 1).all()
    if spec.is_classification:
        assert ((y[mask] >= 0) & (y[mask] < spec.output_size)).all() and (y[~mask] == -100).all()
    else:
        assert y.shape == (len(x), spec.seq_len, spec.output_size)
    assert spec.paper and spec.tags and spec.chance_note
    if spec.scored == "steps":  # one label per sequence is what the sequence head is for
        with pytest.raises(ConfigError, match="config key 'head' has a bad value 'sequence'"):
            build_head(SEQUENCE_HEAD, 8, spec)


# -- indices at a tiny size -------------------------------------------------------------------------


def test_serial_recall_indices():
    task = api.task("serial_recall", min_length=2, max_length=4, delay=3, num_items=5)
    d = task.generate(200, np.random.default_rng(0))
    assert task.spec.seq_len == 11 and task.spec.positions == 4
    assert set(d["length"].tolist()) == {2, 3, 4}  # L varies per trial
    for x, y, mask, L in zip(d["x"], d["y"], d["mask"], d["length"], strict=True):
        assert ((x[:L] >= 1) & (x[:L] <= 5)).all() and (x[L:L + 2] == 0).all()
        assert np.flatnonzero(x == 6).tolist() == [L + 2]  # the cue, delay-1 blanks after the list
        assert np.flatnonzero(mask).tolist() == list(range(L + 3, 2 * L + 3))
        assert (y[mask] == x[:L] - 1).all()  # ordered recall
        assert (x[L + 3:] == 0).all()


def test_adding_indices():
    d = api.task("adding", length=10).generate(500, np.random.default_rng(0))
    x, y, mask = d["x"], d["y"], d["mask"]
    marks = x[:, :, 1]
    assert (marks.sum(1) == 2).all()
    first, second = marks[:, :5].argmax(1), marks[:, 5:].argmax(1) + 5
    assert (marks[:, :5].sum(1) == 1).all() and (marks[:, 5:].sum(1) == 1).all()  # one per half
    rows = np.arange(500)
    assert np.allclose(y[:, -1, 0], x[rows, first, 0] + x[rows, second, 0])
    assert mask[:, -1].all() and mask.sum() == 500
    assert x[:, :, 0].min() >= 0 and x[:, :, 0].max() < 1


def test_associative_recall_indices():
    task = api.task("associative_recall", num_pairs=3, num_keys=6, num_values=4)
    d = task.generate(300, np.random.default_rng(0))
    x, y = d["x"], d["y"]
    assert x.shape == (300, 9) and task.spec.input_size == 11
    keys, values = x[:, 0:6:2], x[:, 1:6:2]
    assert ((keys >= 4) & (keys < 10)).all() and ((values >= 0) & (values < 4)).all()
    assert all(len(set(k)) == 3 for k in keys.tolist())  # distinct keys
    assert any(len(set(v)) < 3 for v in values.tolist())  # values with replacement
    assert (x[:, 6:8] == 10).all()  # the two query markers
    for row in range(300):
        slot = keys[row].tolist().index(x[row, -1])
        assert y[row, -1] == values[row, slot]


def test_nback_indices_and_match_rate():
    task = api.task("nback", n=3, length=30, num_symbols=5, match_rate=0.25)
    d = task.generate(2000, np.random.default_rng(0))
    x, y, mask = d["x"], d["y"], d["mask"]
    assert not mask[:, :3].any() and mask[:, 3:].all()
    assert (y[:, 3:] == (x[:, 3:] == x[:, :-3])).all()
    assert y[mask].mean() == pytest.approx(0.25, abs=0.01)


def test_dms_periods_and_decision_step():
    task = api.task("dms", num_stimuli=4, fixation_steps=2, sample_steps=2, delay=3, test_steps=2,
                    delay_jitter=0, noise=0.0)
    assert task.periods == {"fixation": (0, 2), "sample": (2, 4), "delay": (4, 7), "test": (7, 9),
                            "decision": (9, 10)}
    d = task.generate(400, np.random.default_rng(0))
    x, y, mask = d["x"], d["y"], d["mask"]
    assert (x[:, :2] == 5).all() and (x[:, 4:7] == 0).all() and (x[:, 9] == 6).all()
    assert (x[:, 2] == x[:, 3]).all() and (x[:, 7] == x[:, 8]).all()
    assert np.flatnonzero(mask[0]).tolist() == [9]  # the decision step only
    assert (y[:, 9] == (x[:, 2] == x[:, 7])).all()


def test_memory_capacity_targets_are_delayed_inputs():
    task = api.task("memory_capacity", max_delay=3, length=10, washout=4)
    d = task.generate(5, np.random.default_rng(0))
    u, y = d["x"][:, :, 0], d["y"]
    for k in (1, 2, 3):
        assert (y[:, 4:, k - 1] == u[:, 4 - k:10 - k]).all()
    assert np.flatnonzero(d["mask"][0]).tolist() == list(range(4, 10))
    assert np.abs(u).max() <= 0.8


def test_seq_digits_rows_pixels_and_fixed_permutation():
    pixels = api.task("seq_digits", mode="pixels").make_split("test", 10, seed=0)
    rows = api.task("seq_digits", mode="rows").make_split("test", 10, seed=0)
    perm_a = api.task("seq_digits", permute=True).make_split("test", 10, seed=0)
    perm_b = api.task("seq_digits", permute=True).make_split("test", 10, seed=7)
    assert pixels["x"].shape == (10, 64, 1) and rows["x"].shape == (10, 8, 8)
    assert (pixels["x"].reshape(10, 8, 8) == rows["x"]).all()  # row-major, same images
    assert (perm_a["x"] == perm_b["x"]).all()  # one fixed permutation, whatever the run seed
    order = api.task("seq_digits", permute=True).permutation()
    assert sorted(order.tolist()) == list(range(64)) and (order != np.arange(64)).any()
    assert (perm_a["x"][:, :, 0] == pixels["x"][:, order, 0]).all()
    sizes = {s: len(api.task("seq_digits").make_split(s, 10**6, 0)["x"]) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797 and abs(sizes["val"] - 270) <= 10


# -- chance levels: what a memoryless predictor scores on generated data ------------------------------


def _best_given(feature: np.ndarray, target: np.ndarray) -> float:
    """Accuracy of the best predictor that sees only ``feature`` (majority target per value)."""
    hits = 0
    for v in np.unique(feature):
        hits += np.bincount(target[feature == v]).max()
    return hits / len(target)


def test_chance_serial_recall():
    task = api.task("serial_recall", min_length=2, max_length=5, num_items=10)
    d = task.generate(20000, np.random.default_rng(1))
    assert np.bincount(d["y"][d["mask"]]).max() / d["mask"].sum() == pytest.approx(task.spec.chance["acc"], abs=0.01)


def test_chance_adding_baseline_is_one_sixth():
    d = api.task("adding", length=20).generate(200000, np.random.default_rng(1))
    target = d["y"][:, -1, 0]
    assert np.mean((target - 1.0) ** 2) == pytest.approx(api.task("adding").spec.chance["mse"], abs=0.002)
    assert target.mean() == pytest.approx(1.0, abs=0.005)  # so 1 is the best constant


def test_chance_associative_recall_from_the_query_alone():
    task = api.task("associative_recall", num_pairs=4, num_keys=8, num_values=10)
    d = task.generate(40000, np.random.default_rng(1))
    assert _best_given(d["x"][:, -1], d["y"][:, -1]) == pytest.approx(task.spec.chance["acc"], abs=0.01)


def test_chance_nback_balanced_accuracy_of_memoryless_rules():
    task = api.task("nback", n=2, length=20, num_symbols=4, match_rate=0.3)
    d = task.generate(5000, np.random.default_rng(1))
    x, y = d["x"][d["mask"]], d["y"][d["mask"]]
    for rule in (np.zeros_like(y), x >= 2, x == 0):  # functions of the current symbol only
        pred = rule.astype(int)
        recall_pos = (pred[y == 1] == 1).mean()
        recall_neg = (pred[y == 0] == 0).mean()
        assert (recall_pos + recall_neg) / 2 == pytest.approx(task.spec.chance["recall"], abs=0.01)
    assert (y == 0).mean() == pytest.approx(0.7, abs=0.01)  # what plain accuracy would credit


def test_dms_jitter_and_noise_keep_the_layout():
    """The delay varies within delay ± jitter; noise tokens appear in the delay only; the decision
    is the last real step; the answer is whether test equals sample."""
    task = api.task("dms", num_stimuli=4, fixation_steps=1, sample_steps=2, delay=6, delay_jitter=2,
                    noise=0.5, num_noise=3, test_steps=2)
    d = task.generate(2000, np.random.default_rng(0))
    x, y, mask, length = d["x"], d["y"], d["mask"], d["length"]
    assert x.shape[1] == task.spec.seq_len == 1 + 2 + 8 + 2 + 1
    decision = mask.argmax(1)
    assert (decision == length - 1).all() and (x[np.arange(2000), decision] == 6).all()
    delays = decision - 2 - 1 - 2  # decision = fixation + sample + delay + test
    assert set(delays.tolist()) == {4, 5, 6, 7, 8}
    sample, test = x[:, 1], x[np.arange(2000), decision - 1]
    assert (y[mask] == (sample == test)).all()
    import torch

    in_delay = task.delay_mask(torch.from_numpy(x), torch.from_numpy(mask)).numpy()
    assert (in_delay.sum(1) == delays).all()
    noise = x >= 7  # tokens 7..9
    assert not (noise & ~in_delay).any() and 0.4 < noise[in_delay].mean() < 0.6


def test_chance_dms_from_the_test_stimulus_alone():
    task = api.task("dms", num_stimuli=4, delay_jitter=0)
    d = task.generate(40000, np.random.default_rng(1))
    test_stimulus = d["x"][:, task.periods["test"][0]]
    assert _best_given(test_stimulus, d["y"][:, -1]) == pytest.approx(task.spec.chance["acc"], abs=0.01)


def test_chance_memory_capacity_of_a_memoryless_readout():
    from stm_lab.metrics import MemoryCapacity

    task = api.task("memory_capacity", max_delay=10, length=110, washout=10)
    d = task.generate(200, np.random.default_rng(1))
    u, y, mask = d["x"][:, :, 0], d["y"], d["mask"]
    pred = np.repeat(u[:, :, None], 10, axis=2)  # any readout of u(t) alone
    import torch

    mc = MemoryCapacity(10)
    mc.update(torch.from_numpy(pred[mask]), torch.from_numpy(y[mask]))
    assert float(mc.compute()) == pytest.approx(task.spec.chance["mc"], abs=10 * 5 / mask.sum())


def test_chance_seq_digits_majority_class():
    task = api.task("seq_digits")
    y = task.make_split("test", 10**6, seed=0)["y"][:, -1]
    assert np.bincount(y).max() / len(y) == pytest.approx(task.spec.chance["acc"], abs=0.005)


# -- baselines: predictors that cannot remember, scored with the model's own metrics ----------------


def _baselines(task, n_train: int = 20000, n_test: int = 20000) -> dict:
    from stm_lab.baselines import baseline_scores

    dm = module(task, n_train, 8, n_test, 64, seed=1)
    return {name: b["metrics"] for name, b in baseline_scores(dm).items()}


def test_baseline_nback_majority_is_no_match():
    b = _baselines(api.task("nback", match_rate=0.3), 4000, 4000)
    assert b["majority"]["acc"] == pytest.approx(0.7, abs=0.01)  # what plain accuracy credits
    assert b["majority"]["recall"] == pytest.approx(0.5) and b["majority"]["recall_pos"] == 0.0
    assert b["current_input"]["recall"] == pytest.approx(0.5, abs=0.02)  # the current symbol says nothing


def test_baseline_associative_recall_most_frequent_shown_value():
    """Ignoring the keys and answering the value shown most often scores about 0.384 with 4 pairs
    and 10 values (the no-binding floor), far above the 1/10 chance level."""
    b = _baselines(api.task("associative_recall"))
    assert b["most_frequent_value"]["acc"] == pytest.approx(0.384, abs=0.01)
    assert b["current_input"]["acc"] == pytest.approx(0.1, abs=0.01)


def test_baseline_current_input_is_the_best_memoryless_token_rule():
    """On DMS the current input at the decision step is the go cue: it says nothing about the answer."""
    task = api.task("dms")
    b = _baselines(task, 4000, 4000)
    assert b["current_input"]["acc"] == pytest.approx(0.5, abs=0.03)


def test_baseline_adding_constant_and_current_input():
    b = _baselines(api.task("adding", length=20), 20000, 20000)
    assert b["majority"]["mse"] == pytest.approx(1 / 6, abs=0.005)
    assert b["current_input"]["mse"] < b["majority"]["mse"]  # the last step is sometimes marked
