"""The encoder–decoder head (``head=seq2seq``): the recurrent core reads the source; a decoder of the
same cell family writes the target, token by token, starting from the core's final state.

It reads the sequence-to-sequence format (:mod:`stm_lab.tasks.seq2seq`): the batch's ``x`` and
``length`` are the source, ``y`` and ``mask`` the target tokens and their end of sequence. The core
runs with the source lengths (``needs_final_state``), so its final state is each source's state at
its last real token.

- **The decoder** is built from the run's ``cell`` section (``needs_cell_config``): the same class
  and options as the core (an LSTM core gets an LSTM decoder, with its forget bias and recurrent
  initialisation), on the fast path, with its own ``decoder_size`` and ``decoder_layers`` (null: the
  core's). When its size or depth differs from the core's, a learned bridge maps the core's top-layer
  final state to every decoder layer's initial state (tanh for hidden states, linear for an LSTM's
  cell state); otherwise the final state is handed over as it is.
- **Inputs**: a learned embedding of the previous target token (``<bos>`` first), of size
  ``embedding_dim`` (null: the decoder's size, as in Lake & Baroni 2018), with ``dropout`` on it
  and before the output layer (null: the cell's dropout).
- **Attention** over the core's states at the real source tokens (padding masked):
  ``none``; ``dot`` (Luong et al. 2015: after each decoder step, a dot-product score against the
  source states, projected to the decoder's size when the sizes differ, and the output read from
  tanh(W [state; context])); ``additive`` (Bahdanau et al. 2015: before each step, a score
  v·tanh(W s + U h) from the previous decoder state; the context is fed to the step with the token
  and read out with the new state).
- **Training**: each sequence is teacher-forced (fed the true previous token) with probability
  ``teacher_forcing``, else fed its own previous prediction — per sequence, as Lake & Baroni's
  trials were (half of them with 0.5). Only real target steps are computed (the target lengths come
  to the host once per batch): when every sequence of a batch is teacher-forced and the attention
  does not feed the step, the whole target runs through the decoder in one packed call (cuDNN on a
  GPU); otherwise the decoder steps token by token on the rows still inside their target, with
  torch's fused one-step kernels on the decoder module's own weights.
- **Validation and test**: greedy decoding (:meth:`Seq2SeqHead.generate`), which reads only the
  source and the core's states, never the targets: up to ``max_length`` tokens (null: the task's
  longest target + 1), stopping once every sequence has emitted its end of sequence (checked every
  few tokens, so there is no host sync per token). Its output is aligned with the target positions:
  :class:`~stm_lab.metrics.Scored` carries the emitted token at each (``tokens``; -1 after a
  sequence's end or past ``max_length``) and the step's scores (``preds``; zeros where nothing was
  decoded), so ``val/loss`` is the cross-entropy of the greedy decoder's own distributions.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from stm_lab.cells import CoreOutput
from stm_lab.cells.recurrent import TorchRecurrent
from stm_lab.errors import ConfigError
from stm_lab.heads.base import Batch, Head
from stm_lab.metrics import Scored
from stm_lab.tasks.seq2seq import TGT_BOS, TGT_EOS
from stm_lab.tasks.spec import TaskSpec
from stm_lab.validation import locate

Attention = Literal["none", "dot", "additive"]
ATTENTION = ("none", "dot", "additive")
NO_TOKEN = -1
CHECK_EVERY = 8  # greedy decoding asks whether every sequence has ended once per this many tokens


class Memory(NamedTuple):
    """What the decoder reads from the encoder: its states (B, S, H), their projection for the
    attention scores (or None), and the real source positions (B, S)."""

    states: torch.Tensor
    keys: torch.Tensor | None
    source: torch.Tensor


def _positive(key: str, value: object) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigError(f"head.{key}", value, "null or an integer >= 1")


def _single_step(decoder: TorchRecurrent):
    """torch's fused one-step kernel for the decoder's cell family, or None."""
    module = decoder.definition.torch_module
    if module is nn.LSTM:
        return torch.lstm_cell
    if module is nn.GRU:
        return torch.gru_cell
    if module is nn.RNN:
        return torch.rnn_relu_cell if decoder.nonlinearity == "relu" else torch.rnn_tanh_cell
    return None


# Inside the decoder loops the state is a list with one entry per layer: h (B, D), or (h, c) for a
# cell with a cell state. Rows are on dim 0, so selecting rows is a view, and no per-step stacking.
Layers = list


def _rows(layers: Layers, rows: torch.Tensor | slice) -> Layers:
    """The state of the rows ``rows`` (indices, or a slice such as the first k)."""
    return [tuple(s[rows] for s in layer) if isinstance(layer, tuple) else layer[rows] for layer in layers]


class Seq2SeqHead(Head):
    """An encoder–decoder readout for tasks whose answer is a sequence (module docstring)."""

    needs_final_state = True
    needs_cell_config = True

    def __init__(self, hidden_size: int, spec: TaskSpec, cell_config: Mapping[str, Any],
                 decoder_size: int | None, decoder_layers: int | None, dropout: float | None,
                 embedding_dim: int | None, attention: Attention, teacher_forcing: float,
                 max_length: int | None) -> None:
        super().__init__(hidden_size, spec)
        if spec.default_head != "seq2seq" or not spec.is_classification or not spec.positions:
            raise ConfigError("head", "seq2seq", hint="this task's answer is not a sequence in the "
                              "sequence-to-sequence format (stm_lab.tasks.seq2seq)")
        if attention not in ATTENTION:
            raise ConfigError("head.attention", attention, list(ATTENTION))
        if not (isinstance(teacher_forcing, int | float) and 0.0 <= teacher_forcing <= 1.0):
            raise ConfigError("head.teacher_forcing", teacher_forcing, "a number in [0, 1]")
        if dropout is not None and not 0.0 <= dropout < 1.0:
            raise ConfigError("head.dropout", dropout, "null or a number in [0, 1)")
        for key, value in (("decoder_size", decoder_size), ("decoder_layers", decoder_layers),
                           ("embedding_dim", embedding_dim), ("max_length", max_length)):
            _positive(key, value)
        cls = locate("cell._target_", cell_config.get("_target_"), "a cell class")
        if not (inspect.isclass(cls) and issubclass(cls, TorchRecurrent)):
            raise ConfigError("cell._target_", cell_config.get("_target_"),
                              hint="head=seq2seq builds its decoder like the core, from a built-in cell "
                                   "(a TorchRecurrent: stm_lab.cells.RNN, LSTM, GRU or a subclass)")
        encoder_layers = int(cell_config.get("num_layers", 1))
        self.attention, self.teacher_forcing, self.max_length = attention, float(teacher_forcing), max_length
        self.decoder_size = decoder_size or hidden_size
        self.decoder_layers = decoder_layers or encoder_layers
        self.cell_state = cls.definition.cell_state
        p = float(cell_config.get("dropout", 0.0)) if dropout is None else float(dropout)
        emb = embedding_dim or self.decoder_size
        H, D, V = hidden_size, self.decoder_size, spec.output_size

        options = {k: v for k, v in cell_config.items() if k not in ("_target_", "name")}
        options.update(hidden_size=D, num_layers=self.decoder_layers, dropout=p, impl="fast")
        step_input = emb + (H if attention == "additive" else 0)
        self.decoder = cls(input_size=step_input, **options)
        self._cell_fn = _single_step(self.decoder)
        self._weights = [tuple(f"{w}_l{k}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                         for k in range(self.decoder_layers)]
        self.embed = nn.Embedding(V, emb)
        self.drop = nn.Dropout(p)

        # The core's final state → the decoder's initial state, when their shapes differ.
        self.bridged = (D, self.decoder_layers) != (H, encoder_layers)
        if self.bridged:
            self.bridge = nn.Linear(H, self.decoder_layers * D)
            self.bridge_cell = nn.Linear(H, self.decoder_layers * D) if self.cell_state else None

        if attention == "additive":
            self.query = nn.Linear(D, D, bias=False)
            self.key = nn.Linear(H, D)
            self.score = nn.Linear(D, 1, bias=False)
            self.out = nn.Linear(D + H, V)
        elif attention == "dot":
            self.key = nn.Linear(H, D, bias=False) if H != D else None
            self.combine = nn.Linear(D + H, D)
            self.out = nn.Linear(D, V)
        else:
            self.out = nn.Linear(D, V)

    # ----------------------------------------------------------------------------- pieces

    def initial_state(self, final: Any) -> Layers:
        """The decoder's initial state, per layer, from the core's final state (torch's layout:
        ``h_n`` (L, B, H), or ``(h_n, c_n)``)."""
        h, c = final if self.cell_state else (final, None)
        if self.bridged:
            B, L, D = h.shape[1], self.decoder_layers, self.decoder_size

            def spread(x: torch.Tensor) -> torch.Tensor:  # (B, L*D) → (L, B, D)
                return x.view(B, L, D).transpose(0, 1)

            h = spread(torch.tanh(self.bridge(h[-1])))
            c = spread(self.bridge_cell(c[-1])) if self.cell_state else None
        return [(h[k], c[k]) if self.cell_state else h[k] for k in range(self.decoder_layers)]

    def _torch_state(self, layers: Layers) -> Any:
        """Per-layer state → torch's layout, for the decoder's ``torch.nn`` module."""
        if self.cell_state:
            return (torch.stack([h for h, _ in layers]).contiguous(), torch.stack([c for _, c in layers]).contiguous())
        return torch.stack(layers).contiguous()

    def _layers(self, state: Any) -> Layers:
        h, c = state if self.cell_state else (state, None)
        return [(h[k], c[k]) if self.cell_state else h[k] for k in range(self.decoder_layers)]

    def memory(self, states: CoreOutput, batch: Batch) -> Memory:
        if "length" not in batch:
            raise KeyError("head=seq2seq needs the batch's source lengths ('length')")
        enc = states.outputs
        source = torch.arange(enc.shape[1], device=enc.device)[None, :] < batch["length"].to(enc.device)[:, None]
        keys = None
        if self.attention == "additive" or (self.attention == "dot" and self.key is not None):
            keys = self.key(enc)  # once per batch, not per step
        return Memory(enc, keys, source)

    def _attend(self, scores: torch.Tensor, memory: Memory) -> torch.Tensor:
        """Scores (B, T, S) → context (B, T, H): softmax over the real source positions."""
        weights = scores.masked_fill(~memory.source[:, None, :], float("-inf")).softmax(-1)
        return torch.bmm(weights, memory.states)

    def _top(self, layers: Layers) -> torch.Tensor:
        return layers[-1][0] if self.cell_state else layers[-1]

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(x) if self.training and self.drop.p else x  # no call at all when idle

    def _inputs(self, tokens: torch.Tensor, state: Layers, memory: Memory) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens (B,) or (B, T) → the decoder's inputs (B[, T], in), and the additive context if any
        (additive attention: one step, tokens (B,))."""
        e = self._dropout(self.embed(tokens))
        if self.attention != "additive":
            return e, None
        q = self.query(self._top(state))[:, None, :]  # (B, 1, D)
        scores = self.score(torch.tanh(q + memory.keys)).transpose(1, 2)  # (B, 1, S)
        context = self._attend(scores, memory)[:, 0]
        return torch.cat([e, context], -1), context

    def _readout(self, out: torch.Tensor, context: torch.Tensor | None, memory: Memory) -> torch.Tensor:
        """Decoder outputs (B[, T], D) → scores over the target tokens (B[, T], V)."""
        if self.attention == "additive":
            return self.out(self._dropout(torch.cat([out, context], -1)))
        if self.attention == "dot":
            one = out.dim() == 2
            query = out[:, None] if one else out
            keys = memory.states if memory.keys is None else memory.keys
            context = self._attend(torch.bmm(query, keys.transpose(1, 2)), memory)
            out = torch.tanh(self.combine(torch.cat([out, context[:, 0] if one else context], -1)))
        return self.out(self._dropout(out))

    def _recur(self, inputs: torch.Tensor, layers: Layers) -> tuple[torch.Tensor, Layers]:
        """One step of the decoder's layers: inputs (B, in) → top output (B, D), new state.

        torch's fused single-step kernels (``torch.lstm_cell`` / ``gru_cell`` / ``rnn_*_cell``) on
        the decoder module's own weights: on a CPU a whole ``nn.LSTM`` call per token costs about
        twice as much in training (benchmarks/README.md). Dropout between layers as ``torch.nn``
        applies it. A cell without such a kernel steps its module with a length-1 sequence."""
        rnn = self.decoder.rnn
        if self._cell_fn is None:
            out, state = rnn(inputs[:, None], self._torch_state(layers))
            return out[:, 0], self._layers(state)
        new, x = [], inputs
        for k, layer in enumerate(layers):
            w = self._weights[k]
            if self.cell_state:
                h, c = self._cell_fn(x, layer, *(getattr(rnn, name) for name in w))
                new.append((h, c))
            else:
                h = self._cell_fn(x, layer, *(getattr(rnn, name) for name in w))
                new.append(h)
            x = h
            if k < len(layers) - 1 and self.decoder.dropout and self.training:
                x = F.dropout(x, self.decoder.dropout, training=True)
        return h, new

    def step(self, tokens: torch.Tensor, state: Layers, memory: Memory) -> tuple[torch.Tensor, Layers]:
        """One decoder step: previous tokens (B,) → scores (B, V) and the new state."""
        inputs, context = self._inputs(tokens, state, memory)
        out, state = self._recur(inputs, state)
        return self._readout(out, context, memory), state

    # ------------------------------------------------------------------------- decoding

    def generate(self, states: CoreOutput, batch: Batch, max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding from the source alone: ``(scores (B, L, V), tokens (B, L))``, tokens -1
        after each sequence's end of sequence. Reads ``batch["length"]`` and nothing of the target."""
        steps = max_length or self.max_length or self.spec.positions
        memory = self.memory(states, batch)
        state = self.initial_state(states.final)
        B = memory.states.shape[0]
        token = torch.full((B,), TGT_BOS, dtype=torch.long, device=memory.states.device)
        scores, tokens = [], []
        for t in range(steps):
            logits, state = self.step(token, state, memory)
            token = logits.argmax(-1)
            scores.append(logits)
            tokens.append(token)
            if (t + 1) % CHECK_EVERY == 0 and bool((torch.stack(tokens, 1) == TGT_EOS).any(1).all()):
                break  # every sequence has ended: one host sync per CHECK_EVERY tokens
        out = torch.stack(tokens, 1)
        eos = (out == TGT_EOS).long()
        return torch.stack(scores, 1), out.masked_fill(eos.cumsum(1) - eos > 0, NO_TOKEN)

    def _teacher_forced(self, states: CoreOutput, batch: Batch) -> torch.Tensor:
        """Training: scores at the scored steps (N, V), in the order of ``y[mask]``. Each sequence is
        fed the true previous token (probability ``teacher_forcing``) or its own previous prediction.
        Only real target steps are computed: the decoder runs packed (one call) or, token by token,
        on the rows still inside their target (longest first), as packed sequences do."""
        y, mask = batch["y"], batch["mask"]
        counts = mask.sum(1).cpu()  # target lengths on the host: one sync per batch
        U = int(counts.max())
        B, device = y.shape[0], y.device
        target = y[:, :U].clamp(min=0)  # -100 past a target's end: never fed at a scored step
        bos = torch.full((B, 1), TGT_BOS, dtype=torch.long, device=device)
        previous = torch.cat([bos, target[:, :-1]], 1)
        memory = self.memory(states, batch)
        state = self.initial_state(states.final)
        scored = mask[:, :U]
        forced = torch.rand(B) < self.teacher_forcing  # drawn on the host: no device sync to branch
        if bool(forced.all()) and self.attention != "additive":  # the whole target in one call
            inputs, _ = self._inputs(previous, state, memory)
            packed = pack_padded_sequence(inputs, counts.clamp(min=1), batch_first=True, enforce_sorted=False)
            out, _ = self.decoder.rnn(packed, self._torch_state(state))
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=U)
            return self._readout(out, None, memory)[scored]

        order = torch.argsort(counts, descending=True, stable=True)
        active = (counts[order][None, :] > torch.arange(U)[:, None]).sum(1).tolist()  # rows alive at t
        rows = order.to(device, non_blocking=True)
        previous, forced = previous[rows], forced[order].to(device, non_blocking=True)
        memory = Memory(*(None if m is None else m[rows] for m in memory))
        state = _rows(state, rows)
        steps: list[torch.Tensor] = []
        for t, k in enumerate(active):
            if k < (steps[-1].shape[0] if steps else B):
                state = _rows(state, slice(0, k))
            token = previous[:k, 0] if t == 0 else \
                torch.where(forced[:k], previous[:k, t], steps[-1][:k].detach().argmax(-1))
            here = Memory(memory.states[:k], None if memory.keys is None else memory.keys[:k], memory.source[:k])
            logits, state = self.step(token, state, here)
            steps.append(logits)
        # steps are time-major over the sorted rows: row r's step t sits at offset[t] + rank[r].
        offset = torch.tensor([0, *active[:-1]], device=device).cumsum(0)
        rank = torch.empty(B, dtype=torch.long, device=device)
        rank[rows] = torch.arange(B, device=device)
        return torch.cat(steps)[(offset[None, :] + rank[:, None])[scored]]

    def forward(self, states: CoreOutput, batch: Batch) -> Scored:
        y, mask = batch["y"], batch["mask"]
        if self.training:
            return Scored(self._teacher_forced(states, batch), y[mask], mask)
        scores, tokens = self.generate(states, batch)
        U, L = y.shape[1], scores.shape[1]
        if L >= U:
            scores, tokens = scores[:, :U], tokens[:, :U]
        else:  # nothing decoded past L: no token, and flat scores
            scores = F.pad(scores, (0, 0, 0, U - L))
            tokens = F.pad(tokens, (0, U - L), value=NO_TOKEN)
        return Scored(scores[mask], y[mask], mask, tokens[mask])
