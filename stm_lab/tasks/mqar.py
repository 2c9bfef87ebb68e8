"""Multi-query associative recall, MQAR (Arora, Eyuboglu et al. 2023, "Zoology: Measuring and
improving recall in efficient language models"; generator ``zoology/data/multiquery_ar.py``).

K key-value pairs, then a query region in which every key comes back once; at each returning
key the answer is its value. Vocabulary V, length T (even), K pairs::

    position : 0  1  2  3 ...  2K-1 | 2K ...                                    T-1
    input    : k1 v1 k2 v2 ...  vK   | 0  0  k2 0  0 ... k1 0 ...    (0 = filler)
    target   :                       |       v2           v1         only at the keys

- keys: K distinct tokens from {1 .. V/2-1}; values: K distinct tokens from {V/2 .. V-1};
  both fresh in every sequence (V/2 is ``V // 2``);
- the query region has S = (T - 2K)/2 slots at even offsets; key j goes to slot s_j, the
  slots drawn without replacement with P(s) proportional to (s+1)^(a-1), keys in order
  (key 1 gets the first draw), so short key-to-query gaps dominate for small ``power_a``
  and ``power_a=1`` is uniform;
- the filler is token 0, or with ``random_non_queries`` uniform tokens from [0, V) (which may
  equal a key or a value, as in Zoology's code);
- the value is the target *at the key's position* (the labels are already aligned: the value
  never follows as an input).

Scored only at the K query positions (as Zoology's metric, which ignores every other label);
the output is over the V - V/2 value tokens (class = value - V/2), so chance is 1/(V - V/2).
Checked against Zoology's ``multiquery_ar`` (layout, key/value ranges, power law, filler);
one deliberate difference: Zoology asserts V > T, which the layout does not need, so it is
not required here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.sampling import (
    baseline_rng,
    distinct,
    shuffle_rows,
    weighted_without_replacement,
)
from stm_lab.tasks.spec import (
    Arrays,
    Baseline,
    Task,
    TaskSpec,
    one_hot,
    task_field,
    token_recall_spec,
)


def mqar_arrays(n: int, rng: np.random.Generator, vocab_size: int, seq_len: int, num_pairs: int,
                power_a: float, random_non_queries: bool) -> Arrays:
    """``n`` MQAR sequences: ``x``, ``y`` (value classes at the queries, -100 elsewhere), ``mask``."""
    V, T, K = vocab_size, seq_len, num_pairs
    half = V // 2
    keys = distinct(rng, (n, K), 1, half)
    values = distinct(rng, (n, K), half, V)
    slots = (T - 2 * K) // 2
    weights = np.arange(1, slots + 1, dtype=np.float64) ** (power_a - 1.0)
    slot = weighted_without_replacement(rng, n, weights, K)  # (n, K): key j's slot
    query = 2 * K + 2 * slot
    rows = np.arange(n)[:, None]
    x = np.zeros((n, T), dtype=np.int64)
    x[:, 0:2 * K:2] = keys
    x[:, 1:2 * K:2] = values
    x[rows, query] = keys
    filler = rng.integers(0, V, size=(n, T))  # drawn either way: one stream layout
    if random_non_queries:
        x = np.where(x == 0, filler, x)
    y = np.full((n, T), -100, dtype=np.int64)
    y[rows, query] = values - half
    return {"x": x, "y": y, "mask": y >= 0}


def shown_values(arrays: Arrays, num_pairs: int, vocab_size: int) -> np.ndarray:
    """(n, K) value classes in the order the pairs were shown (read from the inputs)."""
    return arrays["x"][:, 1:2 * num_pairs:2] - vocab_size // 2


def order_shortcut(arrays: Arrays, num_pairs: int, vocab_size: int) -> np.ndarray:
    """Answer the i-th query with the i-th value shown. It knows the values and their order but
    not which key each belongs to; it beats 1/K because earlier keys tend to be asked first
    (key j gets the j-th weighted draw)."""
    return shown_values(arrays, num_pairs, vocab_size).reshape(-1)


def bag_of_values(arrays: Arrays, num_pairs: int, vocab_size: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Answer the queries with the K values shown, in a random order: it knows which values
    were shown but not which key each belongs to (1/K in expectation, values being distinct)."""
    return shuffle_rows(shown_values(arrays, num_pairs, vocab_size), rng).reshape(-1)


@TASKS.register("mqar")
@dataclass(frozen=True)
class MQARTask(Task):
    vocab_size: int = task_field("V: keys from {1..V/2-1}, values from {V/2..V-1}, 0 is filler")
    seq_len: int = task_field("T: sequence length (even; at least 4K)")
    num_pairs: int = task_field("K: key-value pairs, each queried exactly once")
    power_a: float = task_field("a: query slot s drawn with P(s) ~ (s+1)^(a-1); 1 = uniform")
    random_non_queries: bool = task_field("filler: token 0 (false, Zoology's paper figures) "
                                          "or uniform random tokens (true, its code default)")

    def __post_init__(self) -> None:
        self.require(self.num_pairs >= 1, "num_pairs", "an integer >= 1")
        self.require(self.vocab_size // 2 - 1 >= self.num_pairs, "vocab_size",
                     f"an integer with V//2 - 1 >= num_pairs ({self.num_pairs}): keys are distinct")
        self.require(self.seq_len % 2 == 0 and self.seq_len >= 4 * self.num_pairs, "seq_len",
                     f"an even integer >= 4 * num_pairs ({4 * self.num_pairs})")
        self.require(self.power_a > 0, "power_a", "a number > 0")
        self.require(isinstance(self.random_non_queries, bool), "random_non_queries", "true or false")

    @property
    def num_values(self) -> int:
        return self.vocab_size - self.vocab_size // 2

    @property
    def spec(self) -> TaskSpec:
        # positions: the i-th query of a sequence (queries in order of position).
        return token_recall_spec(
            self.vocab_size, self.num_values, self.seq_len, positions=self.num_pairs,
            chance_note=f"uniform guess among the {self.num_values} value tokens at each query; all "
                        f"{self.num_pairs} queries of a sequence: {self.num_values}^-{self.num_pairs}",
            paper="Arora, Eyuboglu et al. 2023, Zoology: Measuring and Improving Recall in "
                  "Efficient Language Models",
            tags=("associative-recall", "binding", "multi-query"),
        )

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return mqar_arrays(n, rng, self.vocab_size, self.seq_len, self.num_pairs,
                           self.power_a, self.random_non_queries)

    def baselines(self, train: Arrays, test: Arrays) -> dict[str, Baseline]:
        """Beside the memoryless ones, two that remember the values but not the bindings: a
        model must beat both to show it binds keys to values."""
        K, V, C = self.num_pairs, self.vocab_size, self.num_values
        out = super().baselines(train, test)
        out["bag_of_values"] = Baseline(
            one_hot(bag_of_values(test, K, V, baseline_rng()), C),
            "the K values shown, in a random order: knows the values, not the bindings (1/K)",
            memoryless=False)
        out["order_shortcut"] = Baseline(
            one_hot(order_shortcut(test, K, V), C),
            "the i-th query answered with the i-th value shown (earlier keys tend to be asked first)",
            memoryless=False)
        return out
