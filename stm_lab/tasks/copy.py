"""Copy memory (Arjovsky, Shah & Bengio 2016): recall a list of symbols after a delay.

Layout for list length L, delay T, symbols 1..S (0 is blank, S+1 the delimiter)::

    input : s_1 .. s_L | 0 x (T-1) | S+1 | 0 x L        length T + 2L
    target:                               s_1 .. s_L    scored only here

With L=10, S=8 this is the paper's task: delimiter at index T+9, targets at
T+10 .. T+19, every symbol recalled T+10 steps after it was shown. One
deliberate difference: the paper's 9-way output also predicts the blanks and is
scored on all T+20 steps, where a memoryless model already looks near-perfect.
Here only the recall window is scored and the output is over the S symbols, so
chance is exactly 1/S.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import Task, TaskSpec, task_field


@TASKS.register("copy")
@dataclass(frozen=True)
class CopyTask(Task):
    delay: int = task_field("T: steps from the end of the list to the delimiter (T-1 blanks, then the cue)")
    list_length: int = task_field("L: symbols to remember")
    num_symbols: int = task_field("S: alphabet size; chance is 1/S")

    def __post_init__(self) -> None:
        self.require(self.delay >= 1, "delay", "an integer >= 1")
        self.require(self.list_length >= 1, "list_length", "an integer >= 1")
        self.require(self.num_symbols >= 2, "num_symbols", "an integer >= 2")

    @property
    def delimiter(self) -> int:
        return self.num_symbols + 1

    @property
    def seq_len(self) -> int:
        return self.delay + 2 * self.list_length

    @property
    def recall_start(self) -> int:
        """Index of the first scored step (one past the delimiter)."""
        return self.list_length + self.delay

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(
            input_kind="tokens",
            input_size=self.num_symbols + 2,
            output_kind="classes",
            output_size=self.num_symbols,
            scored="steps",
            seq_len=self.seq_len,
            chance={"acc": 1.0 / self.num_symbols, "recall": 1.0 / self.num_symbols,
                    "acc_pos": 1.0 / self.num_symbols, "acc_sequence": self.num_symbols ** -self.list_length},
            chance_note=f"uniform guess among {self.num_symbols} symbols at each step of the recall window; "
                        f"a whole list of {self.list_length}: {self.num_symbols}^-{self.list_length}",
            default_head="per_step",
            positions=self.list_length,
            paper="Arjovsky, Shah & Bengio 2016, Unitary Evolution Recurrent Neural Networks",
            tags=("long-range", "serial-recall"),
        )

    def delay_mask(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The T-1 blanks between the end of the list and the delimiter (same for every sequence)."""
        delay = mask.clone()
        delay[:] = False
        delay[:, self.list_length:self.recall_start - 1] = True
        return delay

    def decode(self, classes: np.ndarray) -> list[int]:
        """Class c is the symbol token c + 1 (0 is the blank): predictions read as the input's tokens."""
        return [int(c) + 1 for c in classes]

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        L, T = self.list_length, self.seq_len
        symbols = rng.integers(1, self.num_symbols + 1, size=(n, L))
        x = np.zeros((n, T), dtype=np.int64)
        x[:, :L] = symbols
        x[:, self.recall_start - 1] = self.delimiter
        y = np.full((n, T), -100, dtype=np.int64)
        y[:, self.recall_start:] = symbols - 1  # classes 0..S-1
        mask = np.zeros((n, T), dtype=bool)
        mask[:, self.recall_start:] = True
        return {"x": x, "y": y, "mask": mask}
