"""Selective copying (Gu & Dao 2023, "Mamba", section 4.1.1 and appendix E.1; generator
``state-spaces/s4 src/dataloaders/datasets/copying.py``, ``torch_copying_data(L, M, A,
variable=True)``; introduced as the denoising task by Jing et al. 2019).

M data tokens scattered among noise, then M markers; at the markers, the data tokens in order::

    input : 0 d1 0 0 d2 d3 0 ... 0 dM 0 | A-1 A-1 ... A-1      length L + 2M
    target:                             | d1  d2  ... dM       scored only here

Alphabet A: 0 is noise (blank), A-1 the marker, data tokens uniform from {1 .. A-2} with
replacement. The M data positions are a uniformly random M-subset of the first L + M
positions, sorted, so the order is kept; the spacing differs in every sequence, which is what
defeats a time-invariant model (plain copying, fixed spacing, does not). Output over the A-2
data symbols (class = token - 1): chance 1/(A-2) per token, (A-2)^-M per sequence.

MAD's "selective copying" (Poli et al. 2024) is a different layout: blanks inserted before
random data tokens, a single copy token, then M blanks at which the tokens are read. This
task follows Mamba's definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.sampling import baseline_rng, distinct, shuffle_rows
from stm_lab.tasks.spec import (
    Arrays,
    Baseline,
    Task,
    TaskSpec,
    one_hot,
    task_field,
    token_recall_spec,
)


def selective_copy_arrays(n: int, rng: np.random.Generator, num_tokens: int, num_blanks: int,
                          vocab_size: int) -> Arrays:
    M, L, A = num_tokens, num_blanks, vocab_size
    tokens = rng.integers(1, A - 1, size=(n, M))
    where = np.sort(distinct(rng, (n, M), 0, L + M), axis=1)
    x = np.zeros((n, L + 2 * M), dtype=np.int64)
    np.put_along_axis(x, where, tokens, axis=1)
    x[:, L + M:] = A - 1
    y = np.full_like(x, -100)
    y[:, L + M:] = tokens - 1
    mask = np.zeros(x.shape, dtype=bool)
    mask[:, L + M:] = True
    return {"x": x, "y": y, "mask": mask}


def data_tokens(arrays: Arrays, num_tokens: int) -> np.ndarray:
    """(n, M) classes of the data tokens in the order shown (the non-noise inputs before the markers)."""
    x = arrays["x"][:, :-num_tokens]
    rows, cols = np.nonzero(x)
    return (x[rows, cols] - 1).reshape(len(x), num_tokens)


def bag_without_order(arrays: Arrays, num_tokens: int, rng: np.random.Generator) -> np.ndarray:
    """The right multiset of tokens in a random order: which tokens, not where."""
    return shuffle_rows(data_tokens(arrays, num_tokens), rng).reshape(-1)


@TASKS.register("selective_copy")
@dataclass(frozen=True)
class SelectiveCopyTask(Task):
    num_tokens: int = task_field("M: data tokens to copy (Mamba: 16)")
    num_blanks: int = task_field("L: noise tokens among which they are scattered (Mamba: ~4096)")
    vocab_size: int = task_field("A: alphabet with 0 = noise and A-1 = marker (Mamba: 16)")

    def __post_init__(self) -> None:
        self.require(self.num_tokens >= 1, "num_tokens", "an integer >= 1")
        self.require(self.num_blanks >= 0, "num_blanks", "an integer >= 0")
        self.require(self.vocab_size >= 4, "vocab_size", "an integer >= 4 (noise, marker, two symbols)")

    @property
    def seq_len(self) -> int:
        return self.num_blanks + 2 * self.num_tokens

    @property
    def spec(self) -> TaskSpec:
        S = self.vocab_size - 2
        return token_recall_spec(
            self.vocab_size, S, self.seq_len, positions=self.num_tokens,
            chance_note=f"uniform guess among {S} data symbols at each marker "
                        f"(whole sequence: {S}^-{self.num_tokens})",
            paper="Gu & Dao 2023, Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
            tags=("long-range", "serial-recall", "selective"),
        )

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return selective_copy_arrays(n, rng, self.num_tokens, self.num_blanks, self.vocab_size)

    def baselines(self, train: Arrays, test: Arrays) -> dict[str, Baseline]:
        """Beside the memoryless ones (the majority token is 1/(A-2) on held-out data: tokens
        are uniform), one that remembers which tokens were shown but not where."""
        out = super().baselines(train, test)
        out["bag_without_order"] = Baseline(
            one_hot(bag_without_order(test, self.num_tokens, baseline_rng()), self.vocab_size - 2),
            "the sequence's own data tokens in a random order: which tokens, not their order",
            memoryless=False)
        return out
