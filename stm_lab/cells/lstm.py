"""The LSTM (Hochreiter & Schmidhuber 1997, with a forget gate: Gers et al. 2000), torch's layout::

    i, f, g, o = σ(.), σ(.), tanh(.), σ(.)  of  W_ih x + b_ih + W_hh h + b_hh   (blocks in this order)
    c' = f ⊙ c + i ⊙ g ;  h' = o ⊙ tanh(c')
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stm_lab.cells.definition import CELLS, CellDef
from stm_lab.cells.recurrent import Impl, Loop, RecurrentInit, TorchRecurrent


def lstm_layer(xw: Tensor, w_hh: Tensor, b_hh: Tensor, h: Tensor, c: Tensor, relu: bool,
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


LSTM_DEF = CELLS.register("lstm")(CellDef(
    name="lstm", torch_module=nn.LSTM, blocks=4, gates=("input", "forget", "cell", "output"),
    sigmoid_gates=("input", "forget", "output"), memory_gate="forget", cell_state=True,
    layer=lstm_layer, equations=__doc__.split("::", 1)[1].strip(),
))


class LSTM(TorchRecurrent):
    """``forget_bias`` sets the forget-gate slice of ``bias_ih`` and zeroes it in ``bias_hh``:
    torch adds both vectors, so writing it into each would double the effective bias."""

    definition = LSTM_DEF

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                 recurrent_init: RecurrentInit, forget_bias: float | None, impl: Impl,
                 reference_loop: Loop) -> None:
        super().__init__(input_size, hidden_size, num_layers, dropout, recurrent_init, impl, reference_loop)
        if forget_bias is not None:
            H = hidden_size
            with torch.no_grad():
                for layer in range(num_layers):
                    getattr(self.rnn, f"bias_ih_l{layer}")[H:2 * H].fill_(forget_bias)
                    getattr(self.rnn, f"bias_hh_l{layer}")[H:2 * H].zero_()
