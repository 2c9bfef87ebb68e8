"""Memoryless and weak-memory baselines: what a model scores without the memory a task asks for.

A baseline is a plain function of a split's arrays that returns its predictions at the scored
steps, aligned with ``y[mask]`` (row-major, like the heads' outputs), so it is scored with the
same metrics as a trained model. Some learn a constant from the training split (``train``);
some choose at random (``rng``). Every headline number belongs beside them: a model that
beats chance but not the best baseline may have learned only the shortcut.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Arrays = dict[str, np.ndarray]
# (arrays of the scored split, training split or None, rng) -> predictions aligned with y[mask]
Predict = Callable[[Arrays, "Arrays | None", np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Baseline:
    """One declared baseline of a task."""

    name: str
    predict: Predict
    note: str  # what the baseline knows and how it answers
    needs_train: bool = False  # fits a statistic on the training split
    reference: float | None = None  # the figure in the reference (docs/tasks-recall.md), if any

    def __call__(self, arrays: Arrays, train: Arrays | None = None,
                 rng: np.random.Generator | None = None) -> np.ndarray:
        if self.needs_train and train is None:
            raise ValueError(f"baseline {self.name!r} fits on the training split: pass train=")
        return self.predict(arrays, train, rng if rng is not None else np.random.default_rng(0))


def accuracy(pred: np.ndarray, arrays: Arrays) -> float:
    """Token accuracy over the scored steps (the ``acc`` metric)."""
    target = arrays["y"][arrays["mask"]]
    if pred.shape != target.shape:
        raise ValueError(f"predictions {pred.shape} do not align with y[mask] {target.shape}")
    return float((pred == target).mean())


def majority_class(train: Arrays) -> int:
    """The most frequent target class over the training split's scored steps."""
    return int(np.bincount(train["y"][train["mask"]]).argmax())


def constant(arrays: Arrays, value: int) -> np.ndarray:
    return np.full(int(arrays["mask"].sum()), value, dtype=np.int64)


def shuffle_rows(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each row's entries in an independent random order (a bag: right items, order forgotten)."""
    order = np.argsort(rng.random(values.shape), axis=1)
    return np.take_along_axis(values, order, axis=1)
