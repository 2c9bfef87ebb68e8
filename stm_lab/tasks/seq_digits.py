"""Sequential digits: scikit-learn's bundled 8x8 digits read one pixel (64 steps) or one row
(8 steps) at a time, classified at the last step; optionally with one fixed permutation of
the pixel order (the permuted variant). An offline, small stand-in for sequential /
permuted MNIST (Le et al. 2015): it needs no download.

Real data, not a generator: the 1,797 images are partitioned once into train / val / test
by ``split_seed`` (stratified by class, so each split keeps the class balance), and the
permutation is drawn from ``permutation_seed`` and kept fixed, so every run and every
split sees the same pixel order. Pixels are scaled from 0..16 to [0, 1].
Chance is 1/10; no peer-reviewed numbers exist for this set (use it as a smoke test).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import SPLITS, Task, TaskSpec, task_field

MODES = ("pixels", "rows")


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    d = load_digits()
    return d.data.astype(np.float32) / 16.0, d.target.astype(np.int64)


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Indices of each split, the same share of every class in each; deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {s: [] for s in fractions}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for i, (split, frac) in enumerate(fractions.items()):
            stop = len(idx) if i == len(fractions) - 1 else start + int(round(frac * len(idx)))
            out[split].append(idx[start:stop])
            start = stop
    return {s: rng.permutation(np.concatenate(parts)) for s, parts in out.items()}


@TASKS.register("seq_digits")
@dataclass(frozen=True)
class SequentialDigitsTask(Task):
    held_out = False  # a fixed dataset: its overlap is measured, not removed

    mode: str = task_field("pixels: 64 steps of 1 value | rows: 8 steps of 8 values")
    permute: bool = task_field("apply one fixed random permutation to the pixel order")
    permutation_seed: int = task_field("seed of that permutation (fixed across runs)")
    split_seed: int = task_field("seed of the train/val/test partition (fixed across runs)")
    val_fraction: float = task_field("share of the images held out for validation")
    test_fraction: float = task_field("share of the images held out for test")

    def __post_init__(self) -> None:
        self.require(self.mode in MODES, "mode", MODES)
        self.require(0 < self.val_fraction < 1, "val_fraction", "a number in (0, 1)")
        self.require(0 < self.test_fraction < 1 - self.val_fraction, "test_fraction",
                     f"a number in (0, {1 - self.val_fraction:g})")

    @property
    def shape(self) -> tuple[int, int]:
        return (64, 1) if self.mode == "pixels" else (8, 8)

    @property
    def spec(self) -> TaskSpec:
        steps, channels = self.shape
        return TaskSpec(
            input_kind="real",
            input_size=channels,
            output_kind="classes",
            output_size=10,
            scored="one",
            seq_len=steps,
            chance={"acc": 0.1, "recall": 0.1},
            chance_note="10 balanced classes (the most frequent class is about 10.2%)",
            default_head="sequence",
            paper="Le, Jaitly & Hinton 2015 (sequential / permuted MNIST); data: UCI optical digits via scikit-learn",
            tags=("real-data", "long-range", "classification") + (("permuted",) if self.permute else ()),
        )

    def permutation(self) -> np.ndarray:
        if not self.permute:
            return np.arange(64)
        return np.random.default_rng(self.permutation_seed).permutation(64)

    def make_split(self, split: str, n: int, seed: int) -> dict[str, np.ndarray]:
        images, labels = _digits()
        fractions = {"train": 1 - self.val_fraction - self.test_fraction,
                     "val": self.val_fraction, "test": self.test_fraction}
        idx = stratified_split(labels, {s: fractions[s] for s in SPLITS}, self.split_seed)[split][:n]
        steps, channels = self.shape
        x = images[idx][:, self.permutation()].reshape(len(idx), steps, channels)
        y = np.full((len(idx), steps), -100, dtype=np.int64)
        y[:, -1] = labels[idx]
        mask = np.zeros((len(idx), steps), dtype=bool)
        mask[:, -1] = True
        return {"x": x, "y": y, "mask": mask}
