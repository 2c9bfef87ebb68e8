"""Items — what makes two sequences the same trial — and splits drawn so that no evaluation item
ever occurs in training.

Seed streams alone do not hold test items out: with 8 symbols and lists of 5 there are only
32,768 copy lists, and a quarter of a test split drawn from its own stream also occurs in a
10,000-list training split. So the test split is drawn first, validation excludes the test
items, and training — fixed or fresh — excludes both, each by redrawing until full,
deterministically per seed. A task whose item space is too small for that is told so, naming
its parameters.
"""

from __future__ import annotations

import numpy as np

from stm_lab.errors import ConfigError
from stm_lab.tasks.spec import Arrays, Task

_PRIME = np.uint64(0x100000001B3)
_ROUNDS = 64  # redraw rounds before an item space is declared too small


def item_keys(arrays: Arrays) -> np.ndarray:
    """A 64-bit key per sequence, from its input (and length): equal inputs, equal keys. The
    inputs decide a generated trial's answer, so the input is the item."""
    x = np.ascontiguousarray(arrays["x"])
    n = len(x)
    raw = x.reshape(n, -1).view(np.uint8)
    pad = (-raw.shape[1]) % 8
    if pad:
        raw = np.concatenate([raw, np.zeros((n, pad), dtype=np.uint8)], axis=1)
    words = raw.view(np.uint64)
    keys = np.full(n, 0xCBF29CE484222325, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            keys = (keys ^ words[:, j]) * _PRIME
        if "length" in arrays:
            keys = (keys ^ np.asarray(arrays["length"], dtype=np.uint64)) * _PRIME
    return keys


def concat(parts: list[Arrays]) -> Arrays:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def take(arrays: Arrays, index: np.ndarray) -> Arrays:
    return {k: v[index] for k, v in arrays.items()}


def draw_excluding(task: Task, n: int, rng: np.random.Generator, exclude: np.ndarray | None,
                   split: str) -> Arrays:
    """``n`` sequences of ``split`` from ``rng`` with no item in ``exclude``: excluded ones are
    dropped and more are drawn from the same stream, so the result depends only on the seed."""
    parts, have = [], 0
    for _ in range(_ROUNDS):
        batch = task.generate_split(split, max(n - have, 16), rng)
        if exclude is not None and len(exclude):
            batch = take(batch, np.flatnonzero(~np.isin(item_keys(batch), exclude)))
        parts.append(batch)
        have += len(batch["x"])
        if have >= n:
            return take(concat(parts), np.arange(n))
    params = ", ".join(f"data.{k}={v}" for k, v in task.params().items())
    raise ConfigError("data", params, hint=(
        f"the {split} split cannot be filled with items held out from validation and test: the task "
        f"has too few distinct trials for these split sizes; enlarge the item space ({params}) or "
        "shrink data.n_val / data.n_test"))


def overlap(keys: np.ndarray, reference: np.ndarray) -> float:
    """The share of ``keys`` that also occur in ``reference``."""
    return float(np.isin(keys, reference).mean()) if len(keys) else 0.0
