"""Materialise a task's splits as Hugging Face ``datasets.Dataset`` objects, cached on disk.

The cache key is the task's own parameters plus split, size, seed and the
generator's version, so a second run with the same settings loads instead of
regenerating, and a changed parameter can never pick up stale data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np

from stm_lab.tasks.spec import SPLITS, Task, split_rng

__all__ = ["SPLITS", "cache_key", "materialise", "split_rng"]


# Bump when what is stored changes: entries written under another format are never read.
CACHE_FORMAT = 2


def task_identity(task: Task) -> str:
    """The task's registered name and its class: two tasks with the same parameter names never
    share cached data."""
    cls = type(task)
    return f"{task.name or cls.__name__}:{cls.__module__}.{cls.__qualname__}"


def cache_key(task: Task, split: str, n: int, seed: int, extra: dict | None = None) -> str:
    blob = json.dumps(
        {"format": CACHE_FORMAT, "task": task_identity(task), "version": task.version,
         "params": task.params(), "split": split, "n": n, "seed": seed, "source": task.fingerprint(),
         **({"extra": extra} if extra else {})},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _features(arrays: dict[str, np.ndarray]) -> datasets.Features:
    feats = {}
    for name, a in arrays.items():
        value = "bool" if a.dtype == bool else str(a.dtype)
        if a.ndim == 1:
            feats[name] = datasets.Value(value)
        elif a.ndim == 2:
            feats[name] = datasets.Sequence(datasets.Value(value), length=a.shape[1])
        elif a.ndim == 3:
            feats[name] = datasets.Array2D(shape=a.shape[1:], dtype=value)
        else:
            raise ValueError(f"array {name!r} has {a.ndim} dimensions; at most 3 are supported")
    return datasets.Features(feats)


def materialise(task: Task, split: str, n: int, seed: int, cache_dir: str | Path | None,
                make: Callable[[], dict[str, np.ndarray]] | None = None, extra: dict | None = None) -> datasets.Dataset:
    """The ``split`` of ``task`` with ``n`` sequences, generated once and then loaded from the cache.

    ``make`` builds the arrays (default: :meth:`Task.make_split`); ``extra`` is whatever else
    decides them (e.g. the items held out), part of the cache key. With ``cache_dir=None`` the
    split is generated in memory every time. Tasks on real data come through the same path.
    """
    make = make or (lambda: task.make_split(split, n, seed))
    if cache_dir is None:
        arrays = make()
        return datasets.Dataset.from_dict(arrays, features=_features(arrays))
    key = cache_key(task, split, n, seed, extra)
    path = Path(cache_dir).expanduser() / (task.name or type(task).__name__) / f"{split}-{key}"
    if not path.exists():
        arrays = make()
        ds = datasets.Dataset.from_dict(arrays, features=_features(arrays))
        # Parallel jobs may build the same split: write aside, then rename into place.
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        ds.save_to_disk(str(tmp))
        try:
            os.replace(tmp, path)
        except OSError:  # another job won the race; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(path))
