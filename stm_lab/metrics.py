"""Metrics on the scored steps only: accuracy, macro recall, positive-class recall,
serial-position accuracy, MSE, per-delay r^2 and memory capacity.

Every metric here is a torchmetrics ``Metric`` with summed states, so the result is
the same however the data is split into batches or devices.
"""

from __future__ import annotations

import re

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassRecall
from torchmetrics.regression import MeanSquaredError

from stm_lab.tasks.spec import TaskSpec


class SerialPositionAccuracy(Metric):
    """Accuracy at each serial position of the scored window (the serial-position curve).

    ``position`` is the index of each scored step among its sequence's scored steps.
    """

    full_state_update = False

    def __init__(self, positions: int) -> None:
        super().__init__()
        self.positions = positions
        self.add_state("correct", torch.zeros(positions), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(positions), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, position: torch.Tensor) -> None:
        hit = (preds.argmax(-1) == target).float()
        pos = position.clamp(max=self.positions - 1)
        self.correct.index_add_(0, pos, hit)
        self.total.index_add_(0, pos, torch.ones_like(hit))

    def compute(self) -> torch.Tensor:
        return self.correct / self.total.clamp(min=1)


class SequenceAccuracy(Metric):
    """Fraction of sequences whose scored steps are all correct (whole-list recall)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, row: torch.Tensor, rows: int) -> None:
        scored = torch.bincount(row, minlength=rows) > 0
        wrong = torch.bincount(row, weights=(preds.argmax(-1) != target).float(), minlength=rows)
        self.correct += (scored & (wrong == 0)).sum()
        self.total += scored.sum()

    def compute(self) -> torch.Tensor:
        return self.correct / self.total.clamp(min=1)


class PositiveRecall(Metric):
    """Recall of class 1 (the hit rate of a detection task such as n-back): TP / (TP + FN)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("hits", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("positives", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        pos = target == 1
        self.hits += (preds.argmax(-1)[pos] == 1).sum()
        self.positives += pos.sum()

    def compute(self) -> torch.Tensor:
        return self.hits / self.positives.clamp(min=1)


class LagR2(Metric):
    """Squared Pearson correlation between each target column and its prediction.

    For memory capacity, column k-1 holds u(t-k), so ``compute()`` is the r^2 curve
    MC_1..MC_K (Jaeger 2001). The states are plain sums (n, sum of y, y^2, prediction,
    prediction^2, product), so the result does not depend on how the data are batched.
    """

    full_state_update = False

    def __init__(self, outputs: int) -> None:
        super().__init__()
        for name in ("sy", "sp", "syy", "spp", "syp"):
            self.add_state(name, torch.zeros(outputs, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        p, y = preds.detach().double(), target.double()
        self.sy += y.sum(0)
        self.sp += p.sum(0)
        self.syy += (y * y).sum(0)
        self.spp += (p * p).sum(0)
        self.syp += (y * p).sum(0)
        self.n += y.shape[0]

    def compute(self) -> torch.Tensor:
        n = self.n.clamp(min=1)
        cov = self.syp / n - (self.sy / n) * (self.sp / n)
        var_y = self.syy / n - (self.sy / n) ** 2
        var_p = self.spp / n - (self.sp / n) ** 2
        # A constant prediction carries no information: r^2 = 0, not 0/0.
        r2 = torch.where(var_p > 1e-12, cov**2 / (var_y * var_p).clamp(min=1e-30), torch.zeros_like(cov))
        return r2.clamp(0.0, 1.0).float()


class MemoryCapacity(LagR2):
    """MC = sum over delays of r^2 (Jaeger 2001): a scalar, for logging beside the curve."""

    def compute(self) -> torch.Tensor:
        return super().compute().sum()


EXTRA_METRICS = {"recall_pos": PositiveRecall, "mc": MemoryCapacity}


def split_metrics(spec: TaskSpec, split: str) -> MetricCollection:
    """The scalar metrics logged as ``{split}/name`` for a task."""
    if spec.is_classification:
        n = spec.output_size
        # Argument checks call torch.unique, a host sync on every update: skipped on the training
        # hot path, kept for val/test, where a bad label still gets torchmetrics' clear error.
        check = split != "train"
        metrics = {
            "acc": MulticlassAccuracy(num_classes=n, average="micro", validate_args=check),
            "recall": MulticlassRecall(num_classes=n, average="macro", validate_args=check),
        }
    else:
        metrics = {"mse": MeanSquaredError()}  # over every scored step and output
    for name in spec.extra_metrics:
        cls = EXTRA_METRICS[name]
        metrics[name] = cls(spec.output_size) if cls is MemoryCapacity else cls()
    return MetricCollection(metrics, prefix=f"{split}/")


def scored_positions(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each scored step in ``mask`` (row-major): its row and its index among the row's scored steps."""
    position = (mask.long().cumsum(1) - 1)[mask]
    row = mask.nonzero()[:, 0]
    return row, position


# Per-run curves: scalar metrics named ``<split>/<name>_pos_<i>`` (serial position, from 1) or
# ``<split>/<name>_lag_<k>`` (r² of recalling the input k steps back, from the memory-capacity task).
CURVE_RE = re.compile(r"^(?P<name>[^/]+/.+_(?P<axis>pos|lag))_(?P<i>\d+)$")


def metric_curves(metrics: dict[str, float]) -> dict[str, dict[int, float]]:
    """Group scalar metrics into curves: ``{"test/acc_pos": {1: 0.98, 2: 0.95, ...}, ...}``."""
    curves: dict[str, dict[int, float]] = {}
    for key, value in metrics.items():
        m = CURVE_RE.match(key)
        if m:
            curves.setdefault(m["name"], {})[int(m["i"])] = float(value)
    return {name: dict(sorted(c.items())) for name, c in sorted(curves.items())}


class TrainingScores:
    """The training split's epoch metrics (``acc``, ``recall`` or ``mse``), accumulated on the device.

    Training runs every step, so this is kept lean on purpose: a few scatter-adds per update,
    no host sync, no argument checks, and no ``torchmetrics.Metric`` machinery (whose per-update
    Python cost rivals a small model's step). :meth:`compute` gives the same numbers as the
    ``torchmetrics`` collection of :func:`split_metrics` (micro accuracy, macro recall over the
    classes that occur in the targets or predictions, mean squared error); a test checks it.
    """

    def __init__(self, spec: TaskSpec) -> None:
        self.classification, self.num_classes = spec.is_classification, spec.output_size
        self.state: torch.Tensor | None = None

    def reset(self) -> None:
        self.state = None

    @torch.no_grad()
    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if self.state is None:
            if self.classification:  # rows: true positives, support (targets), predictions per class
                self.state = torch.zeros(3, self.num_classes, dtype=torch.long, device=preds.device)
            else:  # sum of squared errors, number of values
                self.state = torch.zeros(2, dtype=torch.float64, device=preds.device)
        if self.classification:
            pred = preds.argmax(-1)
            ones = torch.ones_like(target)
            self.state[0].scatter_add_(0, target, (pred == target).long())
            self.state[1].scatter_add_(0, target, ones)
            self.state[2].scatter_add_(0, pred, ones)
        else:
            self.state[0] += (preds.double() - target.double()).pow(2).sum()
            self.state[1] += target.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        if self.state is None:
            return {}
        if not self.classification:
            return {"mse": (self.state[0] / self.state[1].clamp(min=1)).float()}
        tp, support, predicted = self.state.double()
        recall = tp / support.clamp(min=1)
        weight = ((support + predicted) > 0).double()  # torchmetrics leaves out classes never seen
        return {"acc": (tp.sum() / support.sum().clamp(min=1)).float(),
                "recall": ((recall * weight).sum() / weight.sum().clamp(min=1)).float()}
