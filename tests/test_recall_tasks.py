"""The recall benchmarks (MQAR, selective copying, the MAD family): their layouts checked index by
index against a plain re-reading of each sequence, their baselines against the figures in
docs/tasks.md (computed there on large samples; the tolerances are sampling error), and their
splits held out (memorization: its overlap measured)."""

from __future__ import annotations

import numpy as np
import pytest

from stm_lab import api
from stm_lab.data import MemoryDataModule
from stm_lab.errors import ConfigError
from stm_lab.tasks.sampling import distinct, weighted_without_replacement

# Every recall config of conf/data/ (noisy in-context recall is a config of in_context_recall),
# at a small size: the parameters below override the YAML defaults.
SMALL = {
    "mqar": {"vocab_size": 32, "seq_len": 24, "num_pairs": 4},
    "selective_copy": {"num_tokens": 4, "num_blanks": 9, "vocab_size": 7},
    "in_context_recall": {"vocab_size": 10, "seq_len": 20},
    "noisy_in_context_recall": {"vocab_size": 14, "seq_len": 20, "noise_vocab_size": 4, "frac_noise": 0.3},
    "fuzzy_in_context_recall": {"vocab_size": 11, "seq_len": 40},
    "compression": {"vocab_size": 6, "seq_len": 7},
    "memorization": {"vocab_size": 20, "seq_len": 10},
}
NEW_TASKS = {name: api.task(name, **params) for name, params in SMALL.items()}


def accuracy(preds: np.ndarray, arrays: dict[str, np.ndarray]) -> float:
    """Token accuracy over the scored steps of ``arrays`` of (N, C) scores aligned with ``y[mask]``
    (what the ``acc`` metric computes, without building the metric)."""
    target = arrays["y"][arrays["mask"]]
    assert preds.shape[0] == target.shape[0], "predictions do not align with y[mask]"
    return float((preds.argmax(-1) == target).mean())


def module(task, regime: str, n=(64, 16, 64), seed: int = 0) -> MemoryDataModule:
    dm = MemoryDataModule(task, *n, batch_size=16, on_device=False, regime=regime, seed=seed, cache_dir=None)
    dm.setup()
    return dm


def _scores(task, test, train=None) -> dict[str, float]:
    """Each baseline's accuracy on ``test`` (fitted on ``train``, or on ``test`` itself when the
    baselines under test do not fit anything)."""
    return {name: accuracy(b.preds, test) for name, b in task.baselines(test if train is None else train,
                                                                          test).items()}


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- sampling helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize("low,high,k", [(0, 5, 5), (3, 9, 2), (1, 4000, 6)])  # both methods
def test_distinct_draws_are_distinct_and_uniform(low, high, k):
    d = distinct(_rng(), (20000, k), low, high)
    assert d.min() >= low and d.max() < high
    assert all(len(set(r)) == k for r in d[:500].tolist())
    assert (np.sort(d, 1)[:, 1:] != np.sort(d, 1)[:, :-1]).all()
    if high - low <= 10:  # every value equally likely in every column
        for col in range(k):
            freq = np.bincount(d[:, col] - low, minlength=high - low) / len(d)
            assert np.abs(freq - 1 / (high - low)).max() < 0.015


def test_weighted_draws_follow_successive_sampling():
    """First draw ~ p; second draw ~ p without the first, renormalised (checked exactly)."""
    w = np.array([5.0, 3.0, 1.0, 1.0])
    p = w / w.sum()
    draws = weighted_without_replacement(_rng(), 100000, w, 2)
    assert np.abs(np.bincount(draws[:, 0], minlength=4) / 1e5 - p).max() < 0.006
    second_given_first0 = draws[draws[:, 0] == 0, 1]
    expect = np.r_[0, w[1:] / w[1:].sum()]
    assert np.abs(np.bincount(second_given_first0, minlength=4) / len(second_given_first0) - expect).max() < 0.01


