"""Delayed match-to-sample (after Miller, Erickson & Desimone 1996; neurogym's DelayMatchSample).

A trial has named periods, one token per step::

    fixation | sample (s) | delay (blank, or a noise token) | test (t) | decision (go cue) | padding
    target: match (1) if t == s, non-match (0) otherwise -- scored on the decision step only

Half the trials match; on a non-match the test stimulus is uniform over the other stimuli, so
the test stimulus alone carries no information about the answer and every memoryless
predictor scores 0.5 on the decision. (Per-step accuracy over the whole trial, as some
codebases report, would credit a do-nothing model with the fixation steps.)

With a handful of stimuli and fixed timing there are only S² distinct trials (64 for S=8),
so every validation and test trial would also be a training trial. Two manipulations of the
working-memory literature make the trial space large enough to hold evaluation trials out:
the delay varies from trial to trial (``delay_jitter``: uniform in delay ± jitter; the
decision then comes at a trial-dependent step, right-padded), and each delay step shows a
task-irrelevant noise token with probability ``noise`` (a distractor the network must not
store). ``delay_jitter=0 noise=0`` is the classic fixed-timing task — its trials then cannot be
held out, which the data module says when the splits are built.
Tokens: 0 blank, 1..S stimuli, S+1 fixation, S+2 go cue, S+3..S+2+num_noise noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import Task, TaskSpec, task_field


@TASKS.register("dms")
@dataclass(frozen=True)
class DelayedMatchTask(Task):
    num_stimuli: int = task_field("S: stimulus alphabet")
    fixation_steps: int = task_field("steps of fixation before the sample")
    sample_steps: int = task_field("steps the sample is shown")
    delay: int = task_field("blank steps between sample and test (the mean, with jitter)")
    delay_jitter: int = task_field("the delay is uniform in [delay - jitter, delay + jitter] per trial")
    noise: float = task_field("probability that a delay step shows a noise token instead of a blank")
    num_noise: int = task_field("distinct noise tokens")
    test_steps: int = task_field("steps the test stimulus is shown")
    version = 2  # jitter and noise; version 1 had fixed timing and silent delays

    def __post_init__(self) -> None:
        self.require(self.num_stimuli >= 2, "num_stimuli", "an integer >= 2")
        self.require(self.fixation_steps >= 0, "fixation_steps", "an integer >= 0")
        for key in ("sample_steps", "delay", "test_steps", "num_noise"):
            self.require(getattr(self, key) >= 1, key, "an integer >= 1")
        self.require(0 <= self.delay_jitter < self.delay, "delay_jitter", f"an integer in [0, delay) = [0, {self.delay})")
        self.require(0.0 <= self.noise < 1.0, "noise", "a number in [0, 1)")

    @property
    def periods(self) -> dict[str, tuple[int, int]]:
        """[start, end) of each trial period, in steps, for a trial with the mean delay."""
        out, t = {}, 0
        for name, steps in (("fixation", self.fixation_steps), ("sample", self.sample_steps),
                            ("delay", self.delay), ("test", self.test_steps), ("decision", 1)):
            out[name] = (t, t + steps)
            t += steps
        return out

    @property
    def seq_len(self) -> int:
        return self.periods["decision"][1] + self.delay_jitter

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(
            input_kind="tokens",
            input_size=self.num_stimuli + 3 + self.num_noise,
            output_kind="classes",
            output_size=2,
            scored="one",
            seq_len=self.seq_len,
            chance={"acc": 0.5, "recall": 0.5},
            chance_note="half the trials match, and the test stimulus (or the noise) alone says nothing about which",
            default_head="sequence",
            paper="Miller, Erickson & Desimone 1996; neurogym DelayMatchSample (Molano-Mazon et al. 2022)",
            tags=("working-memory", "cognitive"),
        )

    def delay_mask(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The steps between the end of the sample and the first test step, noise included."""
        import torch

        S = self.num_stimuli
        t = torch.arange(x.shape[1], device=x.device)
        stimulus = (x >= 1) & (x <= S)
        sample_end = self.fixation_steps + self.sample_steps
        test_start = stimulus & (t >= sample_end)
        first_test = torch.where(test_start.any(1), test_start.float().argmax(1), torch.full_like(x[:, 0], x.shape[1]))
        return (t >= sample_end) & (t < first_test[:, None])

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        S, T = self.num_stimuli, self.seq_len
        sample = rng.integers(1, S + 1, size=n)
        match = rng.random(n) < 0.5
        other = (sample - 1 + rng.integers(1, S, size=n)) % S + 1  # uniform over the other S-1
        test = np.where(match, sample, other)
        delay = self.delay + rng.integers(-self.delay_jitter, self.delay_jitter + 1, size=n)
        noisy = rng.random((n, self.delay + self.delay_jitter)) < self.noise
        noise_token = S + 3 + rng.integers(0, self.num_noise, size=noisy.shape)
        t = np.arange(T)[None, :]
        sample_start = self.fixation_steps
        delay_start = sample_start + self.sample_steps
        test_start = delay_start + delay[:, None]
        decision = test_start[:, 0] + self.test_steps
        x = np.zeros((n, T), dtype=np.int64)
        x[:, :sample_start] = S + 1
        x[:, sample_start:delay_start] = sample[:, None]
        in_delay = (t >= delay_start) & (t < test_start)
        delay_noise = np.zeros((n, T), dtype=bool)
        delay_noise[:, delay_start:delay_start + noisy.shape[1]] = noisy
        noise_full = np.zeros((n, T), dtype=np.int64)
        noise_full[:, delay_start:delay_start + noisy.shape[1]] = noise_token
        x = np.where(in_delay & delay_noise, noise_full, x)
        in_test = (t >= test_start) & (t < test_start + self.test_steps)
        x = np.where(in_test, test[:, None], x)
        rows = np.arange(n)
        x[rows, decision] = S + 2
        y = np.full((n, T), -100, dtype=np.int64)
        y[rows, decision] = match
        mask = np.zeros((n, T), dtype=bool)
        mask[rows, decision] = True
        return {"x": x, "y": y, "mask": mask, "length": (decision + 1).astype(np.int64)}
