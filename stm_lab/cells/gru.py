"""The GRU (Cho et al. 2014), torch's layout (blocks r, z, n)::

    r = σ(W_ir x + b_ir + W_hr h + b_hr) ;  z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)) ;  h' = (1 - z) ⊙ n + z ⊙ h
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stm_lab.cells.definition import CELLS, CellDef
from stm_lab.cells.recurrent import Impl, Loop, RecurrentInit, TorchRecurrent


def gru_layer(xw: Tensor, w_hh: Tensor, b_hh: Tensor, h: Tensor, c: Tensor, relu: bool,
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


GRU_DEF = CELLS.register("gru")(CellDef(
    name="gru", torch_module=nn.GRU, blocks=3, gates=("reset", "update", "new"),
    sigmoid_gates=("reset", "update"), memory_gate="update", cell_state=False,
    layer=gru_layer, equations=__doc__.split("::", 1)[1].strip(),
))


class GRU(TorchRecurrent):
    definition = GRU_DEF

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                 recurrent_init: RecurrentInit, impl: Impl, reference_loop: Loop) -> None:
        super().__init__(input_size, hidden_size, num_layers, dropout, recurrent_init, impl, reference_loop)
