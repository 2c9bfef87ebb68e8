"""The built-in cells' common body: one declared cell (:class:`~stm_lab.cells.definition.CellDef`)
on the fast path (``torch.nn``: cuDNN on a GPU) or the reference path (its equations, step by
step), holding the same parameters under the same names either way.

Every cell stm_lab trains — built in or a researcher's own — follows one protocol: constructed
as ``Cell(input_size=..., **options)`` and called as ``cell(x, lengths=None)`` on a batch-first
``(B, T, input_size)`` tensor, returning ``(outputs (B, T, hidden_size), final_state)``, with a
``hidden_size`` attribute (docs/extending.md).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from stm_lab.cells.definition import CellDef
from stm_lab.cells.reference import Internals, ReferenceRecurrent
from stm_lab.errors import ConfigError

RecurrentInit = Literal["default", "orthogonal", "identity"]
Impl = Literal["fast", "reference"]
Loop = Literal["script", "eager"]


def _positive_int(key: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"cell.{key}", value, "an integer >= 1")


class TorchRecurrent(nn.Module):
    """A stack of ``num_layers`` layers of the cell ``definition``, batch first.

    ``recurrent_init`` sets the hidden-to-hidden matrices: torch's uniform default,
    ``orthogonal`` (one orthogonal block per gate), or ``identity`` (IRNN, Le et al. 2015;
    meant for the vanilla RNN with ``relu``). ``impl="reference"`` runs the cell's equations
    step by step (:mod:`stm_lab.cells.reference`; loop compiled with TorchScript unless
    ``reference_loop="eager"``); a checkpoint from one path loads into the other.
    """

    definition: ClassVar[CellDef]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                 recurrent_init: RecurrentInit, impl: Impl, reference_loop: Loop,
                 nonlinearity: str = "tanh") -> None:
        super().__init__()
        _positive_int("hidden_size", hidden_size)
        _positive_int("num_layers", num_layers)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError("cell.dropout", dropout, "a number in [0, 1)")
        self.name = self.definition.name
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.impl, self.reference_loop, self.nonlinearity = impl, reference_loop, nonlinearity
        # torch applies dropout between layers only; with one layer it would just warn.
        self.dropout = dropout if num_layers > 1 else 0.0
        if impl == "reference":
            self.rnn: nn.Module = self._reference()
        else:
            kwargs = {"nonlinearity": nonlinearity} if self.definition.torch_module is nn.RNN else {}
            self.rnn = self.definition.torch_module(input_size, hidden_size, num_layers=num_layers,
                                                    batch_first=True, dropout=self.dropout, **kwargs)
        self._init_recurrent(recurrent_init)

    def _reference(self) -> ReferenceRecurrent:
        return ReferenceRecurrent(self.definition, self.input_size, self.hidden_size, self.num_layers,
                                  nonlinearity=self.nonlinearity, dropout=self.dropout,
                                  loop=self.reference_loop)

    def reference(self) -> ReferenceRecurrent:
        """The reference path holding this cell's current weights (itself when ``impl="reference"``;
        otherwise a copy, on the same device and dtype, that does not share storage)."""
        if isinstance(self.rnn, ReferenceRecurrent):
            return self.rnn
        w = self.rnn.weight_ih_l0
        ref = self._reference().to(device=w.device, dtype=w.dtype)
        ref.load_state_dict(self.rnn.state_dict())
        return ref.train(self.training)

    def compile(self, *args, **kwargs) -> None:
        """torch.compile in place (the state dict keeps its keys). On the reference path the loop
        is traced from its eager form: Dynamo cannot look inside a TorchScript function and
        spends minutes trying (measured in docs/performance.md)."""
        if isinstance(self.rnn, ReferenceRecurrent):
            self.rnn.loop = "eager"
        super().compile(*args, **kwargs)

    @torch.no_grad()
    def internals(self, x: torch.Tensor) -> Internals:
        """Every step's hidden state, cell state and gates, computed on the reference path with the
        current weights; dropout as in the current train/eval mode."""
        return self.reference()(x, return_internals=True)[1]

    @torch.no_grad()
    def _init_recurrent(self, recurrent_init: str) -> None:
        H = self.hidden_size
        for layer in range(self.num_layers):
            w_hh = getattr(self.rnn, f"weight_hh_l{layer}")
            for g in range(self.definition.blocks):
                block = w_hh[g * H:(g + 1) * H]
                if recurrent_init == "orthogonal":
                    nn.init.orthogonal_(block)
                elif recurrent_init == "identity":
                    block.copy_(torch.eye(H))
            if recurrent_init == "identity":
                getattr(self.rnn, f"bias_hh_l{layer}").zero_()
                getattr(self.rnn, f"bias_ih_l{layer}").zero_()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        """(B, T, input_size) → (outputs (B, T, H), final state as torch returns it). With
        ``lengths``, the final state is each sequence's state at its last real step."""
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") \
                and not isinstance(self.rnn, ReferenceRecurrent):
            # torch's CPU RNN kernels (oneDNN) fail in bfloat16 on CPUs without native bf16
            # ("could not create a primitive descriptor"): the cell runs in float32 there and
            # the rest of the model stays in mixed precision.
            with torch.autocast("cpu", enabled=False):
                return self._run(x.float(), lengths)
        return self._run(x, lengths)

    def _run(self, x: torch.Tensor, lengths: torch.Tensor | None):
        if lengths is None:
            return self.rnn(x)
        if isinstance(self.rnn, ReferenceRecurrent):
            return self.rnn(x, lengths=lengths)
        packed = pack_padded_sequence(x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out, state
