"""minGRU and minLSTM (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We
Needed?", arXiv 2410.01201): gated recurrences whose gates read only the input, so a whole
sequence is one linear recurrence h_t = a_t * h_(t-1) + b_t, computed with a parallel scan.

minGRU, with k = W_z x + b_z and h~ = W_h x + b_h::

    z_t = sigmoid(k_t),  h_t = (1 - z_t) * h_(t-1) + z_t * g(h~_t)

minLSTM, with k_f, k_i, h~ linear in x::

    f' = f / (f + i),  i' = i / (f + i)  (f = sigmoid(k_f), i = sigmoid(k_i))
    h_t = f'_t * h_(t-1) + i'_t * g(h~_t)

g(x) = x + 0.5 for x >= 0 and sigmoid(x) below keeps every state positive, which the
log-space scan needs (Heinsen 2023): with A_t = sum_(s<=t) log a_s,

    h_t = exp(A_t + logcumsumexp_(s<=t)(log b_s - A_s))      (h_0 folded in as log h_0 at s=0)

``mode="parallel"`` (training) runs that scan, vectorised over time; ``mode="sequential"``
runs the recurrence step by step in linear space from sigmoid gates, the reference the scan
is tested against (tests/test_comparator_cells.py). Both use the same parameters.
``chunk_size`` (16 in conf/cell/mingru.yaml) runs the log-space scan within chunks and joins them with a
linear-space doubling scan (see :func:`log_space_scan`); ``null`` is the paper's single scan.

Stacking. Each layer's gate and candidate are linear maps of *its own input*: the input
projection of layer l reads layer l-1's states, so later layers' gates depend on the past
through the layers below (the paper's argument for depth). ``block="plain"`` stacks layers
as torch.nn.GRU does (dropout between layers). ``block="residual"`` follows the authors'
released code (BorealisAI/minRNNs, models/model.py): a linear embedding to hidden_size, then
per layer x + out(minRNN(norm(x))) with a LayerNorm before each minRNN and a final norm
(their optional depth-wise convolution and MLP are left out). The paper's appendix itself
could not be read here; the layout above is the code's.

The state is zero at the start (log h_0 = -inf) unless ``h0`` (positive) is given.
Float32 note: a single log-space scan adds and subtracts |A_t|, which grows with the total
decay over the sequence, so its rounding error grows with T (measured against the sequential
form: ~5e-6 at T=37 but ~1e-4 at T=1000 with default init). Chunks of 16 keep it at ~3e-6
whatever T; float64 agrees to ~1e-12 either way.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stm_lab.errors import ConfigError

Mode = Literal["parallel", "sequential"]
Block = Literal["plain", "residual"]
MODES: tuple[str, ...] = get_args(Mode)
BLOCKS: tuple[str, ...] = get_args(Block)


def g(x: Tensor) -> Tensor:
    """x + 0.5 for x >= 0, sigmoid(x) below: positive, continuous, identity-like for large x."""
    return torch.where(x >= 0, F.relu(x) + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """log g(x), computed without forming g (no log of a tiny sigmoid)."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


# Largest spread of exponents a chunk's logcumsumexp may take with one reference (the chunk's
# maximum) before exp() would leave the normal range: then torch.logcumsumexp is used instead.
_SPREAD_LIMIT = {torch.float16: 9.0, torch.bfloat16: 80.0, torch.float32: 80.0, torch.float64: 700.0}


def chunk_logcumsumexp(u: Tensor, dim: int) -> Tensor:
    """logcumsumexp along a short ``dim``, as max + log(cumsum(exp(u - max))).

    Exact up to rounding while the finite entries of every slice span less than the dtype's
    normal exponent range (checked; otherwise it falls back to ``torch.logcumsumexp``). On a CPU
    thread it is ~12x faster than ``torch.logcumsumexp`` (forward + backward, float32, chunks
    of 16; benchmarks/README.md), which made the scan slower than an LSTM.
    """
    v = u.detach()
    ref, low = v.amax(dim=dim, keepdim=True), v.amin(dim=dim, keepdim=True)
    if torch.isinf(low).any():  # -inf entries (b = 0 padding) add nothing: leave them out of the spread
        low = torch.where(torch.isfinite(v), v, ref).amin(dim=dim, keepdim=True)
    if (ref - low).max() > _SPREAD_LIMIT.get(u.dtype, 80.0):
        return torch.logcumsumexp(u, dim=dim)
    return ref + torch.log(torch.cumsum(torch.exp(u - ref), dim=dim))


