"""The reference path: any registered cell's equations, step by step, exposing its gates.

:class:`ReferenceRecurrent` holds the same parameters as ``torch.nn.RNN`` / ``LSTM`` / ``GRU``
under the same names (``weight_ih_l0``, ``bias_hh_l1``...), so a state dict moves between the
fast path and this one, and their outputs agree to float32 rounding (tests/test_reference_cells.py).
The equations themselves live with each cell (``stm_lab/cells/rnn.py``, ``lstm.py``, ``gru.py``).

The input projections ``W_ih x_t + b_ih`` do not depend on the recurrence, so they are computed
for all steps in one matrix product before the loop; only the recurrent part runs step by step.
The loop is TorchScript-compiled by default (``loop="script"``), which removes most of the
per-step Python overhead; ``eager`` runs the same function as plain Python (for a debugger).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stm_lab.cells.definition import CELLS, CellDef

LOOPS = ("script", "eager")
_SCRIPTED: dict[str, object] = {}


def layer_fn(definition: CellDef, loop: str):
    """The cell's layer loop, TorchScript-compiled once per process (``script``) or as written."""
    if loop == "eager":
        return definition.layer
    if definition.name not in _SCRIPTED:
        _SCRIPTED[definition.name] = torch.jit.script(definition.layer)
    return _SCRIPTED[definition.name]


@dataclass
class Internals:
    """Every step of every layer, batch first: ``hidden`` (L, B, T, H); ``cell`` (L, B, T, H) for a
    cell with a cell state, else None; ``gates`` (L, B, T, G, H) in the order of ``gate_names``
    (the cell's :attr:`CellDef.gates`), None for a cell without gates."""

    name: str
    hidden: Tensor
    cell: Tensor | None
    gates: Tensor | None
    gate_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.gate_names and self.name in CELLS:
            self.gate_names = CELLS.get(self.name).gates

    def gate(self, gate_name: str) -> Tensor:
        """One gate's activations, (L, B, T, H)."""
        if self.gates is None or gate_name not in self.gate_names:
            raise KeyError(f"{self.name} has no gate {gate_name!r}; it has {self.gate_names}")
        return self.gates[:, :, :, self.gate_names.index(gate_name)]


class ReferenceRecurrent(nn.Module):
    """A drop-in for ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (``batch_first=True``) built from a cell's
    equations.

    ``forward(x)`` returns ``(output, h_n)`` (``(output, (h_n, c_n))`` with a cell state) exactly as
    torch does; ``forward(x, return_internals=True)`` returns ``(output, Internals)``. Dropout
    between layers follows torch: applied to every layer's output but the last, in training only.
    """

    def __init__(self, definition: CellDef, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", dropout: float = 0.0, loop: str = "script") -> None:
        super().__init__()
        if loop not in LOOPS:
            raise ValueError(f"loop must be one of {LOOPS}, got {loop!r}")
        self.definition = definition
        self.mode, self.input_size, self.hidden_size = definition.name, input_size, hidden_size
        self.num_layers, self.nonlinearity, self.dropout, self.loop = num_layers, nonlinearity, dropout, loop
        self.batch_first = True
        rows = definition.blocks * hidden_size
        for k in range(num_layers):
            in_size = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(rows, in_size)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(rows, hidden_size)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(rows)))
            self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(rows)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's own initialisation: U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _layer(self, k: int, x: Tensor, keep: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One layer over the whole sequence; x is time-major (T, B, in)."""
        w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
        b_ih, b_hh = getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}")
        xw = F.linear(x, w_ih, b_ih)  # (T, B, blocks*H): every step's input projection at once
        h0 = x.new_zeros(x.shape[1], self.hidden_size)
        fn = layer_fn(self.definition, self.loop)
        return fn(xw, w_hh, b_hh, h0, h0, self.nonlinearity == "relu", keep)

    def forward(self, x: Tensor, return_internals: bool = False, lengths: Tensor | None = None):
        """``lengths`` (B,): the final state is read at each sequence's last real step."""
        if x.dim() != 3:
            raise ValueError(f"expected a batch-first (B, T, input_size) tensor, got shape {tuple(x.shape)}")
        with_cell = self.definition.cell_state
        keep = return_internals or (lengths is not None and with_cell)
        layer_in = x.transpose(0, 1)
        hidden, cells, gates, h_n, c_n = [], [], [], [], []
        last = None if lengths is None else (lengths.to(x.device) - 1).clamp(min=0)
        rows = torch.arange(x.shape[0], device=x.device)
        for k in range(self.num_layers):
            out, cs, gs, c_last = self._layer(k, layer_in, keep)
            hidden.append(out)
            h_n.append(out[-1] if last is None else out[last, rows])
            if with_cell:
                cells.append(cs)
                c_n.append(c_last if last is None else cs[last, rows])
            if gs.numel() and return_internals:
                gates.append(gs)
            layer_in = out
            if k < self.num_layers - 1 and self.dropout > 0 and self.training:
                layer_in = F.dropout(out, self.dropout, training=True)
        output = hidden[-1].transpose(0, 1)
        if return_internals:
            return output, Internals(
                self.mode,
                hidden=torch.stack(hidden).transpose(1, 2),
                cell=torch.stack(cells).transpose(1, 2) if cells else None,
                gates=torch.stack(gates).transpose(1, 2) if gates else None,
                gate_names=self.definition.gates,
            )
        h_n_t = torch.stack(h_n)
        if with_cell:
            return output, (h_n_t, torch.stack(c_n))
        return output, h_n_t

    def extra_repr(self) -> str:
        return (f"{self.mode}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"dropout={self.dropout}, loop={self.loop}")
