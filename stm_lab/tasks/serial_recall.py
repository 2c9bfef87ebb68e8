"""Serial recall / digit span: a list of L items (L varies per trial), a delay, a recall cue,
then the list in order. Strict serial-position scoring: an item counts only in its own place.

Layout with lengths L in [min_length, max_length], delay D, items 1..S (0 blank, S+1 cue)::

    input : s_1 .. s_L | 0 x (D-1) | S+1 | 0 x L | 0 padding ...     length 2*max_length + D
    target:                               s_1 .. s_L                   scored only here

So the cue sits at index L+D-1 and every item is recalled L+D steps after it was shown,
whatever L is; the padding after a short list is never scored. With min_length=max_length
this is the copy task with a short delay; the variable length is what makes it a span task
(the network cannot count on a fixed list length). Chance is 1/S per position and S^-L for
a whole list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import Task, TaskSpec, task_field


@TASKS.register("serial_recall")
@dataclass(frozen=True)
class SerialRecallTask(Task):
    min_length: int = task_field("shortest list")
    max_length: int = task_field("longest list (L is uniform in [min_length, max_length] per trial)")
    delay: int = task_field("D: steps from the end of the list to the recall cue (D-1 blanks, then the cue)")
    num_items: int = task_field("S: item alphabet (10 = digits); chance is 1/S per position")

    def __post_init__(self) -> None:
        self.require(self.min_length >= 1, "min_length", "an integer >= 1")
        self.require(self.max_length >= self.min_length, "max_length", f"an integer >= min_length ({self.min_length})")
        self.require(self.delay >= 1, "delay", "an integer >= 1")
        self.require(self.num_items >= 2, "num_items", "an integer >= 2")

    @property
    def cue(self) -> int:
        return self.num_items + 1

    @property
    def seq_len(self) -> int:
        return 2 * self.max_length + self.delay

    @property
    def whole_list_chance(self) -> float:
        """S^-L, averaged over the list lengths L (uniform in [min_length, max_length])."""
        lengths = range(self.min_length, self.max_length + 1)
        return sum(self.num_items ** -L for L in lengths) / len(lengths)

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(
            input_kind="tokens",
            input_size=self.num_items + 2,
            output_kind="classes",
            output_size=self.num_items,
            scored="steps",
            seq_len=self.seq_len,
            chance={"acc": 1.0 / self.num_items, "recall": 1.0 / self.num_items,
                    "acc_pos": 1.0 / self.num_items, "acc_sequence": self.whole_list_chance},
            chance_note=f"uniform guess among {self.num_items} items at each serial position; "
                        f"a whole list: {self.num_items}^-L averaged over the list lengths",
            default_head="per_step",
            positions=self.max_length,
            paper="Botvinick & Plaut 2006, Short-term memory for serial order: a recurrent neural network model",
            tags=("working-memory", "serial-recall", "span"),
        )

    def decode(self, classes: np.ndarray) -> list[int]:
        """Class c is the symbol token c + 1 (0 is the blank): predictions read as the input's tokens."""
        return [int(c) + 1 for c in classes]

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        T, M = self.seq_len, self.max_length
        lengths = rng.integers(self.min_length, self.max_length + 1, size=n)
        items = rng.integers(1, self.num_items + 1, size=(n, M))
        steps = np.arange(M)
        present = steps[None, :] < lengths[:, None]  # (n, M): which list slots exist
        rows = np.arange(n)
        x = np.zeros((n, T), dtype=np.int64)
        x[:, :M] = np.where(present, items, 0)
        cue_at = lengths + self.delay - 1
        x[rows, cue_at] = self.cue
        y = np.full((n, T), -100, dtype=np.int64)
        mask = np.zeros((n, T), dtype=bool)
        recall_at = cue_at[:, None] + 1 + steps[None, :]  # (n, M); only the first L are real
        r, c = np.nonzero(present)
        y[r, recall_at[r, c]] = items[r, c] - 1
        mask[r, recall_at[r, c]] = True
        return {"x": x, "y": y, "mask": mask, "length": lengths.astype(np.int64)}
