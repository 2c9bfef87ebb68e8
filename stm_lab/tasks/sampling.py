"""Vectorised draws shared by the recall generators and their random baselines."""

from __future__ import annotations

import numpy as np

# The seed of the baselines that answer at random: a fixed stream, so that a run's floors are
# the same on every run of the same data.
BASELINE_SEED = 0


def baseline_rng() -> np.random.Generator:
    """The random stream of a baseline that answers at random (fixed: reproducible floors)."""
    return np.random.default_rng(BASELINE_SEED)


def shuffle_rows(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each row's entries in an independent random order (a bag: the right items, order forgotten)."""
    order = np.argsort(rng.random(values.shape), axis=1)
    return np.take_along_axis(values, order, axis=1)


def distinct(rng: np.random.Generator, shape: tuple[int, ...], low: int, high: int) -> np.ndarray:
    """Draws in [low, high), distinct along the last axis, uniform over ordered tuples.

    Small ranges take the first k of a random permutation; large ones draw with replacement
    and redraw the rows that repeat (rare when k is small against the range), so memory stays
    proportional to the output, not to the range. The method depends on (k, range) only,
    never on the number of rows, so the same parameters always use the same stream layout.
    """
    *rows_shape, k = shape
    span = high - low
    if k > span:
        raise ValueError(f"cannot draw {k} distinct values from a range of {span}")
    rows = int(np.prod(rows_shape)) if rows_shape else 1
    if span <= 4 * k:
        out = np.argsort(rng.random((rows, span)), axis=1)[:, :k] + low
    else:
        out = rng.integers(low, high, size=(rows, k))
        bad = _has_repeat(out)
        while bad.any():
            out[bad] = rng.integers(low, high, size=(int(bad.sum()), k))
            bad = _has_repeat(out)
    return out.reshape(shape)


def _has_repeat(rows: np.ndarray) -> np.ndarray:
    s = np.sort(rows, axis=1)
    return (s[:, 1:] == s[:, :-1]).any(axis=1)


def weighted_without_replacement(rng: np.random.Generator, n: int, weights: np.ndarray,
                                 k: int) -> np.ndarray:
    """``k`` indices per row drawn without replacement with probability proportional to
    ``weights``, in draw order (first column = first draw).

    Gumbel top-k: sorting log-weights perturbed by Gumbel noise gives exactly the law of
    successive weighted draws without replacement, order included.
    """
    gumbel = -np.log(-np.log(rng.random((n, len(weights)))))
    scores = np.log(weights)[None, :] + gumbel
    return np.argsort(-scores, axis=1)[:, :k]
