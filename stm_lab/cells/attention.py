"""A small causal self-attention stack: the recall upper reference of Zoology (Arora et al.
2023) and MAD (Poli et al. 2024), behind the same interface as the recurrent cells.

    x -> Linear(input_size, H) + positions -> dropout
      -> num_layers x [ h + Drop(MHA(LN(h)))  then, with mlp, h + Drop(MLP(LN(h))) ]
      -> LN

Pre-norm blocks (LayerNorm before each sub-layer, residual around it), causal multi-head
attention through ``torch.nn.functional.scaled_dot_product_attention`` (a fused kernel where
the device has one), an optional GELU MLP of width ``mlp_ratio * H``; ``dropout`` applies to
the embedded input, the attention weights and each residual branch. Positions are sinusoidal
(Vaswani et al. 2017; any length) or learned (at most ``max_len`` steps). Zoology's MQAR
attention has 2 layers, 1 head, no MLP, dropout 0.1; MAD's baseline model alternates
multi-head attention and SwiGLU MLPs at width 128.

Causality: the output at step t depends on inputs 0..t only (tested). Attention keeps every
past input, so its "state" grows with t; ``final_state`` is, by analogy with h_n, each
block's output at the last step, (num_layers, B, H).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stm_lab.errors import ConfigError

Positions = Literal["sinusoidal", "learned"]
POSITIONS: tuple[str, ...] = get_args(Positions)


def sinusoidal_positions(length: int, dim: int, device=None, dtype=None) -> Tensor:
    """(length, dim) sin/cos position codes at geometrically spaced frequencies."""
    pos = torch.arange(length, device=device, dtype=torch.float64)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float64) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim, device=device, dtype=torch.float64)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return out.to(dtype or torch.get_default_dtype())


class _Block(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, dropout: float, mlp: bool, mlp_ratio: int) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.norm1 = nn.LayerNorm(hidden_size)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.drop = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, mlp_ratio * hidden_size),
                                 nn.GELU(), nn.Linear(mlp_ratio * hidden_size, hidden_size)) if mlp else None

    def forward(self, h: Tensor) -> Tensor:
        B, T, H = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(B, T, 3, self.num_heads, H // self.num_heads).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        h = h + self.drop(self.out(a.transpose(1, 2).reshape(B, T, H)))
        if self.mlp is not None:
            h = h + self.drop(self.mlp(h))
        return h


class CausalAttention(nn.Module):
    """Causal self-attention with the recurrent cells' interface: ``forward(x)`` maps (B, T,
    input_size) to (outputs (B, T, hidden_size), final_state (num_layers, B, hidden_size))."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                 num_heads: int, positions: Positions, max_len: int, mlp: bool, mlp_ratio: int) -> None:
        super().__init__()
        for key, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers),
                           ("num_heads", num_heads), ("max_len", max_len), ("mlp_ratio", mlp_ratio)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"cell.{key}", value, "an integer >= 1")
        if hidden_size % num_heads:
            raise ConfigError("cell.num_heads", num_heads, f"a divisor of hidden_size ({hidden_size})")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError("cell.dropout", dropout, "a number in [0, 1)")
        if positions not in POSITIONS:
            raise ConfigError("cell.positions", positions, POSITIONS)
        if not isinstance(mlp, bool):
            raise ConfigError("cell.mlp", mlp, [True, False])
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.positions, self.max_len = positions, max_len
        self.embed = nn.Linear(input_size, hidden_size)
        self.pos = nn.Embedding(max_len, hidden_size) if positions == "learned" else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(hidden_size, num_heads, dropout, mlp, mlp_ratio)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The cell protocol (:mod:`stm_lab.cells.recurrent`): (B, T, input_size) -> (outputs,
        final_state). With ``lengths`` (B,), ``final_state`` is read at each sequence's last real
        step; attention is causal, so the padding after it changes nothing before it."""
        if x.dim() != 3:
            raise ValueError(f"expected a batch-first (B, T, input_size) tensor, got shape {tuple(x.shape)}")
        steps = x.shape[1]
        if self.pos is not None:
            if steps > self.max_len:
                raise ValueError(f"sequence of {steps} steps is longer than max_len={self.max_len} "
                                 "(learned positions); raise cell.max_len")
            p = self.pos.weight[:steps]
        else:
            p = sinusoidal_positions(steps, self.hidden_size, x.device, x.dtype)
        h = self.drop(self.embed(x) + p)
        if lengths is None:
            last = torch.full((x.shape[0],), steps - 1, dtype=torch.long, device=x.device)
        else:
            last = lengths.to(x.device).long().clamp(1, steps) - 1
        finals = []
        for block in self.blocks:
            h = block(h)
            finals.append(h[torch.arange(x.shape[0], device=x.device), last])
        return self.norm(h), torch.stack(finals)
