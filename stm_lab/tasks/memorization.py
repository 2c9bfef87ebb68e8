"""Memorization, from the MAD suite (Poli et al. 2024; generator ``athms/mad-lab
mad/data/instances.py``, ``generate_kv_map`` and ``generate_memorization_instance``).

A fixed key-to-value map, the same in every sequence and every split, is to be learnt into
the weights; each sequence shows keys, each followed by an insert token at which the key's
value is asked::

    input : k1 I k2 I ... k(T/2) I
    target:    v1    v2 ...      v(T/2)     at the insert tokens only

Vocabulary V: the last token is the insert token I; keys {0 .. (V-1)//2 - 1}; values the rest
of {0 .. V-2}. The map sends the keys to distinct values (a random injection), drawn from
``map_seed`` alone, so it does not change with the run's seed (MAD: seed 12345). Keys in a
sequence are uniform with replacement. Output over the values: chance 1/number of values.

**This is not a short-term memory task, and its test repeats its training items on purpose.**
The only thing held across time is the key for one step; what is measured is how much of the
map the weights store, so every test key (and its value) occurs in training: there is nothing
else to test. So evaluation items are not held out (``held_out = False``, as for a fixed
dataset; only ``data.regime=fixed``), and the overlap is measured, an item being a key and its
value: :meth:`overlap_with_train` is the share of the scored keys of a split that the training
split shows, recorded in summary.json (``data.overlap_with_train``; 1.0 at the default size).
Report it apart from the in-context tasks. The training-set size is the difficulty knob (MAD:
256 sequences); with too few, some keys are never shown in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import Arrays, Task, TaskSpec, task_field, token_recall_spec


@TASKS.register("memorization")
@dataclass(frozen=True)
class MemorizationTask(Task):
    vocab_size: int = task_field("V: keys, values and the insert token (the last one)")
    seq_len: int = task_field("T: T/2 key-insert pairs per sequence (even)")
    map_seed: int = task_field("seed of the fixed key-to-value map (not the run seed)")

    # Test items intentionally occur in training: the task measures in-weights memory of a
    # fixed map, so the test asks for the very pairs the training split shows.
    held_out = False

    def __post_init__(self) -> None:
        self.require(self.vocab_size >= 4, "vocab_size", "an integer >= 4")
        self.require(self.seq_len >= 2 and self.seq_len % 2 == 0, "seq_len", "an even integer >= 2")

    @property
    def num_keys(self) -> int:
        return (self.vocab_size - 1) // 2

    @property
    def num_values(self) -> int:
        return self.vocab_size - 1 - self.num_keys

    def value_map(self) -> np.ndarray:
        """(num_keys,) value token of each key: distinct values, fixed by ``map_seed``."""
        rng = np.random.default_rng(self.map_seed)
        return rng.permutation(self.num_values)[:self.num_keys] + self.num_keys

    @property
    def spec(self) -> TaskSpec:
        return token_recall_spec(
            self.vocab_size, self.num_values, self.seq_len,
            chance_note=f"uniform guess among {self.num_values} values. In-weights memory, not "
                        "short-term memory: the key-to-value map is fixed, so the test split repeats "
                        "the training pairs on purpose (data.overlap_with_train); report it apart",
            paper="Poli et al. 2024, Mechanistic Design and Scaling of Hybrid Architectures (MAD)",
            tags=("in-weights", "memorization"),
        )

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        T, nk = self.seq_len, self.num_keys
        keys = rng.integers(0, nk, size=(n, T // 2))
        x = np.full((n, T), self.vocab_size - 1, dtype=np.int64)
        x[:, 0::2] = keys
        y = np.full((n, T), -100, dtype=np.int64)
        y[:, 1::2] = self.value_map()[keys] - nk
        return {"x": x, "y": y, "mask": y >= 0}

    def overlap_with_train(self, train: Arrays, evaluate: Arrays) -> float:
        """Share of ``evaluate``'s scored steps whose key occurs in the training split (1.0 when
        the training set covers the map, the intended regime): an item is a key and its value,
        the same in every sequence, not a whole sequence."""
        seen = np.zeros(self.num_keys, dtype=bool)
        seen[np.unique(train["x"][:, 0::2])] = True
        return float(seen[evaluate["x"][:, 0::2]].mean())
