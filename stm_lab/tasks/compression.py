"""Compression, from the MAD suite (Poli et al. 2024; generator ``athms/mad-lab
mad/data/instances.py``, ``generate_compression_instance``).

A random token sequence ends in a compression token; from the state at that token the whole
sequence must be reconstructed. V tokens, length T::

    input : d1 d2 ... d(T-1) C | C C ... C          length 2T - 2
    target:                  d1 d2 ...    d(T-1)     at C and the T-2 steps after it

Data tokens are uniform over {0 .. V-2}; C = V-1. MAD decodes all T positions at once from
the last position with an MLP (its ``AutoEncoder`` backbone). Here the readout runs on after
C with C as the only input, one token per step, and only that window is scored: since those
inputs carry no content, everything recalled had to be in the state at the first C, the
bottleneck MAD imposes. (For a recurrent network; a model that can look back at its inputs,
attention, is not bottlenecked by this layout and needs a decoder from the state at C.)
So, for a recurrent network, this is the ``copy`` task with delay 1, sized by MAD's knobs.

Differences from MAD, deliberate: MAD also scores the compression token itself (free: it is
the input at that position), which lifts chance to about 9.6% at V=16, T=32; here only the
T-1 data tokens are scored and chance is exactly 1/(V-1). MAD's noise option is dead code
(its targets are the inputs) and is not offered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import (
    Arrays,
    Baseline,
    Task,
    TaskSpec,
    one_hot,
    task_field,
    token_recall_spec,
)


def compression_arrays(n: int, rng: np.random.Generator, vocab_size: int, seq_len: int) -> Arrays:
    V, T = vocab_size, seq_len
    data = rng.integers(0, V - 1, size=(n, T - 1))
    x = np.full((n, 2 * T - 2), V - 1, dtype=np.int64)
    x[:, :T - 1] = data
    y = np.full_like(x, -100)
    y[:, T - 1:] = data
    mask = np.zeros(x.shape, dtype=bool)
    mask[:, T - 1:] = True
    return {"x": x, "y": y, "mask": mask}


def last_token(arrays: Arrays, seq_len: int) -> np.ndarray:
    """The last data token, at every scored step (a one-token memory)."""
    return np.repeat(arrays["x"][:, seq_len - 2], seq_len - 1)


@TASKS.register("compression")
@dataclass(frozen=True)
class CompressionTask(Task):
    vocab_size: int = task_field("V: data tokens {0..V-2} and the compression token V-1")
    seq_len: int = task_field("T: T-1 data tokens plus the compression token (MAD's length)")

    def __post_init__(self) -> None:
        self.require(self.vocab_size >= 3, "vocab_size", "an integer >= 3")
        self.require(self.seq_len >= 2, "seq_len", "an integer >= 2")

    @property
    def spec(self) -> TaskSpec:
        S = self.vocab_size - 1
        return token_recall_spec(
            self.vocab_size, S, 2 * self.seq_len - 2, positions=self.seq_len - 1,
            chance_note=f"uniform guess among {S} data tokens at each position; the whole sequence: "
                        f"{S}^-{self.seq_len - 1} (MAD's figure, ~9.6% at V=16, T=32, also counts the "
                        "free compression token)",
            paper="Poli et al. 2024, Mechanistic Design and Scaling of Hybrid Architectures (MAD)",
            tags=("compression", "serial-recall", "capacity"),
        )

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return compression_arrays(n, rng, self.vocab_size, self.seq_len)

    def baselines(self, train: Arrays, test: Arrays) -> dict[str, Baseline]:
        """Beside the memoryless ones (the majority token is 1/(V-1): tokens are uniform), a
        one-token memory: (1 + (T-2)/(V-1)) / (T-1)."""
        out = super().baselines(train, test)
        out["last_token"] = Baseline(
            one_hot(last_token(test, self.seq_len), self.vocab_size - 1),
            "remembers only the last data token and repeats it: exact at the last position, "
            "chance elsewhere", memoryless=False)
        return out
