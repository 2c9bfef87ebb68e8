"""Linear readouts at the scored steps: one per scored step, or one per sequence."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from stm_lab.cells import CoreOutput
from stm_lab.errors import ConfigError
from stm_lab.heads.base import Batch, Head
from stm_lab.metrics import Scored
from stm_lab.tasks.spec import TaskSpec


class PerStepHead(Head):
    """A linear readout applied at every scored step (copy, n-back, serial recall...).

    Only the scored states are projected: the output is (N, output_size) for the N masked
    steps, in the same row-major order as ``y[mask]``.
    """

    def __init__(self, hidden_size: int, spec: TaskSpec) -> None:
        super().__init__(hidden_size, spec)
        self.proj = nn.Linear(hidden_size, spec.output_size)

    def forward(self, states: CoreOutput, batch: Batch) -> Scored:
        mask = batch["mask"]
        return Scored(self.proj(states.outputs[mask]), batch["y"][mask], mask)


class SequenceHead(Head):
    """One prediction per sequence, read at its single scored step.

    ``pool=last`` reads the state at the scored step; ``pool=mean`` averages the
    states from the first step up to it (a common choice for text classification).
    """

    def __init__(self, hidden_size: int, spec: TaskSpec, pool: Literal["last", "mean"]) -> None:
        super().__init__(hidden_size, spec)
        if spec.scored != "one":
            raise ConfigError("head", "sequence", ["per_step"], hint="this task scores several steps per sequence")
        if pool not in ("last", "mean"):
            raise ConfigError("head.pool", pool, ["last", "mean"])
        self.pool = pool
        self.proj = nn.Linear(hidden_size, spec.output_size)

    def forward(self, states: CoreOutput, batch: Batch) -> Scored:
        h, mask = states.outputs, batch["mask"]
        if self.pool == "last":
            pooled = h[mask]
        else:  # steps up to and including the scored one; later (padding) steps never count
            upto = (mask.flip(1).cumsum(1).flip(1) > 0).unsqueeze(-1).to(h.dtype)
            pooled = (h * upto).sum(1) / upto.sum(1)
        return Scored(self.proj(pooled), batch["y"][mask], mask)


def states_at_scored_steps(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The core's states at the scored steps of a batch (what a probe reads)."""
    from stm_lab.cells import run_core

    return run_core(model.core, model.encoder(batch["x"])).outputs[batch["mask"]]
