"""Readouts from the recurrent states to the task's outputs, only at the scored steps."""

from __future__ import annotations

import torch
from torch import nn

from stm_lab.errors import ConfigError
from stm_lab.registry import Registry
from stm_lab.tasks.spec import TaskSpec

HEADS: Registry = Registry("head", "head.name")


@HEADS.register("per_step")
class PerStepHead(nn.Module):
    """A linear readout applied at every scored step (copy, n-back, serial recall...).

    Only the scored states are projected: the output is (N, output_size) for the
    N masked steps, in the same row-major order as ``y[mask]``.
    """

    def __init__(self, hidden_size: int, spec: TaskSpec) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, spec.output_size)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.proj(h[mask])


@HEADS.register("sequence")
class SequenceHead(nn.Module):
    """One prediction per sequence, read at its single scored step.

    ``pool=last`` reads the state at the scored step; ``pool=mean`` averages the
    states from the first step up to it (a common choice for text classification).
    """

    POOLS = ("last", "mean")

    def __init__(self, hidden_size: int, spec: TaskSpec, pool: str = "last") -> None:
        super().__init__()
        if spec.scored != "one":
            raise ConfigError("head", "sequence", ["per_step"],
                              hint="this task scores several steps per sequence")
        if pool not in self.POOLS:
            raise ConfigError("head.pool", pool, self.POOLS)
        self.pool = pool
        self.proj = nn.Linear(hidden_size, spec.output_size)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pool == "last":
            return self.proj(h[mask])
        # Steps up to and including the scored one; later (padding) steps never count.
        upto = (mask.flip(1).cumsum(1).flip(1) > 0).unsqueeze(-1).to(h.dtype)
        return self.proj((h * upto).sum(1) / upto.sum(1))


def build_head(name: str, hidden_size: int, spec: TaskSpec, **params: object) -> nn.Module:
    """The head called ``name`` (``auto``: the task's default), sized for the task."""
    if name == "auto":
        name = spec.default_head
    cls = HEADS.get(name)
    try:
        return cls(hidden_size, spec, **params)
    except TypeError as e:
        raise ConfigError("head", params, hint=f"{name} head: {e}") from e
