"""Adding problem, in the Le et al. 2015 / Arjovsky et al. 2016 variant.

Two input channels over T steps: channel 0 holds values drawn from U[0, 1], channel 1
marks exactly two steps, one uniformly in the first half and one in the second half.
The target, read at the last step only, is the sum of the two marked values.

Baseline: always predicting 1 (the mean of the sum) scores MSE = Var(U1 + U2) = 1/6.
The often-quoted 0.1767 does not match this distribution; 1/6 is what a memoryless
predictor actually scores (tests/test_tasks.py checks it on generated data). The
TCN variant (both markers anywhere) changes the lag distribution and is not this task.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import Task, TaskSpec, task_field


@TASKS.register("adding")
@dataclass(frozen=True)
class AddingTask(Task):
    length: int = task_field("T: sequence length; one marker in each half")

    def __post_init__(self) -> None:
        self.require(self.length >= 2, "length", "an integer >= 2")

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(
            input_kind="real",
            input_size=2,
            output_kind="regression",
            output_size=1,
            scored="one",
            seq_len=self.length,
            chance={"mse": 1.0 / 6.0},
            chance_note="MSE of always predicting 1, the mean of the sum: Var(U1+U2) = 1/6",
            default_head="sequence",
            paper="Le, Jaitly & Hinton 2015; Arjovsky, Shah & Bengio 2016 (after Hochreiter & Schmidhuber 1997)",
            tags=("long-range", "regression"),
        )

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        T, half = self.length, self.length // 2
        values = rng.random((n, T), dtype=np.float64).astype(np.float32)
        first = rng.integers(0, half, size=n)
        second = rng.integers(half, T, size=n)
        rows = np.arange(n)
        x = np.zeros((n, T, 2), dtype=np.float32)
        x[:, :, 0] = values
        x[rows, first, 1] = 1.0
        x[rows, second, 1] = 1.0
        y = np.zeros((n, T, 1), dtype=np.float32)
        y[:, -1, 0] = values[rows, first] + values[rows, second]
        mask = np.zeros((n, T), dtype=bool)
        mask[:, -1] = True
        return {"x": x, "y": y, "mask": mask}