def log_space_scan(log_a: Tensor, log_b: Tensor, h0: Tensor | None = None,
                   chunk_size: int | None = None) -> Tensor:
    """All states of h_t = a_t h_(t-1) + b_t (t = 1..T) from log a, log b of shape (B, T, H) and
    a positive h_0 of shape (B, H) (None: h_0 = 0), vectorised over time.

    ``chunk_size=None``: one log-space scan over the whole sequence (cumsum + logcumsumexp,
    the paper's form). Its rounding error grows with the total decay |A_t| (cancellation in
    A_t + logcumsumexp(log b - A)). With a chunk size, the same log-space scan runs inside
    chunks of that many steps (all chunks at once), so |A| stays bounded, and the chunks are
    joined by a doubling (Hillis-Steele) scan of their affine maps h -> P h + E in linear
    space, where everything is a product or a sum of non-negative numbers: log2(T / chunk)
    vectorised steps, no cancellation.
    """
    B, T, H = log_a.shape
    if chunk_size is None or chunk_size >= T:
        A = torch.cumsum(log_a, dim=1)
        terms = log_b - A
        if h0 is None:
            return torch.exp(A + torch.logcumsumexp(terms, dim=1))
        terms = torch.cat([torch.log(h0).unsqueeze(1), terms], dim=1)
        return torch.exp(A + torch.logcumsumexp(terms, dim=1)[:, 1:])
    n = -(-T // chunk_size)
    pad = n * chunk_size - T
    if pad:  # a = 1, b = 0 after the end: the padded steps change nothing and are cut off
        log_a = F.pad(log_a, (0, 0, 0, pad))
        log_b = F.pad(log_b, (0, 0, 0, pad), value=float("-inf"))
    log_a = log_a.reshape(B, n, chunk_size, H)
    A = torch.cumsum(log_a, dim=2)
    decay = torch.exp(A)  # product of a from the chunk's start to each step
    local = torch.exp(A + chunk_logcumsumexp(log_b.reshape(B, n, chunk_size, H) - A, dim=2))
    P, E = decay[:, :, -1], local[:, :, -1]  # chunk c maps its entering state h to P h + E
    d = 1
    while d < n:  # after this, (P, E)[c] is the composition of chunks 0..c
        P_before = F.pad(P[:, :-d], (0, 0, d, 0), value=1.0)
        E_before = F.pad(E[:, :-d], (0, 0, d, 0))
        P, E = P * P_before, P * E_before + E
        d *= 2
    ends = E if h0 is None else P * h0.unsqueeze(1) + E
    first = torch.zeros_like(ends[:, :1]) if h0 is None else h0.unsqueeze(1)
    starts = torch.cat([first, ends[:, :-1]], dim=1)
    return (decay * starts.unsqueeze(2) + local).reshape(B, n * chunk_size, H)[:, :T]


def _states_at(layer_states: list[Tensor], lengths: Tensor) -> Tensor:
    """(num_layers, B, H): each layer's state at each sequence's last real step."""
    last = (lengths.to(layer_states[0].device).long().clamp(min=1) - 1).view(-1, 1, 1)
    return torch.stack([h.gather(1, last.expand(-1, 1, h.shape[-1])).squeeze(1) for h in layer_states])


class _MinLayer(nn.Module):
    """One minGRU or minLSTM layer: a single input projection, then the recurrence."""

    def __init__(self, kind: str, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.kind = kind
        self.proj = nn.Linear(input_size, (2 if kind == "gru" else 3) * hidden_size)

    def log_coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """log a_t and log b_t of the linear recurrence (parallel path)."""
        if self.kind == "gru":
            k, cand = self.proj(x).chunk(2, dim=-1)
            return -F.softplus(k), -F.softplus(-k) + log_g(cand)
        k_f, k_i, cand = self.proj(x).chunk(3, dim=-1)
        diff = F.softplus(-k_f) - F.softplus(-k_i)  # log i - log f
        return -F.softplus(diff), -F.softplus(-diff) + log_g(cand)

    def coefficients(self, pre_t: Tensor) -> tuple[Tensor, Tensor]:
        """a_t and b_t from one step's pre-activations, with the gates as the paper writes them
        (sequential path)."""
        if self.kind == "gru":
            k, cand = pre_t.chunk(2, dim=-1)
            z = torch.sigmoid(k)
            return 1 - z, z * g(cand)
        k_f, k_i, cand = pre_t.chunk(3, dim=-1)
        f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
        return f / (f + i), i / (f + i) * g(cand)

    def forward(self, x: Tensor, h0: Tensor | None, mode: str, chunk_size: int | None = None) -> Tensor:
        if mode == "parallel":
            log_a, log_b = self.log_coefficients(x)
            return log_space_scan(log_a, log_b, h0, chunk_size)
        h = torch.zeros(x.shape[0], self.proj.out_features // (2 if self.kind == "gru" else 3),
                        dtype=x.dtype, device=x.device) if h0 is None else h0
        out = []
        # The projection reads x_t only: done once for all steps (unbind: one cheap backward).
        for pre_t in self.proj(x).unbind(1):
            a, b = self.coefficients(pre_t)
            h = a * h + b
            out.append(h)
        return torch.stack(out, dim=1)


class _MinRNN(nn.Module):
    kind = ""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                 mode: Mode, block: Block, chunk_size: int | None) -> None:
        super().__init__()
        for key, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"cell.{key}", value, "an integer >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError("cell.dropout", dropout, "a number in [0, 1)")
        if mode not in MODES:
            raise ConfigError("cell.mode", mode, MODES)
        if block not in BLOCKS:
            raise ConfigError("cell.block", block, BLOCKS)
        if chunk_size is not None and (not isinstance(chunk_size, int) or isinstance(chunk_size, bool)
                                       or chunk_size < 1):
            raise ConfigError("cell.chunk_size", chunk_size, "an integer >= 1, or null (one scan)")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.mode, self.block, self.chunk_size = mode, block, chunk_size
        self.drop = nn.Dropout(dropout)
        H = hidden_size
        if block == "plain":
            sizes = [input_size] + [H] * (num_layers - 1)
            self.layers = nn.ModuleList(_MinLayer(self.kind, n, H) for n in sizes)
        else:
            self.embed = nn.Linear(input_size, H)
            self.layers = nn.ModuleList(_MinLayer(self.kind, H, H) for _ in range(num_layers))
            self.norms = nn.ModuleList(nn.LayerNorm(H) for _ in range(num_layers))
            self.outs = nn.ModuleList(nn.Linear(H, H) for _ in range(num_layers))
            self.final_norm = nn.LayerNorm(H)

    def forward(self, x: Tensor, lengths: Tensor | None = None, h0: Tensor | None = None,
                mode: str | None = None) -> tuple[Tensor, Tensor]:
        """(B, T, input_size) -> (outputs (B, T, hidden_size), final states (num_layers, B, hidden_size)).

        The cell protocol (:mod:`stm_lab.cells.recurrent`): with ``lengths`` (B,), the final
        state is each sequence's state at its last real step (the recurrence is causal, so the
        padding after it changes nothing before it). ``h0``: optional positive initial states
        (num_layers, B, hidden_size). ``mode`` overrides the module's own (``"sequential"`` for
        the step-by-step reference).
        """
        mode = mode or self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if x.dim() != 3:
            raise ValueError(f"expected a batch-first (B, T, input_size) tensor, got shape {tuple(x.shape)}")
        states = []  # every layer's states (B, T, H), for the final state
        if self.block == "plain":
            out = x
            for k, layer in enumerate(self.layers):
                if k > 0:
                    out = self.drop(out)  # between layers only, as torch.nn.GRU
                out = layer(out, None if h0 is None else h0[k], mode, self.chunk_size)
                states.append(out)
        else:
            z = self.embed(x)
            for k, layer in enumerate(self.layers):
                h = layer(self.norms[k](z), None if h0 is None else h0[k], mode, self.chunk_size)
                states.append(h)
                z = z + self.drop(self.outs[k](h))
            out = self.final_norm(z)
        if lengths is None:
            return out, torch.stack([h[:, -1] for h in states])
        return out, _states_at(states, lengths)

    def sequential(self, x: Tensor, h0: Tensor | None = None,
                   lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The step-by-step reference with the same parameters."""
        return self.forward(x, lengths, h0, mode="sequential")


class MinGRU(_MinRNN):
    """minGRU: one gate and a candidate, both from the input only (2 * H * (in + 1) parameters
    per plain layer). See the module docstring for the equations, the scan and stacking."""

    kind = "gru"


class MinLSTM(_MinRNN):
    """minLSTM: forget and input gates from the input only, normalised to sum to one (3 * H *
    (in + 1) parameters per plain layer). See the module docstring."""

    kind = "lstm"
