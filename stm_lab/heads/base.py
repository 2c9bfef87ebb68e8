"""The head interface: from the core's states and the batch to predictions at the scored steps,
and the head's own loss.

A head receives every step's states and the final state (:class:`~stm_lab.cells.CoreOutput`)
together with the whole batch (so a decoder can read the targets for teacher forcing), returns
a :class:`~stm_lab.metrics.Scored` — predictions and targets at the scored steps, which every
metric reads — and owns its loss. The model special-cases no head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from stm_lab.cells import CoreOutput
from stm_lab.metrics import Scored
from stm_lab.tasks.spec import TaskSpec

if TYPE_CHECKING:
    import lightning.pytorch as pl

Batch = dict[str, torch.Tensor]


class Head(nn.Module):
    """Base of every head: ``Head(hidden_size=..., spec=..., **options)``.

    Class attributes a head may set: ``freezes_core`` (the encoder and core are not trained:
    a probe), ``needs_final_state`` (the core is run with the sequences' lengths so that
    ``CoreOutput.final`` is each sequence's state at its last real step), ``needs_cell_config``
    (the head is also given the run's ``cell`` section as ``cell_config=``: a decoder built like
    the core).
    """

    freezes_core: ClassVar[bool] = False
    needs_final_state: ClassVar[bool] = False
    needs_cell_config: ClassVar[bool] = False

    def __init__(self, hidden_size: int, spec: TaskSpec) -> None:
        super().__init__()
        self.hidden_size, self.spec = hidden_size, spec

    def forward(self, states: CoreOutput, batch: Batch) -> Scored:
        raise NotImplementedError

    def loss(self, scored: Scored) -> torch.Tensor:
        """Cross-entropy over classes, or mean squared error, on the scored steps only."""
        if self.spec.is_classification:
            return F.cross_entropy(scored.preds, scored.target)
        return F.mse_loss(scored.preds, scored.target)

    def prepare(self, model: pl.LightningModule) -> None:
        """Called before every validation and test (a closed-form head fits itself here)."""

