"""Fuzzy in-context recall, multi-query, from the MAD suite (Poli et al. 2024; generator
``athms/mad-lab mad/data/instances.py``, ``generate_fuzzy_in_context_recall_instance``).

In-context recall where keys and values are short *motifs* of several tokens, so a model must
bind variable-length spans rather than single tokens::

    input : pad pad k k v | k v v v | k k k v v | ... | k k k v v | ... | k k k v
    target:                                               (repeat)  v v     ...  v v

Vocabulary V: the last token pads (left), keys are ordered tuples of 1..``key_motif_size``
distinct tokens from {0 .. (V-1)//2 - 1}, values ordered tuples of 1..``value_motif_size``
distinct tokens from the rest of {0 .. V-2}. Motif lengths are uniform per pair; a key's
value (tokens and length) is fixed within the sequence. A random pair of the sequence is
repeated at the end (its last value token is the answer, never an input).

**Training and test differ** (as in MAD): the training split draws key motifs of every length
1..``key_motif_size``; validation and test use keys of exactly ``key_motif_size`` tokens, so
key repeats are rare and most scored tokens are the final probe's value. Scored: every value
token of a pair whose key appeared before, read (next-token style) one step earlier, while
the earlier value tokens of the same motif are shown (MAD's test targets). stm_lab also
trains on exactly those steps; MAD trains on next-token prediction of the whole sequence.
Output over the value tokens: chance 1/number of values per token (1/8 for V=16).

This is a class of its own rather than a switch on ``in_context_recall``: motifs change the
vocabulary layout (a pad token), the length of a pair and the train/test split, which share
no code with the single-token generator. Noise is not offered here (MAD's fuzzy benchmark
runs without it). Differences from MAD, deliberate: the probe is a random pair of the
sequence (MAD inserts a fresh pair at a random point), and the stream stops one
worst-case probe earlier (up to ``key_motif_size + value_motif_size`` more left padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stm_lab.tasks.in_context_recall import value_history_baselines
from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.sampling import distinct
from stm_lab.tasks.spec import (
    Arrays,
    Baseline,
    Task,
    TaskSpec,
    one_hot,
    task_field,
    token_recall_spec,
)


def fuzzy_recall_arrays(n: int, rng: np.random.Generator, vocab_size: int, seq_len: int,
                        key_motif_size: int, value_motif_size: int, training: bool) -> Arrays:
    V, T, KM, VM = vocab_size, seq_len, key_motif_size, value_motif_size
    pad, content = V - 1, V - 1
    nk = content // 2
    W = KM + VM  # longest pair
    stop = T - 2 * W  # a pair starts only while the stream is shorter than this
    min_pair = (1 if training else KM) + 1
    M = -(-stop // min_pair) + 1  # enough pairs to reach ``stop`` in every sequence
    rows = np.arange(n)[:, None]

    k_len = rng.integers(1, KM + 1, size=(n, M)) if training else np.full((n, M), KM)
    v_len = rng.integers(1, VM + 1, size=(n, M))
    k_tok = distinct(rng, (n, M, KM), 0, nk)
    v_tok = distinct(rng, (n, M, VM), nk, content)

    # A key is its token tuple; digits shifted by one so tuples of different lengths differ.
    digits = np.where(np.arange(KM) < k_len[..., None], k_tok + 1, 0)
    key_id = (digits * (nk + 1) ** np.arange(KM)).sum(-1)
    # First pair with the same key in the sequence: its value holds for every repeat.
    order = np.lexsort((np.broadcast_to(np.arange(M), (n, M)).ravel(), key_id.ravel(),
                        np.repeat(np.arange(n), M)))
    flat_row, flat_id = np.repeat(np.arange(n), M)[order], key_id.ravel()[order]
    new_group = np.r_[True, (flat_row[1:] != flat_row[:-1]) | (flat_id[1:] != flat_id[:-1])]
    group_first = (order % M)[np.maximum.accumulate(np.where(new_group, np.arange(n * M), 0))]
    first = np.empty(n * M, dtype=np.int64)
    first[order] = group_first
    first = first.reshape(n, M)
    repeated = first < np.arange(M)
    v_len = np.take_along_axis(v_len, first, axis=1)
    v_tok = np.take_along_axis(v_tok, first[..., None], axis=1)

    start = np.cumsum(k_len + v_len, axis=1) - (k_len + v_len)
    included = start < stop
    # The probe: a uniformly chosen pair of the stream, repeated at the end.
    probe = (rng.random(n) * included.sum(1)).astype(np.int64)[:, None]

    def pair_cells(kl, vl, kt, vt):
        j = np.arange(W)
        is_key = j < kl[..., None]
        vj = j - kl[..., None]
        is_value = (vj >= 0) & (vj < vl[..., None])
        kt_w = np.concatenate([kt, np.zeros(kt.shape[:-1] + (VM,), dtype=kt.dtype)], -1)
        token = np.where(is_key, kt_w, np.take_along_axis(vt, np.clip(vj, 0, VM - 1), -1))
        return token, is_key, is_value

    tok, is_key, is_value = pair_cells(
        np.concatenate([k_len, np.take_along_axis(k_len, probe, 1)], 1),
        np.concatenate([v_len, np.take_along_axis(v_len, probe, 1)], 1),
        np.concatenate([k_tok, k_tok[rows, probe]], 1),
        np.concatenate([v_tok, v_tok[rows, probe]], 1))
    kept = np.concatenate([included, np.ones((n, 1), dtype=bool)], 1)[..., None]
    asked = np.concatenate([repeated & included, np.ones((n, 1), dtype=bool)], 1)[..., None]
    valid = ((is_key | is_value) & kept).reshape(n, -1)
    scored = (is_value & asked).reshape(n, -1)
    tok = tok.reshape(n, -1)

    # Left-pad the stream to T+1 tokens, then read it next-token style.
    dest = (T + 1 - valid.sum(1))[:, None] + np.cumsum(valid, axis=1) - 1
    r, c = np.nonzero(valid)
    seq = np.full((n, T + 1), pad, dtype=np.int64)
    seq[r, dest[r, c]] = tok[r, c]
    target = np.zeros((n, T + 1), dtype=bool)
    target[r, dest[r, c]] = scored[r, c]
    y = np.where(target[:, 1:], seq[:, 1:] - nk, -100)
    return {"x": seq[:, :-1], "y": y, "mask": target[:, 1:]}


def previous_value_motif(arrays: Arrays, num_keys: int, pad: int) -> np.ndarray:
    """At each scored step, the token at the same offset of the value motif shown just before
    the current key (its last token if shorter): "repeat the last value", no binding."""
    x, mask = arrays["x"], arrays["mask"]
    n, T = x.shape
    kind = np.where(x == pad, 0, np.where(x < num_keys, 1, 2))  # pad, key, value
    idx = np.broadcast_to(np.arange(T), (n, T))
    run_start = np.maximum.accumulate(np.where(np.r_[np.ones((1, n), bool), (kind[:, 1:] != kind[:, :-1]).T].T,
                                               idx, 0), axis=1)
    r, p = np.nonzero(mask)
    in_value = kind[r, p] == 2
    offset = np.where(in_value, p - run_start[r, p] + 1, 0)
    key_start = np.where(in_value, run_start[r, np.maximum(run_start[r, p] - 1, 0)], run_start[r, p])
    prev_end = key_start - 1
    has_prev = (prev_end >= 0) & (kind[r, np.maximum(prev_end, 0)] == 2)
    prev_start = run_start[r, np.maximum(prev_end, 0)]
    pick = np.minimum(prev_start + offset, prev_end)
    return np.where(has_prev, x[r, np.maximum(pick, 0)] - num_keys, 0)


@TASKS.register("fuzzy_in_context_recall")
@dataclass(frozen=True)
class FuzzyInContextRecallTask(Task):
    vocab_size: int = task_field("V: keys, values and the pad token (the last one)")
    seq_len: int = task_field("T: tokens the model reads (MAD's sequence length)")
    key_motif_size: int = task_field("longest key motif; test keys are always this long")
    value_motif_size: int = task_field("longest value motif (lengths 1.. uniform)")

    def __post_init__(self) -> None:
        nk = (self.vocab_size - 1) // 2
        self.require(self.vocab_size >= 5, "vocab_size", "an integer >= 5")
        self.require(1 <= self.key_motif_size <= nk, "key_motif_size", f"an integer in [1, {nk}]")
        self.require(1 <= self.value_motif_size <= self.vocab_size - 1 - nk, "value_motif_size",
                     f"an integer in [1, {self.vocab_size - 1 - nk}]")
        W = self.key_motif_size + self.value_motif_size
        self.require(self.seq_len > 2 * W, "seq_len", f"an integer > 2 * (key + value motif) ({2 * W})")

    @property
    def num_keys(self) -> int:
        return (self.vocab_size - 1) // 2

    @property
    def num_values(self) -> int:
        return self.vocab_size - 1 - self.num_keys

    @property
    def spec(self) -> TaskSpec:
        # The number of scored steps varies: no serial positions.
        return token_recall_spec(
            self.vocab_size, self.num_values, self.seq_len,
            chance_note=f"uniform guess among {self.num_values} value tokens at each scored token "
                        "(within a motif tokens are distinct, so elimination does a little better)",
            paper="Poli et al. 2024, Mechanistic Design and Scaling of Hybrid Architectures (MAD)",
            tags=("associative-recall", "binding", "fuzzy"),
        )

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The evaluation distribution: keys of ``key_motif_size`` tokens."""
        return self.generate_split("test", n, rng)

    def generate_split(self, split: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Training sequences draw key motifs of every length; validation and test keys of
        ``key_motif_size`` tokens (as MAD). The data module draws every split, fresh training
        epochs and held-out redraws included, through here."""
        return fuzzy_recall_arrays(n, rng, self.vocab_size, self.seq_len, self.key_motif_size,
                                   self.value_motif_size, training=split == "train")

    def baselines(self, train: Arrays, test: Arrays) -> dict[str, Baseline]:
        """Beside the memoryless ones, two that remember value tokens but no key-value binding."""
        nk, nv, pad = self.num_keys, self.num_values, self.vocab_size - 1
        out = super().baselines(train, test)
        out["most_frequent_value"] = Baseline(
            one_hot(value_history_baselines(test, nk, nk + nv)["most_frequent"], nv),
            "the most frequent value token so far (ties: the most recent): values, no bindings",
            memoryless=False)
        out["previous_value_motif"] = Baseline(
            one_hot(previous_value_motif(test, nk, pad), nv),
            "the value motif shown just before the current key, token by token", memoryless=False)
        return out
