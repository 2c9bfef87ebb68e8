"""Delayed match-to-sample (after Miller, Erickson & Desimone 1996; neurogym's DelayMatchSample).

A trial has named periods, one token per step::

    fixation | sample (s) | delay (blank) | test (t) | decision (go cue)
    target: match (1) if t == s, non-match (0) otherwise -- scored on the decision step only

Half the trials match; on a non-match the test stimulus is uniform over the other
stimuli, so the test stimulus alone carries no information about the answer and every
memoryless predictor scores 0.5 on the decision. (Per-step accuracy over the whole trial,
as some codebases report, would credit a do-nothing model with the fixation steps.)
Tokens: 0 blank, 1..S stimuli, S+1 fixation, S+2 go cue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import Task, TaskSpec, task_field


@TASKS.register("dms")
@dataclass(frozen=True)
class DelayedMatchTask(Task):
    num_stimuli: int = task_field("S: stimulus alphabet")
    fixation_steps: int = task_field("steps of fixation before the sample")
    sample_steps: int = task_field("steps the sample is shown")
    delay: int = task_field("blank steps between sample and test")
    test_steps: int = task_field("steps the test stimulus is shown")

    def __post_init__(self) -> None:
        self.require(self.num_stimuli >= 2, "num_stimuli", "an integer >= 2")
        self.require(self.fixation_steps >= 0, "fixation_steps", "an integer >= 0")
        for key in ("sample_steps", "delay", "test_steps"):
            self.require(getattr(self, key) >= 1, key, "an integer >= 1")

    @property
    def periods(self) -> dict[str, tuple[int, int]]:
        """[start, end) of each trial period, in steps."""
        out, t = {}, 0
        for name, steps in (("fixation", self.fixation_steps), ("sample", self.sample_steps),
                            ("delay", self.delay), ("test", self.test_steps), ("decision", 1)):
            out[name] = (t, t + steps)
            t += steps
        return out

    @property
    def seq_len(self) -> int:
        return self.periods["decision"][1]

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(
            input_kind="tokens",
            input_size=self.num_stimuli + 3,
            output_kind="classes",
            output_size=2,
            scored="one",
            seq_len=self.seq_len,
            chance={"acc": 0.5, "recall": 0.5},
            chance_note="half the trials match and the test stimulus alone says nothing about which",
            default_head="sequence",
            paper="Miller, Erickson & Desimone 1996; neurogym DelayMatchSample (Molano-Mazon et al. 2022)",
            tags=("working-memory", "cognitive"),
        )

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        S, p = self.num_stimuli, self.periods
        sample = rng.integers(1, S + 1, size=n)
        match = rng.random(n) < 0.5
        other = (sample - 1 + rng.integers(1, S, size=n)) % S + 1  # uniform over the other S-1
        test = np.where(match, sample, other)
        x = np.zeros((n, self.seq_len), dtype=np.int64)
        x[:, slice(*p["fixation"])] = S + 1
        x[:, slice(*p["sample"])] = sample[:, None]
        x[:, slice(*p["test"])] = test[:, None]
        x[:, p["decision"][0]] = S + 2
        y = np.full((n, self.seq_len), -100, dtype=np.int64)
        y[:, -1] = match
        mask = np.zeros((n, self.seq_len), dtype=bool)
        mask[:, -1] = True
        return {"x": x, "y": y, "mask": mask}
