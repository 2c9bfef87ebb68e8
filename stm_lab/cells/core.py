"""The recurrent core on the fast path: ``torch.nn`` RNN / LSTM / GRU (cuDNN on a GPU)."""

from __future__ import annotations

import torch
from torch import nn

from stm_lab.cells.reference import LOOPS, Internals, ReferenceRecurrent
from stm_lab.errors import ConfigError
from stm_lab.registry import Registry

CELLS: Registry = Registry("cell", "cell.name")
for _name, _cls in (("rnn", nn.RNN), ("lstm", nn.LSTM), ("gru", nn.GRU)):
    CELLS.register(_name)(_cls)
RECURRENT_INITS = ("default", "orthogonal", "identity")
NONLINEARITIES = ("tanh", "relu")
IMPLS = ("fast", "reference")


class RecurrentCore(nn.Module):
    """A stack of ``num_layers`` recurrent layers, batch first, returning every step's hidden state.

    ``recurrent_init`` sets the hidden-to-hidden matrices: torch's uniform default,
    ``orthogonal`` (one orthogonal block per gate), or ``identity`` (IRNN, Le et al.
    2015; meant for ``rnn`` with ``relu``). ``forget_bias`` (LSTM only) sets the
    forget-gate slice of ``bias_ih`` and zeroes it in ``bias_hh``: torch adds both
    vectors, so writing it into each would double the effective bias.

    ``impl="fast"`` runs ``torch.nn`` (cuDNN on a GPU); ``impl="reference"`` runs the
    textbook equations step by step (:mod:`stm_lab.cells.reference`, loop compiled with
    TorchScript unless ``reference_loop="eager"``). Both hold the same parameters under
    the same names, so a checkpoint from one loads into the other.
    """

    def __init__(self, name: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, nonlinearity: str = "tanh",
                 recurrent_init: str = "default", forget_bias: float | None = None,
                 impl: str = "fast", reference_loop: str = "script") -> None:
        super().__init__()
        cell_cls = CELLS.get(name)
        for key, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"cell.{key}", value, "an integer >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError("cell.dropout", dropout, "a number in [0, 1)")
        if nonlinearity not in NONLINEARITIES:
            raise ConfigError("cell.nonlinearity", nonlinearity, NONLINEARITIES)
        if name != "rnn" and nonlinearity != "tanh":
            raise ConfigError("cell.nonlinearity", nonlinearity, ["tanh"],
                              hint=f"{name} has fixed nonlinearities; relu is for cell=rnn")
        if recurrent_init not in RECURRENT_INITS:
            raise ConfigError("cell.recurrent_init", recurrent_init, RECURRENT_INITS)
        if forget_bias is not None and name != "lstm":
            raise ConfigError("cell.forget_bias", forget_bias, ["null"], hint="only an LSTM has a forget gate")
        if impl not in IMPLS:
            raise ConfigError("cell.impl", impl, IMPLS)
        if reference_loop not in LOOPS:
            raise ConfigError("cell.reference_loop", reference_loop, LOOPS)

        self.name, self.hidden_size, self.num_layers, self.impl = name, hidden_size, num_layers, impl
        self.input_size, self.nonlinearity, self.reference_loop = input_size, nonlinearity, reference_loop
        # torch applies dropout between layers only; with one layer it would just warn.
        self.dropout = dropout if num_layers > 1 else 0.0
        if impl == "reference":
            self.rnn = self._reference()
        else:
            kwargs = {"nonlinearity": nonlinearity} if name == "rnn" else {}
            self.rnn = cell_cls(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                                dropout=self.dropout, **kwargs)
        self._init(recurrent_init, forget_bias)

    def _reference(self) -> ReferenceRecurrent:
        return ReferenceRecurrent(self.name, self.input_size, self.hidden_size, self.num_layers,
                                  nonlinearity=self.nonlinearity, dropout=self.dropout,
                                  loop=self.reference_loop)

    def reference(self) -> ReferenceRecurrent:
        """The reference path holding this core's current weights (itself when ``impl="reference"``;
        otherwise a copy, on the same device and dtype, that does not share storage)."""
        if isinstance(self.rnn, ReferenceRecurrent):
            return self.rnn
        ref = self._reference().to(device=self.rnn.weight_ih_l0.device, dtype=self.rnn.weight_ih_l0.dtype)
        ref.load_state_dict(self.rnn.state_dict())
        return ref.train(self.training)

    def compile(self, *args, **kwargs) -> None:
        """torch.compile in place (the state dict keeps its keys). On the reference path the loop
        is traced from its eager form: Dynamo cannot look inside a TorchScript function and
        spends minutes trying (measured in benchmarks/README.md)."""
        if isinstance(self.rnn, ReferenceRecurrent):
            self.rnn.loop = "eager"
        super().compile(*args, **kwargs)

    @torch.no_grad()
    def internals(self, x: torch.Tensor) -> Internals:
        """Every step's hidden state, cell state (LSTM) and gates, computed on the reference path
        with the current weights; dropout as in the current train/eval mode."""
        return self.reference()(x, return_internals=True)[1]

    @property
    def gates(self) -> int:
        return {"rnn": 1, "lstm": 4, "gru": 3}[self.name]

    @torch.no_grad()
    def _init(self, recurrent_init: str, forget_bias: float | None) -> None:
        H = self.hidden_size
        for layer in range(self.num_layers):
            w_hh = getattr(self.rnn, f"weight_hh_l{layer}")
            for g in range(self.gates):
                block = w_hh[g * H:(g + 1) * H]
                if recurrent_init == "orthogonal":
                    nn.init.orthogonal_(block)
                elif recurrent_init == "identity":
                    block.copy_(torch.eye(H))
            if recurrent_init == "identity":
                getattr(self.rnn, f"bias_hh_l{layer}").zero_()
                getattr(self.rnn, f"bias_ih_l{layer}").zero_()
            if forget_bias is not None:  # gate order i, f, g, o
                getattr(self.rnn, f"bias_ih_l{layer}")[H:2 * H].fill_(forget_bias)
                getattr(self.rnn, f"bias_hh_l{layer}")[H:2 * H].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, input_size) → (B, T, hidden_size): the last layer's state at every step."""
        if x.device.type == "cpu" and not isinstance(self.rnn, ReferenceRecurrent) \
                and torch.is_autocast_enabled("cpu"):
            # torch's CPU RNN kernels (oneDNN) fail in bfloat16 on CPUs without native bf16
            # ("could not create a primitive descriptor"): the core runs in float32 there and
            # the rest of the model stays in mixed precision.
            with torch.autocast("cpu", enabled=False):
                out, _ = self.rnn(x.float())
            return out
        out, _ = self.rnn(x)
        return out
