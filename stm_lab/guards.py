"""Callbacks every run carries: stop on divergence, checkpoint on a stop signal.

``DivergenceGuard`` checks the loss and the weights after every optimiser step and
stops the run before the next checkpoint could store a non-finite state, so the
last checkpoint on disk is the last good one. It also stops a run whose loss stays
finite but far above the chance-level loss for several steps in a row (thresholds in
conf/callbacks/default.yaml, ``callbacks.divergence``). ``StopOnSignal`` turns SIGINT and
SIGTERM (Ctrl-C, a cluster pre-empting the job) into a clean stop at the next batch
boundary, with a ``last.ckpt`` the same command resumes from.
"""

from __future__ import annotations

import math
import signal
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from stm_lab.compat import request_stop
from stm_lab.errors import DivergenceError, Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DivergenceGuard(Callback):
    """Raise :class:`DivergenceError` as soon as the training loss or any weight is NaN or Inf, or
    when the loss has stayed above ``max_loss_ratio`` × a reference loss for ``patience``
    optimiser steps in a row (``max_loss_ratio=None``: the non-finite checks only).

    ``reference="auto"`` is the larger of the chance-level loss — ln(C), the cross-entropy of a
    uniform guess over the task's C classes, or the task's chance-level MSE for regression —
    and the run's first loss (a network can start above chance; it is not diverging for that).
    A number sets the reference loss directly.
    """

    def __init__(self, max_loss_ratio: float | None, patience: int, reference: float | Literal["auto"]) -> None:
        if max_loss_ratio is not None and not max_loss_ratio > 1:
            raise ValueError(f"max_loss_ratio must be a number > 1, or null (got {max_loss_ratio})")
        if patience < 1:
            raise ValueError(f"patience must be an integer >= 1 (got {patience})")
        if reference != "auto" and not (isinstance(reference, int | float) and reference > 0):
            raise ValueError(f"reference must be auto or a loss > 0 (got {reference!r})")
        self.max_loss_ratio, self.patience, self.reference = max_loss_ratio, patience, reference
        self._limit: float | None = None
        self._why = ""
        self._streak = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._limit, self._streak = None, 0

    def _set_limit(self, pl_module: Any, first_loss: float) -> None:
        """The loss above which a step counts as far above the reference (once, at the first step)."""
        assert self.max_loss_ratio is not None
        if self.reference != "auto":
            ref, why = float(self.reference), "set in the config"
        else:
            spec = getattr(pl_module, "spec", None)
            chance, why = None, ""
            if spec is not None and spec.is_classification and spec.output_size > 1:
                chance = math.log(spec.output_size)
                why = f"ln({spec.output_size}), the cross-entropy of a uniform guess over {spec.output_size} classes"
            elif spec is not None and "mse" in getattr(spec, "chance", {}):
                chance = float(spec.chance["mse"])
                why = "the task's chance-level MSE"
            if chance is None or first_loss > chance:
                ref, why = first_loss, "the run's first loss"
            else:
                ref = chance
        self._ref, self._why = ref, why
        self._limit = self.max_loss_ratio * ref

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        # A frozen network with a closed-form readout (head=ridge) returns no loss at all.
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        has_loss = isinstance(loss, torch.Tensor)
        # A step can leave NaN weights behind a finite loss; the next checkpoint must not save
        # them. One device-to-host sync per step for all the checks.
        weights_ok = torch.stack([torch.isfinite(p.detach()).all() for p in pl_module.parameters()]).all()
        loss_ok = torch.isfinite(loss.detach()).all() if has_loss else weights_ok
        watch = has_loss and self.max_loss_ratio is not None
        if watch and self._limit is None:
            self._set_limit(pl_module, float(loss.detach()))
        if watch:
            over = loss.detach().float().mean() > self._limit
            checks = torch.stack([weights_ok, loss_ok, over.to(weights_ok.device)]).tolist()
        else:
            checks = torch.stack([weights_ok, loss_ok.to(weights_ok.device)]).tolist() + [False]
        where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
        if not checks[1]:
            raise DivergenceError(f"diverged: training loss is {float(loss)} at {where}")
        if not checks[0]:
            raise DivergenceError(f"diverged: weights became non-finite at {where}")
        self._streak = self._streak + 1 if checks[2] else 0
        if self._streak >= self.patience:
            raise DivergenceError(
                f"diverged: training loss {float(loss):.4g} has stayed above {self._limit:.4g} for "
                f"{self.patience} steps in a row ({self.max_loss_ratio:g} × the reference loss "
                f"{self._ref:.4g} ({self._why})), at {where}")


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
