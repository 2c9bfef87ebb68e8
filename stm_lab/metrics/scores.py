"""torchmetrics ``Metric`` classes stm_lab adds to torchmetrics' own: serial-position accuracy,
whole-sequence accuracy, positive-class recall, per-lag r^2 and memory capacity.

Each has summed states, so its result is the same however the data is split into batches or
devices (tests/test_metrics.py checks this under random batch splits).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


class Rate(Metric):
    """A share, ``correct / total``, of everything seen: a scalar, or one per slot (``slots``).
    Subclasses say what counts in ``update``; the sums make it independent of batching."""

    full_state_update = False

    def __init__(self, slots: int | None = None) -> None:
        super().__init__()
        shape = () if slots is None else (slots,)
        self.add_state("correct", torch.zeros(shape), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(shape), dist_reduce_fx="sum")

    def add_at(self, hit: torch.Tensor, slot: torch.Tensor) -> None:
        """Count ``hit`` (one per item) into each item's slot; slots past the last go to it."""
        slot = slot.clamp(max=self.correct.numel() - 1)
        self.correct.index_add_(0, slot, hit.float())
        self.total.index_add_(0, slot, torch.ones_like(hit, dtype=torch.float))

    def compute(self) -> torch.Tensor:
        return self.correct / self.total.clamp(min=1)


class SerialPositionAccuracy(Rate):
    """Accuracy at each serial position of the scored window (the serial-position curve).

    ``position`` is the index of each scored step among its sequence's scored steps.
    """

    def __init__(self, positions: int) -> None:
        super().__init__(positions)
        self.positions = positions

    def update(self, preds: torch.Tensor, target: torch.Tensor, position: torch.Tensor) -> None:
        self.add_at(preds.argmax(-1) == target, position)


class SequenceAccuracy(Rate):
    """Fraction of sequences whose scored steps are all correct (whole-list recall)."""

    def update(self, preds: torch.Tensor, target: torch.Tensor, row: torch.Tensor, rows: int) -> None:
        scored = torch.bincount(row, minlength=rows) > 0
        wrong = torch.bincount(row, weights=(preds.argmax(-1) != target).float(), minlength=rows)
        self.correct += (scored & (wrong == 0)).sum()
        self.total += scored.sum()


class PositiveRecall(Rate):
    """Recall of class 1 (the hit rate of a detection task such as n-back): TP / (TP + FN)."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        pos = target == 1
        self.correct += (preds.argmax(-1)[pos] == 1).sum()
        self.total += pos.sum()


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
