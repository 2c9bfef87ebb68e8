"""The reference path: the textbook equations of each cell, one time step at a time.

The parameters carry the names and layouts of ``torch.nn.RNN`` / ``LSTM`` / ``GRU``
(``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``; gate
order i, f, g, o for the LSTM and r, z, n for the GRU), so a state dict saved on
the fast path loads here unchanged and vice versa. With the same parameters the
outputs agree with torch's within float32 rounding.

Equations (x: layer input, h: previous hidden state, σ: logistic sigmoid)::

    rnn : h' = act(W_ih x + b_ih + W_hh h + b_hh)                   act = tanh | relu
    lstm: i, f, g, o = σ(.), σ(.), tanh(.), σ(.) of W_ih x + b_ih + W_hh h + b_hh
          c' = f ⊙ c + i ⊙ g ;  h' = o ⊙ tanh(c')
    gru : r = σ(W_ir x + b_ir + W_hr h + b_hr) ;  z = σ(W_iz x + b_iz + W_hz h + b_hz)
          n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)) ;  h' = (1 - z) ⊙ n + z ⊙ h

The input projections ``W_ih x_t + b_ih`` do not depend on the recurrence, so they
are computed for all steps in one matrix product before the loop; only the
recurrent part runs step by step. The loop is TorchScript-compiled by default
(``loop="script"``), which removes most of the per-step Python overhead; ``eager``
runs the same functions as plain Python (easier to step through in a debugger).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
# Names of the gate activations returned per step (sigmoid gates and the candidate).
GATE_NAMES = {"rnn": (), "lstm": ("input", "forget", "cell", "output"), "gru": ("reset", "update", "new")}
LOOPS = ("script", "eager")


def _rnn_layer(xw: Tensor, w_hh: Tensor, b_hh: Tensor, h: Tensor, relu: bool,
               keep: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """xw: (T, B, H) input projections → hidden states (T, B, H); no gates, no cell state."""
    hs: list[Tensor] = []
    for x_t in xw.unbind(0):
        pre = x_t + F.linear(h, w_hh, b_hh)
        h = torch.relu(pre) if relu else torch.tanh(pre)
        hs.append(h)
    empty = xw.new_empty(0)
    return torch.stack(hs), empty, empty, empty


def _lstm_layer(xw: Tensor, w_hh: Tensor, b_hh: Tensor, h: Tensor, c: Tensor,
                keep: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """xw: (T, B, 4H) → hidden states (T, B, H), cell states and gates (T, B, 4, H) if ``keep``,
    and the last cell state."""
    hs: list[Tensor] = []
    cs: list[Tensor] = []
    gs: list[Tensor] = []
    for x_t in xw.unbind(0):
        pre = x_t + F.linear(h, w_hh, b_hh)
        i_pre, f_pre, g_pre, o_pre = pre.chunk(4, 1)
        i = torch.sigmoid(i_pre)
        f = torch.sigmoid(f_pre)
        g = torch.tanh(g_pre)
        o = torch.sigmoid(o_pre)
        c = f * c + i * g
        h = o * torch.tanh(c)
        hs.append(h)
        if keep:
            cs.append(c)
            gs.append(torch.stack([i, f, g, o], 1))
    if keep:
        return torch.stack(hs), torch.stack(cs), torch.stack(gs), c
    empty = xw.new_empty(0)
    return torch.stack(hs), empty, empty, c


def _gru_layer(xw: Tensor, w_hh: Tensor, b_hh: Tensor, h: Tensor,
               keep: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """xw: (T, B, 3H) → hidden states (T, B, H) and gates r, z, n (T, B, 3, H) if ``keep``."""
    hs: list[Tensor] = []
    gs: list[Tensor] = []
    for x_t in xw.unbind(0):
        hw = F.linear(h, w_hh, b_hh)
        x_r, x_z, x_n = x_t.chunk(3, 1)
        h_r, h_z, h_n = hw.chunk(3, 1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h = (1.0 - z) * n + z * h
        hs.append(h)
        if keep:
            gs.append(torch.stack([r, z, n], 1))
    empty = xw.new_empty(0)
    return torch.stack(hs), empty, torch.stack(gs) if keep else empty, empty


_EAGER = {"rnn": _rnn_layer, "lstm": _lstm_layer, "gru": _gru_layer}
_SCRIPTED: dict[str, object] = {}


def _layer_fn(name: str, loop: str):
    if loop == "eager":
        return _EAGER[name]
    if name not in _SCRIPTED:  # compiled once per process, on first use
        _SCRIPTED[name] = torch.jit.script(_EAGER[name])
    return _SCRIPTED[name]


@dataclass
class Internals:
    """Every step of every layer, batch first: ``hidden`` (L, B, T, H); ``cell`` (L, B, T, H) for
    an LSTM, else None; ``gates`` (L, B, T, G, H) with G in the order of :data:`GATE_NAMES`
    (LSTM i, f, g, o; GRU r, z, n), None for a vanilla RNN."""

    name: str
    hidden: Tensor
    cell: Tensor | None
    gates: Tensor | None

    def gate(self, gate_name: str) -> Tensor:
        """One gate's activations, (L, B, T, H)."""
        if self.gates is None or gate_name not in GATE_NAMES[self.name]:
            raise KeyError(f"{self.name} has no gate {gate_name!r}; it has {GATE_NAMES[self.name]}")
        return self.gates[:, :, :, GATE_NAMES[self.name].index(gate_name)]


