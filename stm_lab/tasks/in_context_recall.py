"""In-context recall and noisy in-context recall, multi-query, from the MAD suite (Poli et al.
2024, "Mechanistic Design and Scaling of Hybrid Architectures"; generator
``athms/mad-lab mad/data/instances.py``, ``generate_in_context_recall_instance``).

A stream of key-value pairs over a small key alphabet, so keys come back; whenever a key
returns, its value (fixed within the sequence) is asked for at the key::

    input : k v k v k v ... k v k    (T-1 tokens: T/2 - 1 pairs, then a probe key)
    target: at every key that appeared before, its value; at the probe key, its value

Vocabulary V with N noise tokens: keys {0 .. (V-N)/2 - 1}, values the rest of the first V-N
tokens, noise tokens {V-N .. V-1}. Keys are uniform with replacement; a key's value is
uniform over the values (two keys may share one) and fixed within the sequence. With
``frac_noise`` > 0 (the *noisy* variant) each pair is replaced, with that probability, by
two uniform noise tokens; one random pair is always kept. The last pair repeats a key
already shown and only its key is input (MAD's T tokens minus the last, the answer).

Scoring: MAD trains on next-token prediction of the whole sequence and scores at test only
the values of keys seen before. stm_lab scores, and trains on, exactly those steps (the
other next tokens are random keys or first values, unpredictable): the value is the target
at its key's position, as in MQAR. Output over the value tokens (class = value - first value
token): chance 1/number of values (1/8 for V=16). MAD's metric is torchmetrics' class-macro
accuracy over the vocabulary; stm_lab's ``acc`` is token accuracy over the scored steps
(values are uniform, so the two differ only by sampling noise).

Differences from MAD, all deliberate: the kept pair is one of the T/2 - 1 real slots (MAD
draws it among T/2 slots, so with probability 2/T nothing is protected); the probe key is
uniform over the distinct keys shown, as in MAD.
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

_ROW_CHUNK_ELEMENTS = 20_000_000  # bound on rows x steps x values held at once by the baselines


def in_context_recall_arrays(n: int, rng: np.random.Generator, vocab_size: int, seq_len: int,
                             noise_vocab_size: int, frac_noise: float) -> Arrays:
    V, T, N = vocab_size, seq_len, noise_vocab_size
    content = V - N
    num_keys = content // 2
    slots = T // 2 - 1  # pairs before the probe
    rows = np.arange(n)
    keys = rng.integers(0, num_keys, size=(n, slots))
    value_of = rng.integers(num_keys, content, size=(n, num_keys))  # each key's value in this sequence
    noise = rng.random((n, slots)) < frac_noise
    noise[rows, rng.integers(0, slots, size=n)] = False
    noise_tokens = rng.integers(content, V, size=(n, slots, 2)) if N else None

    # A key is asked for when it appeared in an earlier real (non-noise) pair.
    first = np.full(n * num_keys, slots)
    real_r, real_s = np.nonzero(~noise)
    np.minimum.at(first, real_r * num_keys + keys[real_r, real_s], real_s)
    first = first.reshape(n, num_keys)
    seen_before = ~noise & (np.take_along_axis(first, keys, axis=1) < np.arange(slots))
    # The probe: uniform over the distinct keys shown.
    score = np.where(first < slots, rng.random((n, num_keys)), -1.0)
    probe = score.argmax(axis=1)

    values = np.take_along_axis(value_of, keys, axis=1)
    x = np.empty((n, T - 1), dtype=np.int64)
    x[:, 0:2 * slots:2] = keys
    x[:, 1:2 * slots:2] = values
    if N:
        x[:, 0:2 * slots:2][noise] = noise_tokens[..., 0][noise]
        x[:, 1:2 * slots:2][noise] = noise_tokens[..., 1][noise]
    x[:, -1] = probe
    y = np.full((n, T - 1), -100, dtype=np.int64)
    y[:, 0:2 * slots:2] = np.where(seen_before, values - num_keys, -100)
    y[:, -1] = value_of[rows, probe] - num_keys
    return {"x": x, "y": y, "mask": y >= 0}


def value_history_baselines(arrays: Arrays, value_low: int, value_high: int) -> dict[str, np.ndarray]:
    """Two weak-memory answers at every scored step, from the value tokens seen so far
    (tokens in [value_low, value_high), the last one included):

    - ``most_recent``: the latest value token;
    - ``most_frequent``: the most frequent value token, ties to the most recent of them.

    They remember values but no key-value binding. Returned as classes aligned with y[mask].
    """
    x, mask = arrays["x"], arrays["mask"]
    n, T = x.shape
    nv = value_high - value_low
    recent, frequent = [], []
    step = max(1, _ROW_CHUNK_ELEMENTS // (T * nv))
    for lo in range(0, n, step):
        xc, mc = x[lo:lo + step], mask[lo:lo + step]
        is_value = (xc >= value_low) & (xc < value_high)
        onehot = np.zeros(xc.shape + (nv,), dtype=np.int32)
        r, t = np.nonzero(is_value)
        onehot[r, t, xc[r, t] - value_low] = 1
        counts = onehot.cumsum(axis=1)
        # Index of each value's latest occurrence so far (-1 if none): ties go to the most recent.
        last = np.where(onehot == 1, np.arange(T)[None, :, None], -1)
        last = np.maximum.accumulate(last, axis=1)
        r, t = np.nonzero(mc)
        c, lt = counts[r, t], last[r, t]
        recent.append(lt.argmax(axis=1))
        frequent.append((c * T + lt).argmax(axis=1))
    return {"most_recent": np.concatenate(recent), "most_frequent": np.concatenate(frequent)}


@TASKS.register("in_context_recall")
@dataclass(frozen=True)
class InContextRecallTask(Task):
    vocab_size: int = task_field("V: all tokens, noise included (MAD: 16; noisy: 32 with 16 noise)")
    seq_len: int = task_field("T: MAD's sequence length (even); the model reads T-1 tokens")
    noise_vocab_size: int = task_field("N: noise tokens, the last N of the vocabulary (noisy: 16)")
    frac_noise: float = task_field("probability that a pair is replaced by two noise tokens (noisy: 0.2)")

    def __post_init__(self) -> None:
        self.require(self.seq_len % 2 == 0 and self.seq_len >= 4, "seq_len", "an even integer >= 4")
        self.require(0 <= self.noise_vocab_size <= self.vocab_size - 2, "noise_vocab_size",
                     f"an integer in [0, vocab_size - 2] ({self.vocab_size - 2})")
        self.require(0.0 <= self.frac_noise < 1.0, "frac_noise", "a number in [0, 1)")
        self.require(self.frac_noise == 0.0 or self.noise_vocab_size > 0, "frac_noise",
                     "0 unless noise_vocab_size > 0")

    @property
    def num_keys(self) -> int:
        return (self.vocab_size - self.noise_vocab_size) // 2

    @property
    def num_values(self) -> int:
        return self.vocab_size - self.noise_vocab_size - self.num_keys

    @property
    def spec(self) -> TaskSpec:
        noisy = f", {self.frac_noise:g} of the pairs noise" if self.frac_noise else ""
        # The number of scored steps varies: no serial positions.
        return token_recall_spec(
            self.vocab_size, self.num_values, self.seq_len - 1,
            chance_note=f"uniform guess among {self.num_values} values at each returning key{noisy}",
            paper="Poli et al. 2024, Mechanistic Design and Scaling of Hybrid Architectures (MAD)",
            tags=("associative-recall", "binding", "multi-query") + (("noisy",) if self.frac_noise else ()),
        )

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return in_context_recall_arrays(n, rng, self.vocab_size, self.seq_len,
                                        self.noise_vocab_size, self.frac_noise)

    def baselines(self, train: Arrays, test: Arrays) -> dict[str, Baseline]:
        """Beside the memoryless ones, two that remember the values seen but no key-value
        binding. With 8 keys values collide, so they beat 1/8 by far (MAD's baseline setting:
        most frequent 31.6%, most recent 24.9% in the reference; 32.0% and 24.8% here)."""
        lo, hi = self.num_keys, self.num_keys + self.num_values
        history = value_history_baselines(test, lo, hi)
        out = super().baselines(train, test)
        out["most_frequent_value"] = Baseline(
            one_hot(history["most_frequent"], self.num_values),
            "the most frequent value so far (ties: the most recent): values, no bindings",
            memoryless=False)
        out["most_recent_value"] = Baseline(
            one_hot(history["most_recent"], self.num_values),
            "the latest value shown: values, no bindings", memoryless=False)
        return out
