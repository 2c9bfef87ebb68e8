"""Linear memory capacity (Jaeger 2001, GMD Report 152).

Input: one channel of i.i.d. u(t) ~ U[-input_scale, input_scale]. Targets at step t:
u(t-1), ..., u(t-K) (one regression output per delay k), scored on every step after a
washout of ``washout`` steps (at least K, so every target exists and the initial state
has faded). MC_k is the squared correlation between u(t-k) and its readout on held-out
data; MC = sum_k MC_k (``test/mc``, with the curve as ``test/r2_lag_k``).

Two modes share this task: trained end to end (``head=auto``: a per-step linear readout
trained with the network), or Jaeger's own setting, a ridge readout solved in closed form
on a frozen network (``head=ridge`` with ``trainer.max_epochs=0``).

Bounds: MC <= N for N state units read out (an LSTM read through h only: N, not 2N).
Report the input scale with MC: for a nonlinear network MC changes with it (Ballarin et
al. 2025). Chance: a memoryless readout has r^2 = 0 at every delay (i.i.d. input), so
MC = 0; on finite test data the floor is about K / (scored steps), see chance_note.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import Task, TaskSpec, task_field


@TASKS.register("memory_capacity")
@dataclass(frozen=True)
class MemoryCapacityTask(Task):
    max_delay: int = task_field("K: delays 1..K are read out (rule of thumb: about 2N)")
    length: int = task_field("steps per sequence, washout included")
    washout: int = task_field("unscored steps at the start (>= max_delay)")
    input_scale: float = task_field("u(t) ~ U[-input_scale, input_scale]")

    def __post_init__(self) -> None:
        self.require(self.max_delay >= 1, "max_delay", "an integer >= 1")
        self.require(self.washout >= self.max_delay, "washout", f"an integer >= max_delay ({self.max_delay})")
        self.require(self.length > self.washout, "length", f"an integer > washout ({self.washout})")
        self.require(self.input_scale > 0, "input_scale", "a number > 0")

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(
            input_kind="real",
            input_size=1,
            output_kind="regression",
            output_size=self.max_delay,
            scored="steps",
            seq_len=self.length,
            chance={"mc": 0.0, "r2_lag": 0.0, "mse": self.input_scale ** 2 / 3},
            chance_note="MC of a memoryless readout: u is i.i.d., so r^2(u(t-k), f(u(t))) = 0 for k >= 1 "
                        "(finite-sample floor about K / number of scored test steps); MSE of always predicting 0: "
                        "Var(u) = input_scale^2 / 3",
            default_head="per_step",
            paper="Jaeger 2001, Short term memory in echo state networks (GMD Report 152)",
            tags=("memory-capacity", "regression"),
            metrics=("mse", "mc", "r2_lag"),
            headline="mc",
        )

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        T, K = self.length, self.max_delay
        u = rng.uniform(-self.input_scale, self.input_scale, size=(n, T)).astype(np.float32)
        y = np.zeros((n, T, K), dtype=np.float32)
        for k in range(1, K + 1):
            y[:, k:, k - 1] = u[:, :-k]
        mask = np.zeros((n, T), dtype=bool)
        mask[:, self.washout:] = True
        return {"x": u[:, :, None], "y": y, "mask": mask}
