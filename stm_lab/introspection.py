"""Looking inside the cell: gate statistics from the reference path, and the callback that logs them.

Training runs on the fast path; every N epochs :class:`GateStatistics` copies the trained
weights into the reference path, runs it on a validation batch and logs, to every logger:

- ``val/gate_forget_mean`` (LSTM) / ``val/gate_update_mean`` (GRU): mean activation of the gate
  that decides how much of the old state is kept (1 = keep everything), over all steps, and
  ``..._delay`` over the task's delay (``Task.delay_mask``; for copy, the blanks between the
  list and the delimiter);
- ``val/gate_saturated_frac``: fraction of sigmoid-gate activations (LSTM i, f, o; GRU r, z)
  within ``saturation`` of 0 or 1, where their gradient vanishes;
- ``val/h_norm``, ``val/h_norm_delay``: mean L2 norm of the hidden state over all steps / during
  the delay (``val/c_norm_delay`` for an LSTM's cell state); for a vanilla RNN also
  ``val/h_saturated_frac`` (tanh units within ``saturation`` of ±1).

Unsuffixed names describe the last layer; a stack also logs every layer as ``..._l{k}``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from stm_lab.cells import CELLS, Internals
from stm_lab.errors import ConfigError


def _masked_mean(values: Tensor, where: Tensor) -> Tensor:
    """Mean of (B, T, ...) values over the (B, T) steps where ``where`` holds."""
    return values[where].mean()


@torch.no_grad()
def gate_statistics(internals: Internals, delay: Tensor | None = None,
                    saturation: float = 0.05) -> dict[str, float]:
    """Scalar statistics of one batch's internals (see the module docstring for the names).

    ``delay`` is a (B, T) bool mask of the delay steps; the ``_delay`` statistics are left out
    when it is None or empty.
    """
    definition = CELLS.get(internals.name) if internals.name in CELLS else None
    has_delay = delay is not None and bool(delay.any())
    layers = internals.hidden.shape[0]
    stats: dict[str, float] = {}
    for k in range(layers):
        layer: dict[str, Tensor] = {}
        h = internals.hidden[k]  # (B, T, H)
        h_norm = h.norm(dim=-1)  # (B, T)
        layer["h_norm"] = h_norm.mean()
        if has_delay:
            layer["h_norm_delay"] = _masked_mean(h_norm, delay)
            if internals.cell is not None:
                layer["c_norm_delay"] = _masked_mean(internals.cell[k].norm(dim=-1), delay)
        if definition is None or not definition.gates:  # no gates: how saturated are the tanh units?
            layer["h_saturated_frac"] = (h.abs() > 1 - saturation).float().mean()
        else:
            if definition.memory_gate:
                keep = internals.gate(definition.memory_gate)[k]  # (B, T, H)
                key = f"gate_{definition.memory_gate}_mean"
                layer[key] = keep.mean()
                if has_delay:
                    layer[f"{key}_delay"] = _masked_mean(keep, delay)
            gates = torch.stack([internals.gate(g)[k] for g in definition.sigmoid_gates])
            layer["gate_saturated_frac"] = ((gates < saturation) | (gates > 1 - saturation)).float().mean()
        for key, value in layer.items():
            if k == layers - 1:
                stats[key] = float(value)
            if layers > 1:
                stats[f"{key}_l{k}"] = float(value)
    return stats


class GateStatistics(pl.Callback):
    """Every ``every_n_epochs`` validation epochs, log :func:`gate_statistics` of the trained weights,
    run on the reference path, on the first ``max_sequences`` sequences of the validation set.

    The training path is untouched: the weights are copied into a reference module (unless the
    core already runs on it), so this costs one reference forward pass per logged epoch.
    """

    def __init__(self, every_n_epochs: int, max_sequences: int, saturation: float, prefix: str) -> None:
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ConfigError("callbacks.gate_stats.every_n_epochs", every_n_epochs, "an integer >= 1")
        if not isinstance(max_sequences, int) or max_sequences < 1:
            raise ConfigError("callbacks.gate_stats.max_sequences", max_sequences, "an integer >= 1")
        if not 0.0 < saturation < 0.5:
            raise ConfigError("callbacks.gate_stats.saturation", saturation, "a number in (0, 0.5)")
        self.every_n_epochs, self.max_sequences = every_n_epochs, max_sequences
        self.saturation, self.prefix = saturation, prefix
        self.last: dict[str, float] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Before the first training step: a cell without gates to read (a researcher's own cell,
        # the attention or minGRU comparators) is a config error, not a failure one epoch in.
        self._check_cell(pl_module)

    @staticmethod
    def _check_cell(pl_module: pl.LightningModule) -> None:
        if not hasattr(pl_module.core, "internals"):
            raise ConfigError("callbacks.gate_stats", "GateStatistics",
                              hint=f"the cell {type(pl_module.core).__name__} has no internals() to read gates from")

    def _batch(self, trainer: pl.Trainer) -> dict[str, Tensor] | None:
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, list | tuple) else loaders
        if loader is None:
            return None
        rows: dict[str, list[Tensor]] = {}
        n = 0
        for batch in loader:  # enough batches for max_sequences
            for key, value in batch.items():
                rows.setdefault(key, []).append(value)
            n += len(batch["x"])
            if n >= self.max_sequences:
                break
        return {k: torch.cat(v)[: self.max_sequences] for k, v in rows.items()} if rows else None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        batch = self._batch(trainer)
        if batch is None:
            return
        x = batch["x"].to(pl_module.device)
        mask = batch["mask"].to(pl_module.device)
        task: Any = getattr(trainer.datamodule, "task", None)
        delay = task.delay_mask(x, mask) if task is not None else None
        self._check_cell(pl_module)
        with torch.no_grad():
            internals = pl_module.core.internals(pl_module.encoder(x).float())
        self.last = gate_statistics(internals, delay, self.saturation)
        pl_module.log_dict({self.prefix + k: v for k, v in self.last.items()}, on_epoch=True,
                           batch_size=len(x))


__all__ = ["GateStatistics", "gate_statistics"]