# -- MQAR -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("random_fill", [False, True])
def test_mqar_indices(random_fill):
    V, T, K = 32, 24, 4
    task = api.task("mqar", vocab_size=V, seq_len=T, num_pairs=K, random_non_queries=random_fill)
    d = task.generate(400, _rng())
    x, y, mask = d["x"], d["y"], d["mask"]
    assert x.shape == (400, T) and task.spec.output_size == V - V // 2
    assert (mask.sum(1) == K).all() and (y[~mask] == -100).all()
    fill = []
    for row in range(400):
        keys, values = x[row, 0:2 * K:2], x[row, 1:2 * K:2]
        assert len(set(keys)) == K and len(set(values)) == K
        assert ((keys >= 1) & (keys < V // 2)).all() and ((values >= V // 2) & (values < V)).all()
        scored = np.flatnonzero(mask[row])
        assert (scored >= 2 * K).all() and ((scored - 2 * K) % 2 == 0).all()
        assert sorted(x[row, scored].tolist()) == sorted(keys.tolist())  # every key queried once
        for pos in scored:  # the target at a returning key is its value
            assert y[row, pos] == values[keys.tolist().index(x[row, pos])] - V // 2
        others = np.setdiff1d(np.arange(2 * K, T), scored)
        fill.extend(x[row, others].tolist())
    if random_fill:
        assert len(set(fill)) > V // 2  # uniform over the vocabulary
    else:
        assert set(fill) == {0}


def test_mqar_zoology_example_layout():
    """Zoology's docstring example: V=12, K=2, T=16: keys/values then queries at even offsets."""
    d = api.task("mqar", vocab_size=12, seq_len=16, num_pairs=2).generate(50, _rng())
    assert (d["x"][:, 4::2][~d["mask"][:, 4::2]] == 0).all() and (d["x"][:, 5::2] == 0).all()


def test_mqar_gap_law_matches_zoology_sampler():
    """Key 1's slot is the first weighted draw: P(s) = (s+1)^(a-1) / sum. The same law as
    numpy's choice(p=..., replace=False), which Zoology calls."""
    T, K, a = 64, 4, 0.01
    d = api.task("mqar", vocab_size=256, seq_len=T, num_pairs=K, power_a=a).generate(40000, _rng(1))
    slot_of_key1 = (np.argmax(d["x"][:, 2 * K:] == d["x"][:, [0]], axis=1)) // 2
    p = np.arange(1, (T - 2 * K) // 2 + 1) ** (a - 1.0)
    p /= p.sum()
    assert np.abs(np.bincount(slot_of_key1, minlength=len(p)) / 40000 - p).max() < 0.01
    legacy = np.random.RandomState(0)
    z = np.array([legacy.choice(len(p), size=K, replace=False, p=p) for _ in range(20000)])
    x = d["x"][:20000]
    ours = np.stack([(np.argmax(x[:, 2 * K:] == x[:, [2 * j]], axis=1)) // 2 for j in range(K)], 1)
    assert np.abs(ours.mean(0) - z.mean(0)).max() < 0.3  # mean slot of each key, in slots


@pytest.mark.parametrize("T,K,order_ref,mean_gap", [(64, 4, 0.278, 19), (128, 8, 0.150, 37), (256, 16, 0.079, 74)])
def test_mqar_baselines_and_gaps(T, K, order_ref, mean_gap):
    task = api.task("mqar", vocab_size=8192, seq_len=T, num_pairs=K)
    d = task.generate(100000 // K, _rng(2))
    b = _scores(task, d, task.generate(2000, _rng(3)))
    assert b["bag_of_values"] == pytest.approx(1 / K, abs=0.006)
    # The reference's order-shortcut figures come from Zoology-sized test sets (3,000
    # sequences, about +-0.8 points); Zoology's own sampler gives 28.5% at (64, 4).
    assert b["order_shortcut"] == pytest.approx(order_ref, abs=0.01)
    assert b["order_shortcut"] > 1 / K  # the shortcut is real
    # Values are fresh in every sequence: nothing memoryless beats chance.
    assert max(b["majority"], b["current_input"]) < 3 / task.num_values
    rows, cols = np.nonzero(d["mask"])
    key_pos = 2 * np.argmax(d["x"][rows, 0:2 * K:2] == d["x"][rows, cols][:, None], axis=1)
    assert (cols - key_pos).mean() == pytest.approx(mean_gap, abs=1.0)


# -- selective copying ---------------------------------------------------------------------------------


def test_selective_copy_indices():
    M, L, A = 4, 9, 7
    task = api.task("selective_copy", num_tokens=M, num_blanks=L, vocab_size=A)
    d = task.generate(3000, _rng())
    x, y, mask = d["x"], d["y"], d["mask"]
    assert x.shape == (3000, L + 2 * M) and task.spec.seq_len == L + 2 * M
    assert (x[:, L + M:] == A - 1).all() and np.flatnonzero(mask[0]).tolist() == list(range(L + M, L + 2 * M))
    body = x[:, :L + M]
    assert ((body > 0).sum(1) == M).all() and (body < A - 1).all()
    for row in range(200):
        shown = body[row][body[row] > 0]
        assert (y[row, mask[row]] == shown - 1).all()  # in order
    # The M positions are a uniform M-subset of the first L+M: every position equally often.
    assert np.abs((body > 0).mean(0) - M / (L + M)).max() < 0.03
    assert set(np.unique(y[mask])) == set(range(A - 2))


def test_selective_copy_baselines():
    task = api.task("selective_copy", num_tokens=16, num_blanks=64, vocab_size=16)
    d, train = task.generate(20000, _rng(1)), task.generate(5000, _rng(2))
    b = _scores(task, d, train)
    assert b["majority"] == pytest.approx(1 / 14, abs=0.004)
    assert b["current_input"] == pytest.approx(1 / 14, abs=0.004)  # the marker says nothing
    assert b["bag_without_order"] == pytest.approx(0.129, abs=0.004)  # exact: 12.94%
    assert not task.baselines(train, d)["bag_without_order"].memoryless


# -- in-context recall (plain and noisy) -----------------------------------------------------------------


def _recall_oracle(x: np.ndarray, num_keys: int, content: int) -> tuple[list[int], dict]:
    """Re-read one sequence pair by pair: the positions that must be scored and the key map."""
    seen, scored = {}, []
    for pos in range(0, len(x) - 1, 2):
        k, v = int(x[pos]), int(x[pos + 1])
        if k >= content:  # a noise pair
            assert v >= content
            continue
        assert k < num_keys <= v < content
        assert seen.setdefault(k, v) == v  # a key's value is fixed within the sequence
        if list(x[:pos:2]).count(k):
            scored.append(pos)
    assert int(x[-1]) in seen  # the probe repeats a key already shown
    return scored + [len(x) - 1], seen


@pytest.mark.parametrize("noise", [False, True])
def test_in_context_recall_indices(noise):
    task = NEW_TASKS["noisy_in_context_recall" if noise else "in_context_recall"]
    d = task.generate(300, _rng())
    x, y, mask = d["x"], d["y"], d["mask"]
    nk, content = task.num_keys, task.vocab_size - task.noise_vocab_size
    assert x.shape == (300, task.seq_len - 1) and task.spec.seq_len == task.seq_len - 1
    for row in range(300):
        scored, value_of = _recall_oracle(x[row], nk, content)
        assert np.flatnonzero(mask[row]).tolist() == scored
        assert all(y[row, p] == value_of[int(x[row, p])] - nk for p in scored)
    noise_pairs = (x[:, 0:-1:2] >= content).mean()
    assert noise_pairs == pytest.approx(0.3 * (1 - 1 / 9) if noise else 0.0, abs=0.02)


def test_in_context_recall_mad_figures():
    """MAD's baseline setting: ~56 scored steps per sequence (noisy: ~44) and the reference's
    weak-memory baselines: most frequent value so far 31.6%, most recent value 24.9%."""
    task = api.task("in_context_recall")
    assert (task.vocab_size, task.seq_len, task.noise_vocab_size, task.frac_noise) == (16, 128, 0, 0.0)
    d = task.generate(12800, _rng(4))
    assert d["mask"].sum(1).mean() == pytest.approx(56, abs=0.5)
    b = _scores(task, d)
    assert b["most_frequent_value"] == pytest.approx(0.316, abs=0.008)
    assert b["most_recent_value"] == pytest.approx(0.249, abs=0.008)
    assert b["current_input"] == pytest.approx(1 / 8, abs=0.01)  # a key alone says nothing of its value
    noisy = api.task("noisy_in_context_recall")
    assert (noisy.vocab_size, noisy.noise_vocab_size, noisy.frac_noise) == (32, 16, 0.2)
    assert noisy.generate(4000, _rng(5))["mask"].sum(1).mean() == pytest.approx(44, abs=0.8)


def test_value_history_baselines_by_hand():
    task = api.task("in_context_recall", vocab_size=8, seq_len=12)  # keys 0..3, values 4..7
    x = np.array([[0, 5, 1, 6, 2, 6, 1, 6, 0, 5, 1]])  # 6 twice before the last query
    y = np.full_like(x, -100)
    y[0, [6, 8, 10]] = [2, 1, 2]
    d = {"x": x, "y": y, "mask": y >= 0}
    b = task.baselines(d, d)
    assert b["most_frequent_value"].preds.argmax(1).tolist() == [2, 2, 2]  # value 6 -> class 2 leads
    assert b["most_recent_value"].preds.argmax(1).tolist() == [2, 2, 1]  # the value just before each query


# -- fuzzy in-context recall -----------------------------------------------------------------------------


def _fuzzy_oracle(x: np.ndarray, nk: int, pad: int) -> tuple[list[tuple[tuple, tuple]], list[int]]:
    """Split one stream into (key motif, value motif) pairs by token range; the scored steps are
    the step before each value token of a repeated key (the last value is the hidden answer)."""
    body = x[x != pad]
    assert (x[:len(x) - len(body)] == pad).all()  # padding only on the left
    pairs, i, offset = [], 0, len(x) - len(body)
    scored, seen = [], set()
    while i < len(body):
        j = i
        while j < len(body) and body[j] < nk:
            j += 1
        k = j
        while k < len(body) and body[k] >= nk:
            k += 1
        key, value = tuple(body[i:j]), tuple(body[j:k])
        if key in seen:
            scored.extend(offset + p - 1 for p in range(j, k + (k == len(body))))
        seen.add(key)
        pairs.append((key, value))
        i = k
    return pairs, scored


@pytest.mark.parametrize("training", [False, True])
def test_fuzzy_recall_indices(training):
    task = api.task("fuzzy_in_context_recall", vocab_size=11, seq_len=40, key_motif_size=3, value_motif_size=2)
    d = task.generate_split("train" if training else "test", 300, _rng())
    x, y, mask = d["x"], d["y"], d["mask"]
    nk, pad = task.num_keys, task.vocab_size - 1
    lengths = set()
    for row in range(300):
        pairs, scored = _fuzzy_oracle(x[row], nk, pad)
        values = {}
        for key, value in pairs[:-1]:
            assert len(set(key)) == len(key) and 1 <= len(key) <= 3 and 1 <= len(value) <= 2
            assert len(set(value)) == len(value)
            assert values.setdefault(key, value) == value  # fixed within the sequence
            lengths.add(len(key))
        probe_key, probe_head = pairs[-1]
        assert probe_key in values and values[probe_key][:len(probe_head)] == probe_head
        assert np.flatnonzero(mask[row]).tolist() == scored
        # Targets: the next token inside the stream, and the probe value's last token at the end.
        inner = [p for p in scored if p + 1 < len(x[row])]
        assert (y[row, inner] == x[row, [p + 1 for p in inner]] - nk).all()
        assert y[row, -1] == values[probe_key][-1] - nk
    assert lengths == ({1, 2, 3} if training else {3})  # test keys always have full length


def test_fuzzy_recall_splits_and_mad_count():
    task = api.task("fuzzy_in_context_recall")
    train, test = task.make_split("train", 200, 0), task.make_split("test", 3000, 0)
    assert task.make_split("val", 50, 0)["mask"].sum(1).mean() < train["mask"].sum(1).mean()
    # MAD's test sequences score only a few tokens (reference: ~4.3, mostly the probe's value).
    assert test["mask"].sum(1).mean() == pytest.approx(4.4, abs=0.4)
    b = _scores(task, test, train)
    assert set(b) == {"majority", "current_input", "most_frequent_value", "previous_value_motif"}
    assert all(v < 0.3 for v in b.values())
    # docs/tasks.md: 17.3% and 19.1% on 12,800 test sequences (3,000 here: +-1.3 points).
    assert b["most_frequent_value"] == pytest.approx(0.173, abs=0.02)
    assert b["previous_value_motif"] == pytest.approx(0.191, abs=0.02)


def test_previous_value_motif_by_hand():
    task = api.task("fuzzy_in_context_recall", vocab_size=9, seq_len=13, key_motif_size=2, value_motif_size=2)
    # keys 0..3, values 4..7, pad 8: (0 1)->(4 5), (2)->(6), then (0 1) again: answer 4 5
    x = np.array([[8, 8, 8, 0, 1, 4, 5, 2, 6, 0, 1, 4]])
    y = np.full_like(x, -100)
    y[0, [10, 11]] = [0, 1]
    d = {"x": x, "y": y, "mask": y >= 0}
    previous = task.baselines(d, d)["previous_value_motif"]
    assert previous.preds.argmax(1).tolist() == [2, 2]  # motif (6): offset 0, then its last token again


# -- compression and memorization ------------------------------------------------------------------------


def test_compression_indices_and_baselines():
    task = api.task("compression", vocab_size=6, seq_len=7)
    d = task.generate(5000, _rng())
    x, y, mask = d["x"], d["y"], d["mask"]
    assert x.shape == (5000, 12) and (x[:, 6:] == 5).all() and (x[:, :6] < 5).all()
    assert np.flatnonzero(mask[0]).tolist() == list(range(6, 12))
    assert (y[:, 6:] == x[:, :6]).all()
    b = _scores(task, d, task.generate(2000, _rng(1)))
    assert b["majority"] == pytest.approx(1 / 5, abs=0.015)
    assert b["current_input"] == pytest.approx(1 / 5, abs=0.015)  # the compression token says nothing
    assert b["last_token"] == pytest.approx((1 + 5 / 5) / 6, abs=0.015)  # exact at the last step


def test_memorization_map_is_fixed_and_test_repeats_training():
    task = api.task("memorization")  # MAD's setting: 127 keys, 128 values, 256 training sequences
    assert (task.vocab_size, task.seq_len, task.map_seed) == (256, 32, 12345)
    assert not task.held_out and "test split repeats the training pairs" in task.spec.chance_note
    vmap = task.value_map()
    assert len(vmap) == 127 and len(set(vmap.tolist())) == 127 and vmap.min() >= 127 and vmap.max() <= 254
    a, b = task.make_split("train", 256, seed=0), task.make_split("test", 1280, seed=9)
    for d in (a, b):  # the same map whatever the run seed and split
        assert (d["y"][:, 1::2] == vmap[d["x"][:, 0::2]] - 127).all()
        assert (d["x"][:, 1::2] == 255).all() and (d["mask"] == (d["y"] >= 0)).all()
    assert task.overlap_with_train(a, b) == 1.0
    tiny_train = task.make_split("train", 2, seed=0)  # 32 key draws cannot cover 127 keys
    assert task.overlap_with_train(tiny_train, b) < 0.3
    assert (api.task("memorization", map_seed=1).value_map() != vmap).any()
    scores = _scores(task, b, a)
    assert scores["majority"] < 0.03 and scores["current_input"] < 0.03  # the insert token says nothing


# -- every new task ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NEW_TASKS))
def test_baselines_align_with_the_scored_steps(name):
    task = NEW_TASKS[name]
    spec = task.spec
    train, test = task.make_split("train", 64, 0), task.make_split("test", 64, 0)
    assert spec.chance["acc"] > 0 and set(spec.chance) <= set(spec.metrics) and spec.headline == "acc"
    baselines = task.baselines(train, test)
    assert {"majority", "current_input"} <= set(baselines)  # the base class's, kept
    for baseline in baselines.values():
        assert baseline.preds.shape == (int(test["mask"].sum()), spec.output_size)
        assert 0 <= accuracy(baseline.preds, test) <= 1
        assert baseline.note
    # The random baselines draw from a fixed stream: the same floors on every run of the same data.
    again = task.baselines(train, test)
    assert all(np.array_equal(baselines[k].preds, again[k].preds) for k in baselines)


@pytest.mark.parametrize("name", sorted(NEW_TASKS))
def test_floors_in_the_run_summary(name):
    """The task's baselines reach the run's floors (stm_lab.baselines) through the data module,
    scored with the task's own metrics."""
    from stm_lab.baselines import baseline_scores, floors

    task = NEW_TASKS[name]
    dm = module(task, "fresh" if task.held_out else "fixed", n=(64, 8, 64))
    scores = baseline_scores(dm)
    assert set(scores) == set(task.baselines(dm.arrays("train"), dm.arrays("test")))
    assert all(set(b["metrics"]) >= {"acc", "recall"} for b in scores.values())
    floor = floors(task.spec, scores)
    assert floor["acc"]["value"] >= task.spec.chance["acc"] - 1e-9
    assert floor["acc"]["by"] in {"chance", *scores}


# -- held-out items --------------------------------------------------------------------------------------


@pytest.mark.parametrize("regime", ["fixed", "fresh"])
@pytest.mark.parametrize("name", sorted(n for n, t in NEW_TASKS.items() if t.held_out))
def test_no_validation_or_test_item_occurs_in_training(name, regime):
    report = module(NEW_TASKS[name], regime).report()
    assert report["held_out"] and report["overlap_with_train"] == {"val": 0.0, "test": 0.0}


@pytest.mark.parametrize("regime", ["fixed", "fresh"])
def test_fuzzy_recall_splits_keep_their_distributions_in_the_data_module(regime):
    """Held-out draws and fresh epochs go through generate_split: training keys of every length,
    validation and test keys of full length."""
    task = NEW_TASKS["fuzzy_in_context_recall"]
    dm = module(task, regime)

    def key_lengths(arrays) -> set[int]:
        pairs = [_fuzzy_oracle(row, task.num_keys, task.vocab_size - 1)[0] for row in arrays["x"]]
        return {len(key) for rows in pairs for key, _ in rows}

    every_length = set(range(1, task.key_motif_size + 1))
    assert key_lengths(dm.arrays("train")) == every_length
    assert key_lengths(dm.arrays("val")) == key_lengths(dm.arrays("test")) == {task.key_motif_size}
    if regime == "fresh":
        assert key_lengths({k: v.numpy() for k, v in dm.fresh_tensors(2).items()}) == every_length


def test_memorization_overlap_is_measured_not_removed():
    """Memorization tests the pairs it trains on: nothing is held out, only a fixed training set
    makes sense, and the share of test keys shown in training is what summary.json records."""
    task = NEW_TASKS["memorization"]  # 9 keys, 5 per sequence
    with pytest.raises(ConfigError, match=r"data\.regime.*'fresh'; allowed: fixed"):
        module(task, "fresh")
    report = module(task, "fixed").report()
    assert report["held_out"] is False and report["overlap_with_train"] == {"val": 1.0, "test": 1.0}
    few = module(task, "fixed", n=(1, 16, 64)).report()  # one sequence: 5 key draws of 9 keys
    assert 0 < few["overlap_with_train"]["test"] < 1


# -- sweeps and compare, unchanged ------------------------------------------------------------------------


def test_runs_over_num_pairs_compare_with_their_own_floors(make_cfg, tmp_path):
    """Runs of MQAR at several numbers of pairs (what ``-m data.num_pairs=2,3`` makes) aggregate
    over ``data.num_pairs`` with each K's own chance level and floor, and a span over K."""
    from conftest import TINY

    from stm_lab import compare
    from stm_lab.run import train

    base = [o for o in TINY if not o.startswith("data.")]
    for K in (2, 3):
        for seed in (0, 1):
            train(make_cfg(*base, "data=mqar", "data.vocab_size=16", "data.seq_len=16", f"data.num_pairs={K}",
                           f"seed={seed}", "data.n_train=64", "data.n_val=32", "data.n_test=64",
                           "data.batch_size=32", tiny=False, subdir=f"sweep/k{K}_s{seed}"))
    df = compare.load_runs([tmp_path / "sweep"])
    over, by = compare.resolve_key(df, "num_pairs"), [compare.resolve_key(df, "cell")]
    assert over == "data.num_pairs"
    agg = compare.aggregate(df, "test/acc", by=by, over=over)
    assert agg[over].tolist() == [2, 3] and agg["n"].tolist() == [2, 2]
    assert agg["chance"].tolist() == pytest.approx([1 / 8, 1 / 8])
    # The floor is each K's own: knowing the values but not the bindings scores at least 1/K.
    assert agg["floor"].iloc[0] >= 0.5 - 0.05 and agg["floor"].iloc[1] >= 1 / 3 - 0.05
    assert set(agg["floor_by"]) <= {"bag_of_values", "order_shortcut"}
    span = compare.memory_span(df, "test/acc", over, by=by)
    assert span["seeds"].tolist() == [2] and span["reference"].tolist() == ["floor"]
    curves = compare.curve_table(df, "test/acc_pos", by=by, over=over)
    assert len(curves) == 2 + 3  # the serial-position curve of the queries: K points for each K
