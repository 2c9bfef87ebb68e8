"""What a recurrent cell declares about itself, once, in its own module.

The fast path (a ``torch.nn`` module, cuDNN on a GPU), the reference path (the cell's step
equations, run step by step so its gates can be read) and the introspection callbacks all
read a cell's :class:`CellDef`; nothing else in stm_lab lists cells or their gates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from stm_lab.registry import Registry


@dataclass(frozen=True)
class CellDef:
    """One recurrent cell.

    ``layer`` is the reference path's loop over one layer, with the signature
    ``layer(xw, w_hh, b_hh, h0, c0, relu, keep) -> (hidden, cells, gates, c_last)``: ``xw`` the
    input projections of every step (T, B, blocks*H), ``hidden`` (T, B, H), ``cells`` (T, B, H)
    and ``gates`` (T, B, len(gates), H) when ``keep`` (else empty), ``c_last`` the last cell state
    (empty for cells without one). It must be TorchScript-compatible (it is scripted once per
    process) and use the same weight layout as ``torch_module``, so one state dict fits both.
    """

    name: str
    torch_module: type[nn.RNNBase]  # the fast path
    blocks: int                     # weight blocks per layer: weight_hh has blocks * H rows
    gates: tuple[str, ...]          # the per-step activations ``layer`` returns, in order
    sigmoid_gates: tuple[str, ...]  # those in (0, 1): where saturation kills the gradient
    memory_gate: str | None         # the gate that decides how much old state is kept (1 = all)
    cell_state: bool                # a second state vector (an LSTM's c)
    layer: Callable
    equations: str                  # the step equations, for documentation


CELLS: Registry[CellDef] = Registry("cell", "cell._target_")
