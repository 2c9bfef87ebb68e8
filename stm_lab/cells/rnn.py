"""The vanilla (Elman) RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh | relu."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stm_lab.cells.definition import CELLS, CellDef
from stm_lab.cells.recurrent import Impl, Loop, RecurrentInit, TorchRecurrent


def rnn_layer(xw: Tensor, w_hh: Tensor, b_hh: Tensor, h: Tensor, c: Tensor, relu: bool,
              keep: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """xw: (T, B, H) input projections → hidden states (T, B, H); no gates, no cell state."""
    hs: list[Tensor] = []
    for x_t in xw.unbind(0):
        pre = x_t + F.linear(h, w_hh, b_hh)
        h = torch.relu(pre) if relu else torch.tanh(pre)
        hs.append(h)
    empty = xw.new_empty(0)
    return torch.stack(hs), empty, empty, empty


RNN_DEF = CELLS.register("rnn")(CellDef(
    name="rnn", torch_module=nn.RNN, blocks=1, gates=(), sigmoid_gates=(), memory_gate=None,
    cell_state=False, layer=rnn_layer,
    equations="h' = act(W_ih x + b_ih + W_hh h + b_hh),  act = tanh | relu",
))


class RNN(TorchRecurrent):
    """Vanilla RNN; ``nonlinearity=relu`` with ``recurrent_init=identity`` is the IRNN."""

    definition = RNN_DEF

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                 nonlinearity: Literal["tanh", "relu"], recurrent_init: RecurrentInit,
                 impl: Impl, reference_loop: Loop) -> None:
        super().__init__(input_size, hidden_size, num_layers, dropout, recurrent_init, impl,
                         reference_loop, nonlinearity=nonlinearity)