class ReferenceRecurrent(nn.Module):
    """A drop-in for ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (``batch_first=True``) built from the equations.

    ``forward(x)`` returns ``(output, h_n)`` (``(output, (h_n, c_n))`` for an LSTM) exactly as
    torch does; ``forward(x, return_internals=True)`` returns ``(output, Internals)``. Dropout
    between layers follows torch: applied to every layer's output but the last, in training only.
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", dropout: float = 0.0, loop: str = "script") -> None:
        super().__init__()
        if mode not in GATES:
            raise ValueError(f"mode must be one of {sorted(GATES)}, got {mode!r}")
        if loop not in LOOPS:
            raise ValueError(f"loop must be one of {LOOPS}, got {loop!r}")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.nonlinearity, self.dropout, self.loop = num_layers, nonlinearity, dropout, loop
        self.batch_first = True
        G = GATES[mode] * hidden_size
        for k in range(num_layers):
            in_size = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(G, in_size)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(G, hidden_size)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(G)))
            self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(G)))
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
        xw = F.linear(x, w_ih, b_ih)  # (T, B, G*H): every step's input projection at once
        h0 = x.new_zeros(x.shape[1], self.hidden_size)
        fn = _layer_fn(self.mode, self.loop)
        if self.mode == "lstm":
            return fn(xw, w_hh, b_hh, h0, h0, keep)
        if self.mode == "gru":
            return fn(xw, w_hh, b_hh, h0, keep)
        return fn(xw, w_hh, b_hh, h0, self.nonlinearity == "relu", keep)

    def forward(self, x: Tensor, return_internals: bool = False):
        if x.dim() != 3:
            raise ValueError(f"expected a batch-first (B, T, input_size) tensor, got shape {tuple(x.shape)}")
        keep = return_internals
        layer_in = x.transpose(0, 1)
        hidden, cells, gates, h_n, c_n = [], [], [], [], []
        for k in range(self.num_layers):
            out, cs, gs, c_last = self._layer(k, layer_in, keep)
            hidden.append(out)
            h_n.append(out[-1])
            if self.mode == "lstm":
                cells.append(cs)
                c_n.append(c_last)
            if self.mode != "rnn" and return_internals:
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
            )
        h_n_t = torch.stack(h_n)
        if self.mode == "lstm":
            return output, (h_n_t, torch.stack(c_n))
        return output, h_n_t

    def extra_repr(self) -> str:
        return (f"{self.mode}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"dropout={self.dropout}, loop={self.loop}")
