"""What a task declares about itself. The head, the loss mask, the metrics and the baselines all
follow from it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
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
Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class TaskSpec:
    """A task's contract with the model.

    Batches are dicts of ``x`` (B, T) int64 tokens or (B, T, C) float32 channels,
    ``y`` (B, T) int64 classes (-100 where unscored) or (B, T, K) float32 targets,
    and ``mask`` (B, T) bool: the steps where memory is asked for. Loss, metrics and
    baselines see only the masked steps.

    ``metrics`` names the metrics the task reports (definitions in :mod:`stm_lab.metrics`),
    ``headline`` the one model selection tracks (``val/<headline>``) and reports lead with, and
    ``chance`` the analytic chance level of each metric that has one (a uniform guess, or a
    prediction that carries no information). The memoryless baselines, computed on the actual
    test split, come from :meth:`Task.baselines`.
    """

    input_kind: InputKind
    input_size: int  # vocabulary size (tokens) or number of channels (real)
    output_kind: OutputKind
    output_size: int  # number of classes, or regression targets per scored step
    scored: Scored  # "steps": several scored steps per sequence; "one": exactly one
    seq_len: int  # length of every sequence (the longest one for variable-length data)
    default_head: str  # the head ``head=auto`` builds: a conf/head/ option (per_step, sequence...)
    chance: Mapping[str, float]  # metric name -> chance level
    chance_note: str  # how the chance levels are derived
    metrics: tuple[str, ...] = ()  # default: acc, recall (+ acc_sequence, acc_pos); mse
    headline: str = ""  # default: acc for classes, mse for regression
    positions: int | None = None  # scored steps per sequence, for serial-position metrics
    paper: str = ""
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.metrics:
            if self.is_classification:
                extra = ("acc_sequence", "acc_pos") if self.positions else ()
                object.__setattr__(self, "metrics", ("acc", "recall", *extra))
            else:
                object.__setattr__(self, "metrics", ("mse",))
        if not self.headline:
            object.__setattr__(self, "headline", "acc" if self.is_classification else "mse")
        if self.headline not in self.metrics:
            raise ValueError(f"headline {self.headline!r} is not among the metrics {self.metrics}")
        unknown = set(self.chance) - set(self.metrics)
        if unknown:
            raise ValueError(f"chance levels for metrics the task does not report: {sorted(unknown)}")

    @property
    def is_classification(self) -> bool:
        return self.output_kind == "classes"


@dataclass(frozen=True)
class Baseline:
    """A predictor that cannot use memory (or, where the task says so, uses only part of it),
    applied to the test split: ``preds`` at the scored steps in the order of ``y[mask]`` —
    (N, C) class scores or (N, K) values — and a note saying what it does."""

    preds: np.ndarray
    note: str
    memoryless: bool = True  # False: a weak-memory floor (e.g. remembers which values were shown)


@dataclass(frozen=True)
class Task:
    """Base of every task: a frozen dataclass of parameters (the config keys) plus a generator.

    Parameters are declared with :func:`task_field` and have no Python defaults: the defaults
    live in ``conf/data/<task>.yaml`` only. Subclasses implement :meth:`spec` and
    :meth:`generate` (or :meth:`make_split` for data read from files), check their own
    parameters in ``__post_init__`` with :meth:`require`, and may add baselines to
    :meth:`baselines`. Registering a task (``@TASKS.register("name")``) sets its ``name``.
    """

    name: ClassVar[str] = ""
    # Bump when the generator's output for the same parameters changes: it keys the data cache.
    version: ClassVar[int] = 1
    # Whether validation and test items are held out of training (a generated task: redrawn until
    # none occurs there). Tasks on a fixed dataset set False: their overlap is measured and recorded.
    held_out: ClassVar[bool] = True

    @property
    def spec(self) -> TaskSpec:
        raise NotImplementedError

    def generate(self, n: int, rng: np.random.Generator) -> Arrays:
        """Make ``n`` sequences: arrays ``x``, ``y``, ``mask`` as described in :class:`TaskSpec`."""
        raise NotImplementedError

    def generate_split(self, split: str, n: int, rng: np.random.Generator) -> Arrays:
        """``n`` sequences of ``split``: :meth:`generate`, unless the task draws its training
        sequences from another distribution than its evaluation ones (fuzzy in-context recall:
        keys of every length in training, full-length keys in validation and test). Every
        split, held-out draws and fresh epochs included, is generated through here."""
        return self.generate(n, rng)

    def make_split(self, split: str, n: int, seed: int) -> Arrays:
        """The arrays of one split. Generated tasks draw ``n`` sequences from the split's own
        seed stream; tasks on real data override this to load, partition and encode their
        data (``n`` is then an upper bound on the split's size)."""
        return self.generate_split(split, n, split_rng(self.draw_seed(seed), split))

    def draw_seed(self, run_seed: int) -> int:
        """The seed the task's data are drawn from: the run's, unless the task fixes its own (so
        that every run sees the same data, whatever its seed)."""
        return run_seed

    def fingerprint(self) -> dict[str, Any]:
        """Anything besides the parameters that decides the data (e.g. a local file's size and
        modification time): part of the cache key, so an edited file is never served stale."""
        return {}

    def overlap_with_train(self, train: Arrays, evaluate: Arrays) -> float | None:
        """The share of ``evaluate``'s items that also occur in ``train``, for a task whose item
        is not a whole input sequence (memorization: a key, whose value is fixed across
        sequences). None, the default: items are whole inputs, compared by
        :func:`stm_lab.data.items.item_keys`. Recorded in summary.json (``data.overlap_with_train``)."""
        return None

    def delay_mask(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """The retention interval of each sequence, as a (B, T) bool tensor like ``mask``: the steps
        where the network must hold information while nothing new is shown or asked. Gate
        statistics during the delay are read here. None (the default) when the task has no delay."""
        return None

    def baselines(self, train: Arrays, test: Arrays) -> dict[str, Baseline]:
        """Predictors that cannot remember, fitted on ``train`` and applied to ``test``.

        ``majority``: the most frequent training answer (the mean, for regression).
        ``current_input``: the best guess from the input at the scored step alone — what a network
        with no memory at all can learn (for tokens, the most frequent training answer given the
        token; for real-valued inputs, a least-squares linear readout of the current input).
        Tasks add their own (e.g. associative recall's most frequent value shown).
        """
        spec = self.spec
        out = {"majority": Baseline(_majority(spec, train, test),
                                    "the most frequent training answer" if spec.is_classification
                                    else "the mean training target")}
        out["current_input"] = Baseline(_current_input(spec, train, test),
                                        "the best answer from the input at the scored step alone "
                                        "(fitted on the training split)")
        return out

    def artifacts(self) -> dict[str, Any]:
        """What the task learned from its data and an applied model needs without the data (a
        text task's vocabulary and class names). Saved in every checkpoint; JSON-serialisable."""
        return {}

    def restore(self, artifacts: dict[str, Any]) -> Task:
        """This task with ``artifacts`` from a checkpoint in place of reading its data again."""
        return self

    def encode(self, item: Any) -> dict[str, np.ndarray]:
        """One input of the user's (``stm_lab.predict``) as the arrays of a one-sequence batch:
        ``x`` and ``mask`` (the steps to predict at). Token tasks take a list of token ids, or
        ``{"x": [...], "mask": [...]}``; tasks on text override this."""
        if isinstance(item, dict):
            x, mask = item.get("x"), item.get("mask")
        else:
            x, mask = item, None
        if not isinstance(x, list) or not x:
            raise ValueError("an input is a non-empty list of token ids, or {\"x\": [...], \"mask\": [...]}")
        spec = self.spec
        arr = np.asarray(x, dtype=np.int64 if spec.input_kind == "tokens" else np.float32)
        if spec.input_kind == "tokens" and (arr.min() < 0 or arr.max() >= spec.input_size):
            raise ValueError(f"token ids must be in [0, {spec.input_size})")
        if mask is None:  # every step, or the last one for a task scored once per sequence
            m = np.zeros(len(arr), dtype=bool)
            m[-1 if spec.scored == "one" else slice(None)] = True
        else:
            m = np.asarray(mask, dtype=bool)
            if m.shape != arr.shape[:1]:
                raise ValueError("mask must have one entry per step of x")
        return {"x": arr[None], "mask": m[None], "length": np.asarray([len(arr)])}

    def decode(self, classes: np.ndarray) -> list[Any]:
        """Predicted classes as the user reads them (a text task: its class names)."""
        return [int(c) for c in classes]

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def require(self, ok: bool, key: str, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"data.{key}", getattr(self, key), allowed)


def token_recall_spec(vocab_size: int, classes: int, seq_len: int, positions: int | None = None,
                      **rest: Any) -> TaskSpec:
    """The spec of a token task scored at some steps with one of ``classes`` answers each (the
    recall benchmarks): per-step head, headline ``acc``, chance that of a uniform guess. With
    ``positions`` (a fixed number of scored steps per sequence) it also has the serial-position
    curve and whole-sequence accuracy, whose chance is ``classes ** -positions``."""
    chance = {"acc": 1.0 / classes, "recall": 1.0 / classes}
    if positions is not None:
        chance.update(acc_pos=1.0 / classes, acc_sequence=float(classes) ** -positions)
    # Metrics and headline: TaskSpec's defaults for classes (acc, recall; + the two with positions).
    return TaskSpec(input_kind="tokens", input_size=vocab_size, output_kind="classes", output_size=classes,
                    scored="steps", seq_len=seq_len, chance=chance, default_head="per_step",
                    positions=positions, **rest)


def split_rng(seed: int, split: str) -> np.random.Generator:
    """Independent streams per split from one seed: train, val and test never share draws."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split)]))


def task_field(doc: str) -> Any:
    """A task parameter with a one-line description (shown in config errors and docs). No
    default: the defaults live in ``conf/data/<task>.yaml``."""
    return field(metadata={"doc": doc})


# ------------------------------------------------------------------------- baselines


def one_hot(classes: np.ndarray, n: int) -> np.ndarray:
    """(N,) classes as (N, n) one-hot float32 scores: the form in which a baseline's answers
    reach the metrics (:attr:`Baseline.preds`)."""
    classes = np.asarray(classes).reshape(-1)
    out = np.zeros((len(classes), n), dtype=np.float32)
    out[np.arange(len(classes)), classes] = 1.0
    return out


def _scored(arrays: Arrays) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets at the scored steps, in the order of ``y[mask]``."""
    mask = arrays["mask"]
    return arrays["x"][mask], arrays["y"][mask]


def _majority(spec: TaskSpec, train: Arrays, test: Arrays) -> np.ndarray:
    _, y_train = _scored(train)
    n = int(test["mask"].sum())
    if spec.is_classification:
        counts = np.bincount(y_train, minlength=spec.output_size)
        return one_hot(np.full(n, counts.argmax()), spec.output_size)
    return np.broadcast_to(y_train.mean(0), (n, spec.output_size)).astype(np.float32).copy()


def _current_input(spec: TaskSpec, train: Arrays, test: Arrays) -> np.ndarray:
    x_train, y_train = _scored(train)
    x_test, _ = _scored(test)
    if spec.input_kind == "tokens" and spec.is_classification:
        counts = np.zeros((spec.input_size, spec.output_size), dtype=np.int64)
        np.add.at(counts, (x_train, y_train), 1)
        fallback = counts.sum(0).argmax()  # a token never scored in training: the majority answer
        best = np.where(counts.sum(1) > 0, counts.argmax(1), fallback)
        return one_hot(best[x_test], spec.output_size)

    def features(x: np.ndarray) -> np.ndarray:
        if spec.input_kind == "tokens":
            x = one_hot(x, spec.input_size)
        x = x.reshape(len(x), -1).astype(np.float64)
        return np.concatenate([x, np.ones((len(x), 1))], 1)

    target = one_hot(y_train, spec.output_size) if spec.is_classification else y_train.reshape(len(y_train), -1)
    w, *_ = np.linalg.lstsq(features(x_train), target.astype(np.float64), rcond=None)
    return (features(x_test) @ w).astype(np.float32)
