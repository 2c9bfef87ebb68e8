"""Associative recall (Ba, Hinton, Mnih, Leibo & Ionescu 2016, "Using fast weights to attend
to the recent past", section 4.1).

K key-value pairs, then two query markers, then one of the keys; answer its value::

    c 9 k 8 j 3 f 1 ? ? c   ->  9

Keys are distinct letters (drawn without replacement from ``num_keys``); values are digits
drawn *with* replacement (as in the paper: ``j0a5s5z2??a -> 5``; one public reproduction
draws them without replacement, which lets a model answer by elimination). Tokens:
0..V-1 values, V..V+K_all-1 keys, then the query marker; with the paper's 26 letters and
10 digits the vocabulary is 37. Scored on the last step only; chance is 1/num_values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import Arrays, Baseline, Task, TaskSpec, task_field


@TASKS.register("associative_recall")
@dataclass(frozen=True)
class AssociativeRecallTask(Task):
    num_pairs: int = task_field("K: key-value pairs shown before the query")
    num_keys: int = task_field("key alphabet (26 letters); keys in a trial are distinct")
    num_values: int = task_field("value alphabet (10 digits), drawn with replacement; chance is 1/num_values")

    def __post_init__(self) -> None:
        self.require(self.num_pairs >= 1, "num_pairs", "an integer >= 1")
        self.require(self.num_keys >= self.num_pairs, "num_keys", f"an integer >= num_pairs ({self.num_pairs})")
        self.require(self.num_values >= 2, "num_values", "an integer >= 2")

    @property
    def query_marker(self) -> int:
        return self.num_values + self.num_keys

    @property
    def seq_len(self) -> int:
        return 2 * self.num_pairs + 3

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(
            input_kind="tokens",
            input_size=self.num_values + self.num_keys + 1,
            output_kind="classes",
            output_size=self.num_values,
            scored="one",
            seq_len=self.seq_len,
            chance={"acc": 1.0 / self.num_values, "recall": 1.0 / self.num_values},
            chance_note=f"values are uniform over {self.num_values} and independent of the query",
            default_head="sequence",
            paper="Ba, Hinton, Mnih, Leibo & Ionescu 2016, Using Fast Weights to Attend to the Recent Past",
            tags=("working-memory", "binding"),
        )

    def baselines(self, train: Arrays, test: Arrays) -> dict[str, Baseline]:
        """Beside the memoryless ones: answer the value shown most often in the trial, ignoring the
        keys (ties: the earliest shown). It remembers *which* values were shown but not which key
        each belongs to, so a model must beat it to show that it binds keys to values."""
        out = super().baselines(train, test)
        values = test["x"][:, 1:2 * self.num_pairs:2]  # (n, K) the values shown
        counts = (values[:, :, None] == values[:, None, :]).sum(2)  # how often each shown value occurs
        first_most = values[np.arange(len(values)), counts.argmax(1)]  # argmax: the earliest of the ties
        preds = np.zeros((len(values), self.num_values), dtype=np.float32)
        preds[np.arange(len(values)), first_most] = 1.0
        out["most_frequent_value"] = Baseline(preds, "the value shown most often in the trial, ignoring "
                                              "the keys (no binding)", memoryless=False)
        return out

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        K, T = self.num_pairs, self.seq_len
        # K distinct keys per trial: the first K of a random permutation of the key alphabet.
        keys = np.argsort(rng.random((n, self.num_keys)), axis=1)[:, :K]
        values = rng.integers(0, self.num_values, size=(n, K))
        which = rng.integers(0, K, size=n)
        rows = np.arange(n)
        x = np.empty((n, T), dtype=np.int64)
        x[:, 0:2 * K:2] = keys + self.num_values
        x[:, 1:2 * K:2] = values
        x[:, 2 * K:2 * K + 2] = self.query_marker
        x[:, -1] = keys[rows, which] + self.num_values
        y = np.full((n, T), -100, dtype=np.int64)
        y[:, -1] = values[rows, which]
        mask = np.zeros((n, T), dtype=bool)
        mask[:, -1] = True
        return {"x": x, "y": y, "mask": mask}
