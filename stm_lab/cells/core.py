"""What the model gets from a cell, whatever the cell: every step's output and the final state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class CoreOutput:
    """``outputs`` (B, T, H): the last layer's state at every step; ``final``: the final state as
    the cell returns it (torch's ``h_n``, or ``(h_n, c_n)`` for an LSTM), or None."""

    outputs: torch.Tensor
    final: Any = None


def run_core(core: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None = None) -> CoreOutput:
    """Call a cell under the cell protocol (``cell(x[, lengths]) -> (outputs, final)``); a cell that
    returns only the outputs tensor is accepted too."""
    out = core(x) if lengths is None else core(x, lengths=lengths)
    if isinstance(out, torch.Tensor):
        return CoreOutput(out)
    outputs, final = out
    return CoreOutput(outputs, final)
