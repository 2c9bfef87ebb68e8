"""n-back: a stream of symbols; at every step from n on, answer "is this the symbol shown n
steps back?".

With uniform symbols matches would occur at rate 1/S, so the match rate is controlled:
at each step t >= n the symbol repeats x[t-n] with probability ``match_rate`` and is
otherwise drawn uniformly from the other S-1 symbols. Every step t >= n is scored.

Scoring. Positives are the minority, so plain accuracy flatters a model that never says
"match" (it scores 1 - match_rate). The headline metric is macro recall (balanced
accuracy: the mean of the recalls of "match" and "no match"), for which *every*
memoryless predictor scores exactly 0.5, whatever the match rate; the recall of the
positive class (``recall_pos``, the hit rate) and plain accuracy are logged beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import Task, TaskSpec, task_field


@TASKS.register("nback")
@dataclass(frozen=True)
class NBackTask(Task):
    n: int = task_field("compare each symbol with the one n steps back")
    length: int = task_field("stream length; steps n..length-1 are scored")
    num_symbols: int = task_field("S: symbol alphabet")
    match_rate: float = task_field("probability that a scored step is a match")

    def __post_init__(self) -> None:
        self.require(self.n >= 1, "n", "an integer >= 1")
        self.require(self.length > self.n, "length", f"an integer > n ({self.n})")
        self.require(self.num_symbols >= 2, "num_symbols", "an integer >= 2")
        self.require(0.0 < self.match_rate < 1.0, "match_rate", "a number in (0, 1)")

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(
            input_kind="tokens",
            input_size=self.num_symbols,
            output_kind="classes",
            output_size=2,
            scored="steps",
            seq_len=self.length,
            chance={"acc": 0.5, "recall": 0.5, "recall_pos": 0.5},
            chance_note="a coin flip: 0.5 on every metric; macro recall (balanced accuracy) of any "
                        "memoryless predictor is 0.5, but always answering 'no match' has accuracy "
                        f"{1 - self.match_rate:.3f} (the majority baseline)",
            default_head="per_step",
            paper="Kirchner 1958 (n-back); RNN models: Lei, Ito & Bashivan 2024",
            tags=("working-memory", "updating"),
            metrics=("acc", "recall", "recall_pos"),
            headline="recall",
        )

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        T, S, k = self.length, self.num_symbols, self.n
        x = np.empty((n, T), dtype=np.int64)
        x[:, :k] = rng.integers(0, S, size=(n, k))
        match = rng.random((n, T)) < self.match_rate
        # A non-match is uniform over the S-1 other symbols: shift by 1..S-1 modulo S.
        shift = rng.integers(1, S, size=(n, T))
        for t in range(k, T):
            x[:, t] = np.where(match[:, t], x[:, t - k], (x[:, t - k] + shift[:, t]) % S)
        y = np.full((n, T), -100, dtype=np.int64)
        y[:, k:] = match[:, k:]
        mask = np.zeros((n, T), dtype=bool)
        mask[:, k:] = True
        return {"x": x, "y": y, "mask": mask}
