"""Every metric, declared once: its name, how it is built from a task's spec, what it reads from
the scored steps, its direction, and whether it is a scalar or a curve.

A task's spec lists the metrics it reports (:attr:`TaskSpec.metrics`) and names its headline;
the model, the loggers, the end-of-run table, model selection, the Optuna objective and
``compare`` all read these definitions. A metric of one's own is one :class:`MetricDef`
registered in :data:`METRICS` (or named by its import path in a task's spec): docs/extending.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassRecall
from torchmetrics.regression import MeanSquaredError

from stm_lab.metrics.scored import Scored
from stm_lab.metrics.scores import (
    LagR2,
    MemoryCapacity,
    PositiveRecall,
    SequenceAccuracy,
    SerialPositionAccuracy,
)
from stm_lab.registry import Registry

if TYPE_CHECKING:
    from stm_lab.tasks.spec import TaskSpec

Split = Literal["val", "test"]


@dataclass(frozen=True)
class MetricDef:
    """One metric. Logged as ``<split>/<name>``; a curve stays a list (``summary.json`` ``curves``,
    a W&B line plot), never a set of flattened names."""

    name: str
    build: Callable[[TaskSpec], Metric]      # a torchmetrics Metric sized for the task
    update: Callable[[Metric, Scored], None]  # feed it one batch's scored steps
    higher_is_better: bool
    doc: str
    curve: str | None = None   # the x axis of a curve ("serial position", "lag"); None: a scalar
    splits: tuple[Split, ...] = ("val", "test")  # val: every epoch (model selection); test: once

    @property
    def mode(self) -> Literal["max", "min"]:
        return "max" if self.higher_is_better else "min"

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b`` on this metric."""
        return a > b if self.higher_is_better else a < b


METRICS: Registry[MetricDef] = Registry("metric", "metric", check=lambda o: isinstance(o, MetricDef))


def _define(**kw) -> MetricDef:
    return METRICS.register(kw["name"])(MetricDef(**kw))


def _preds_target(m: Metric, s: Scored) -> None:
    m.update(s.preds, s.target)


_define(name="acc", higher_is_better=True, doc="accuracy over the scored steps (micro)",
        build=lambda spec: MulticlassAccuracy(num_classes=spec.output_size, average="micro"),
        update=_preds_target)
_define(name="recall", higher_is_better=True,
        doc="macro recall: the mean over classes of each class's recall (balanced accuracy)",
        build=lambda spec: MulticlassRecall(num_classes=spec.output_size, average="macro"),
        update=_preds_target)
_define(name="recall_pos", higher_is_better=True, doc="recall of class 1: the hit rate of a detection task",
        build=lambda spec: PositiveRecall(), update=_preds_target)
_define(name="acc_sequence", higher_is_better=True, splits=("test",),
        doc="whole-sequence accuracy: every scored step of the sequence right",
        build=lambda spec: SequenceAccuracy(),
        update=lambda m, s: m.update(s.preds, s.target, s.row, s.rows))
_define(name="acc_pos", higher_is_better=True, splits=("test",), curve="serial position",
        doc="accuracy at each serial position of the scored window (the serial-position curve)",
        build=lambda spec: SerialPositionAccuracy(spec.positions),
        update=lambda m, s: m.update(s.preds, s.target, s.position))
_define(name="mse", higher_is_better=False, doc="mean squared error over every scored step and output",
        build=lambda spec: MeanSquaredError(), update=_preds_target)
_define(name="mc", higher_is_better=True, doc="memory capacity: the sum over lags of r^2 (Jaeger 2001)",
        build=lambda spec: MemoryCapacity(spec.output_size), update=_preds_target)
_define(name="r2_lag", higher_is_better=True, splits=("test",), curve="lag",
        doc="r^2 of recalling the input k steps back, per lag k (the memory-capacity curve)",
        build=lambda spec: LagR2(spec.output_size), update=_preds_target)


class ScoreSet(nn.Module):
    """The metrics a task reports on one split, updated from :class:`Scored` batches."""

    def __init__(self, spec: TaskSpec, split: Split) -> None:
        super().__init__()
        self.split = split
        self.defs = {d.name: d for d in (METRICS.get(n) for n in spec.metrics) if split in d.splits}
        self.metrics = nn.ModuleDict({name: d.build(spec) for name, d in self.defs.items()})

    def update(self, scored: Scored) -> None:
        for name, d in self.defs.items():
            d.update(self.metrics[name], scored)

    def compute(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``({"<split>/<name>": scalar}, {"<split>/<name>": curve})``."""
        scalars, curves = {}, {}
        for name, d in self.defs.items():
            value = self.metrics[name].compute()
            (curves if d.curve else scalars)[f"{self.split}/{name}"] = value
        return scalars, curves

    def reset(self) -> None:
        for m in self.metrics.values():
            m.reset()


def evaluate(spec: TaskSpec, split: Split, scored: Scored) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Every metric of ``split`` on one set of scored steps, as plain numbers (baselines use this)."""
    scores = ScoreSet(spec, split).to(scored.preds.device)
    scores.update(scored)
    scalars, curves = scores.compute()
    return ({k: float(v) for k, v in scalars.items()},
            {k: [float(x) for x in v] for k, v in curves.items()})


def metric_of(name: str) -> MetricDef | None:
    """The definition behind a logged name (``test/acc``, ``val/mse_best``, ``acc``), if any."""
    base = name.split("/")[-1]
    for candidate in (base, base.removesuffix("_best")):
        if candidate in METRICS:
            return METRICS.get(candidate)
    return None
