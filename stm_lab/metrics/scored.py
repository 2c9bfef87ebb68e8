"""The scored steps of one batch: what every metric, loss and baseline is computed on."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch


def scored_positions(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For the True entries of a (B, T) mask, in row-major order (the order of ``y[mask]``):
    the sequence each belongs to, and its index among that sequence's scored steps."""
    position = (mask.long().cumsum(1) - 1)[mask]
    row = mask.nonzero()[:, 0]
    return row, position


@dataclass
class Scored:
    """Predictions and targets at the scored steps of a batch, in the row-major order of ``mask``.

    ``preds``: (N, C) class scores or (N, K) values; ``target``: (N,) classes or (N, K) values;
    ``mask``: the (B, T) bool mask they were taken from (for a decoder: the target positions).
    ``row`` and ``position`` (each step's sequence, and its index among that sequence's scored
    steps) are computed on first use only: they cost a host sync.

    ``tokens``: for a head that generates its output (a decoder decoding greedily), the token it
    emitted at each scored step, aligned with ``target``; -1 where it emitted none (its sequence
    had already ended, or was cut at its maximum length). None: the prediction is
    ``preds.argmax(-1)``. :attr:`predicted` gives whichever applies.
    """

    preds: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    tokens: torch.Tensor | None = None

    @property
    def predicted(self) -> torch.Tensor:
        """The predicted class at each scored step: the emitted token, else the arg-max score."""
        return self.tokens if self.tokens is not None else self.preds.argmax(-1)

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    @cached_property
    def _row_position(self) -> tuple[torch.Tensor, torch.Tensor]:
        return scored_positions(self.mask)

    @property
    def row(self) -> torch.Tensor:
        return self._row_position[0]

    @property
    def position(self) -> torch.Tensor:
        return self._row_position[1]

    def detach(self) -> Scored:
        return Scored(self.preds.detach(), self.target, self.mask, self.tokens)
