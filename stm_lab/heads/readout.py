"""Readouts from the recurrent states to the task's outputs, only at the scored steps."""

from __future__ import annotations

from collections.abc import Iterable

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


@HEADS.register("ridge")
class RidgeHead(PerStepHead):
    """A linear readout at the scored steps, solved in closed form by ridge regression on a
    frozen network (Jaeger's readout for memory capacity; a linear probe in general).

    Weights minimise ``|H W + b - Y|^2 + alpha |W|^2`` over the training split's states
    (classes as one-hot targets). The model fits it before validation and test; the
    network itself is never trained (use ``trainer.max_epochs=0``).
    """

    closed_form = True

    def __init__(self, hidden_size: int, spec: TaskSpec, alpha: float = 1e-6) -> None:
        super().__init__(hidden_size, spec)
        if not (isinstance(alpha, int | float) and alpha >= 0):
            raise ConfigError("head.alpha", alpha, "a number >= 0")
        self.alpha, self.classes = float(alpha), spec.output_size if spec.is_classification else None
        self.proj.requires_grad_(False)
        self.register_buffer("fitted_flag", torch.tensor(False))

    @property
    def fitted(self) -> bool:
        return bool(self.fitted_flag)

    @torch.no_grad()
    def fit(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Accumulate the normal equations batch by batch (float64), then solve once."""
        gram = cross = None
        for h, y in batches:
            if self.classes is not None:
                y = torch.nn.functional.one_hot(y, self.classes)
            h1 = torch.cat([h.double(), torch.ones(len(h), 1, dtype=torch.float64, device=h.device)], 1)
            y = y.double().reshape(len(h), -1)
            gram = h1.T @ h1 if gram is None else gram + h1.T @ h1
            cross = h1.T @ y if cross is None else cross + h1.T @ y
        if gram is None:
            raise ValueError("no training states to fit the ridge readout on")
        reg = self.alpha * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
        reg[-1, -1] = 0.0  # the bias is not shrunk
        w = torch.linalg.lstsq(gram + reg, cross).solution  # lstsq: robust if alpha=0 and H is rank-deficient
        self.proj.weight.copy_(w[:-1].T.to(self.proj.weight.dtype))
        self.proj.bias.copy_(w[-1].to(self.proj.bias.dtype))
        self.fitted_flag.fill_(True)


def build_head(name: str, hidden_size: int, spec: TaskSpec, **params: object) -> nn.Module:
    """The head called ``name`` (``auto``: the task's default), sized for the task."""
    if name == "auto":
        name = spec.default_head
    cls = HEADS.get(name)
    try:
        return cls(hidden_size, spec, **params)
    except TypeError as e:
        raise ConfigError("head", params, hint=f"{name} head: {e}") from e
