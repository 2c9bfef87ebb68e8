"""Helpers for the recall tasks' own baselines (:meth:`stm_lab.tasks.spec.Task.baselines`).

A task's baseline answers with classes at the scored steps of the test split, in the order of
``y[mask]``; :func:`class_scores` turns them into the (N, C) scores every baseline hands to the
metrics, so it is scored exactly as a trained model. Baselines that choose at random draw from
:func:`baseline_rng` (a fixed seed: the same figure on every run of the same data).
"""

from __future__ import annotations

import numpy as np

Arrays = dict[str, np.ndarray]

BASELINE_SEED = 0


def baseline_rng() -> np.random.Generator:
    """The random stream of the random baselines (fixed, so a run's floors are reproducible)."""
    return np.random.default_rng(BASELINE_SEED)


def class_scores(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) answers as (N, C) one-hot scores, the form the metrics read."""
    classes = np.asarray(classes).reshape(-1)
    out = np.zeros((len(classes), num_classes), dtype=np.float32)
    out[np.arange(len(classes)), classes] = 1.0
    return out


def accuracy(classes: np.ndarray, arrays: Arrays) -> float:
    """Token accuracy over the scored steps of ``arrays`` (the ``acc`` metric) of (N,) answers
    or (N, C) scores aligned with ``y[mask]``."""
    target = arrays["y"][arrays["mask"]]
    pred = classes.argmax(-1) if classes.ndim == 2 else classes
    if pred.shape != target.shape:
        raise ValueError(f"predictions {pred.shape} do not align with y[mask] {target.shape}")
    return float((pred == target).mean())


def shuffle_rows(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each row's entries in an independent random order (a bag: right items, order forgotten)."""
    order = np.argsort(rng.random(values.shape), axis=1)
    return np.take_along_axis(values, order, axis=1)
