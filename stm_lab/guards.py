"""Callbacks every run carries: stop on divergence, checkpoint on a stop signal.

``DivergenceGuard`` checks the loss and the weights after every optimiser step and
stops the run before the next checkpoint could store a non-finite state, so the
last checkpoint on disk is the last good one. ``StopOnSignal`` turns SIGINT and
SIGTERM (Ctrl-C, a cluster pre-empting the job) into a clean stop at the next batch
boundary, with a ``last.ckpt`` the same command resumes from.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from stm_lab.compat import request_stop
from stm_lab.errors import DivergenceError, Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DivergenceGuard(Callback):
    """Raise :class:`DivergenceError` as soon as the training loss or any weight is NaN or Inf."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        # A frozen network with a closed-form readout (head=ridge) returns no loss at all.
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        # A step can leave NaN weights behind a finite loss; the next checkpoint must not save
        # them. One device-to-host sync per step for both checks.
        weights_ok = torch.stack([torch.isfinite(p.detach()).all() for p in pl_module.parameters()]).all()
        loss_ok = torch.isfinite(loss.detach()).all() if isinstance(loss, torch.Tensor) else weights_ok
        if bool(weights_ok & loss_ok):
            return
        where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
        if not bool(loss_ok):
            raise DivergenceError(f"diverged: training loss is {float(loss)} at {where}")
        raise DivergenceError(f"diverged: weights became non-finite at {where}")


class StopOnSignal(Callback):
    """SIGINT/SIGTERM: during training, finish the batch, save ``last.ckpt`` and stop; at any other
    moment of the run, raise :class:`~stm_lab.errors.Interrupted` at once.

    Used as a context manager around the whole run (it owns both handlers) and as a callback
    (it learns when training is under way). During training it raises Lightning's own
    SIGTERM flag, so the loop stops at its next batch boundary with consistent progress
    counters (never mid-update, as a raw ``KeyboardInterrupt`` could), and the checkpoint
    it saves resumes exactly there. ``signum`` is the signal received, if any.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)
        self.signum: int | None = None
        self.checkpoint: Path | None = None
        self._trainer: pl.Trainer | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        for s in STOP_SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        if self._trainer is None:
            raise Interrupted(signum)
        if first:
            print(f"stm_lab: received {signal.Signals(signum).name}; stopping after this batch "
                  "and saving a checkpoint", flush=True)
        # Lightning's own stop flag (set by its SIGTERM handler too): checked between batches.
        request_stop(self._trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._trainer = trainer

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._trainer = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self._trainer is not None and isinstance(exception, SIGTERMException):
            self.signum = self.signum or signal.SIGTERM
            self.checkpoint = self.dirpath / "last.ckpt"
            trainer.save_checkpoint(self.checkpoint)
        self._trainer = None
