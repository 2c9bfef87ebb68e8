"""Metrics on the scored steps only: accuracy, macro recall, serial-position accuracy, MSE.

Every metric here is a torchmetrics ``Metric`` with summed states, so the result is
the same however the data is split into batches or devices.
"""

from __future__ import annotations

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
        metrics = {"mse": MeanSquaredError()}
    return MetricCollection(metrics, prefix=f"{split}/")


def scored_positions(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each scored step in ``mask`` (row-major): its row and its index among the row's scored steps."""
    position = (mask.long().cumsum(1) - 1)[mask]
    row = mask.nonzero()[:, 0]
    return row, position
