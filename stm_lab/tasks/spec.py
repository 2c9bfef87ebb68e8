"""What a task declares about itself. The head, the loss mask and the metrics all follow from it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

from stm_lab.errors import ConfigError

SPLITS = ("train", "val", "test")

InputKind = Literal["tokens", "real"]
OutputKind = Literal["classes", "regression"]
Scored = Literal["steps", "one"]


@dataclass(frozen=True)
class TaskSpec:
    """A task's contract with the model.

    Batches are dicts of ``x`` (B, T) int64 tokens or (B, T, C) float32 channels,
    ``y`` (B, T) int64 classes (-100 where unscored) or (B, T, K) float32 targets,
    and ``mask`` (B, T) bool: the steps where memory is asked for. Loss and metrics
    see only the masked steps.
    """

    input_kind: InputKind
    input_size: int  # vocabulary size (tokens) or number of channels (real)
    output_kind: OutputKind
    output_size: int  # number of classes, or regression targets per scored step
    scored: Scored  # "steps": several scored steps per sequence; "one": exactly one
    seq_len: int  # length of every sequence (the longest one for variable-length data)
    chance: float  # chance accuracy on scored steps, or the baseline MSE for regression
    chance_note: str  # how the chance level is derived
    default_head: str
    positions: int | None = None  # scored steps per sequence, for serial-position metrics
    paper: str = ""
    tags: tuple[str, ...] = ()
    # The headline metric the chance level refers to ("" = acc for classes, mse for regression);
    # it is also what model selection tracks as val/<metric>_best.
    metric: str = ""
    extra_metrics: tuple[str, ...] = ()  # more metrics for every split: "recall_pos", "mc"

    @property
    def is_classification(self) -> bool:
        return self.output_kind == "classes"

    @property
    def headline(self) -> str:
        return self.metric or ("acc" if self.is_classification else "mse")

    @property
    def lower_is_better(self) -> bool:
        return self.headline in ("mse", "loss")


@dataclass(frozen=True)
class Task:
    """Base of every task: a frozen dataclass of parameters (the config keys) plus a generator.

    Subclasses set ``name`` through the registry, implement :meth:`spec` and
    :meth:`generate`, and check their own parameters in ``__post_init__`` with
    :meth:`require`, so a bad value fails before any data is made.
    """

    name: ClassVar[str] = ""
    # Bump when the generator's output for the same parameters changes: it keys the data cache.
    version: ClassVar[int] = 1

    @property
    def spec(self) -> TaskSpec:
        raise NotImplementedError

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Make ``n`` sequences: arrays ``x``, ``y``, ``mask`` as described in :class:`TaskSpec`."""
        raise NotImplementedError

    def make_split(self, split: str, n: int, seed: int) -> dict[str, np.ndarray]:
        """The arrays of one split. Generated tasks draw ``n`` sequences from the split's own
        seed stream; tasks on real data override this to load, partition and encode their
        data (``n`` is then an upper bound on the split's size)."""
        return self.generate(n, split_rng(seed, split))

    def fingerprint(self) -> dict[str, Any]:
        """Anything besides the parameters that decides the data (e.g. a local file's size and
        modification time): part of the cache key, so an edited file is never served stale."""
        return {}

    def delay_mask(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """The retention interval of each sequence, as a (B, T) bool tensor like ``mask``: the steps
        where the network must hold information while nothing new is shown or asked. Gate
        statistics during the delay are read here. None (the default) when the task has no delay."""
        return None

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def require(self, ok: bool, key: str, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"data.{key}", getattr(self, key), allowed)


def split_rng(seed: int, split: str) -> np.random.Generator:
    """Independent streams per split from one seed: train, val and test never share draws."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split)]))


def task_field(default: Any, doc: str) -> Any:
    """A task parameter with a one-line description (shown in config errors and docs)."""
    return field(default=default, metadata={"doc": doc})
