"""The training split's epoch metrics, kept lean: training runs every step."""

from __future__ import annotations

import torch


class TrainingScores:
    """``acc`` and ``recall`` (classes) or ``mse`` (regression) of the training split, accumulated
    on the device.

    A few scatter-adds per update, no host sync, no argument checks, and no ``torchmetrics.Metric``
    machinery (whose per-update Python cost rivals a small model's step). :meth:`compute` gives the
    same numbers as the ``acc``/``recall``/``mse`` definitions (micro accuracy, macro recall over
    the classes that occur in the targets or predictions, mean squared error); a test checks it.
    """

    def __init__(self, classification: bool, num_classes: int) -> None:
        self.classification, self.num_classes = classification, num_classes
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
