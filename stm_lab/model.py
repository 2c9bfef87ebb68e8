"""The one LightningModule: encode inputs → recurrent core → head, scored on the task's mask.

It special-cases no task, cell or head: the head turns the core's states into a
:class:`~stm_lab.metrics.Scored` and owns the loss; the task's spec names the metrics
(:mod:`stm_lab.metrics.definitions`) and the headline that model selection follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MinMetric

from stm_lab.cells import run_core
from stm_lab.compat import logger_will_write
from stm_lab.heads import Head
from stm_lab.metrics import METRICS, MetricDef, Scored, ScoreSet, TrainingScores
from stm_lab.tasks.spec import TaskSpec

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class InputEncoder(nn.Module):
    """Tokens → one-hot (``embedding_dim=None``, as in the copy-task papers) or a learned embedding;
    real-valued channels pass through."""

    def __init__(self, spec: TaskSpec, embedding_dim: int | None = None) -> None:
        super().__init__()
        self.tokens = spec.input_kind == "tokens"
        self.vocab = spec.input_size
        self.embed = nn.Embedding(spec.input_size, embedding_dim) if self.tokens and embedding_dim else None
        self.output_size = embedding_dim if self.embed is not None else spec.input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.tokens:
            return x
        if self.embed is not None:
            return self.embed(x)
        return F.one_hot(x, self.vocab).float()


@dataclass(frozen=True)
class Selection:
    """Model selection: the task's headline metric on the validation split, with its direction.
    The best checkpoint, ``val/<headline>_best``, pruning and the default Optuna objective all
    follow it (``monitor: auto`` in a callback's config means this monitor)."""

    metric: MetricDef

    @classmethod
    def of(cls, spec: TaskSpec) -> Selection:
        return cls(METRICS.get(spec.headline))

    @property
    def monitor(self) -> str:
        return f"val/{self.metric.name}"

    @property
    def best(self) -> str:
        return f"{self.monitor}_best"

    @property
    def mode(self) -> Literal["max", "min"]:
        return self.metric.mode


class MemoryModel(pl.LightningModule):
    """Trains any (task, cell, head) combination; loss and metrics see only the scored steps."""

    def __init__(self, spec: TaskSpec, encoder: InputEncoder, core: nn.Module, head: Head,
                 optimizer: OptimizerFactory, scheduler: SchedulerFactory | None = None,
                 config: dict[str, Any] | None = None, artifacts: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.spec, self.encoder, self.core, self.head = spec, encoder, core, head
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.config = config  # stored in every checkpoint, so one file reproduces the run
        self.artifacts = artifacts or {}  # what the task learned from its data (e.g. a vocabulary)
        self.scores = nn.ModuleDict({split: ScoreSet(spec, split) for split in ("val", "test")})
        self.train_scores = TrainingScores(spec.is_classification, spec.output_size)  # lean: every step
        self._train_loss_sum, self._train_count, self._train_last_loss = torch.zeros(()), 0, None
        self.selection = Selection.of(spec)
        self.val_best = MaxMetric() if self.selection.mode == "max" else MinMetric()
        self.curves: dict[str, list[float]] = {}  # the last test's curves, e.g. test/acc_pos
        if head.freezes_core:  # a probe: only the head is fitted
            self.encoder.requires_grad_(False)
            self.core.requires_grad_(False)

    def forward(self, batch: dict[str, torch.Tensor]) -> Scored:
        """Predictions and targets at the batch's scored steps."""
        lengths = batch.get("length") if self.head.needs_final_state else None
        return self.head(run_core(self.core, self.encoder(batch["x"]), lengths), batch)

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    # Training-step logging. Each ``self.log`` call costs Lightning more host time than a small
    # model's step, so the training loop logs as a raw loop would: the epoch's loss and metrics
    # accumulate on the device (no host sync) and are logged once per epoch; the step loss on
    # the steps the loggers write (``trainer.log_every_n_steps``). The names:
    # train/loss_step, train/loss_epoch, train/loss (the last step's), train/acc, train/recall.
    def _log_train_step(self, loss: torch.Tensor, n: int) -> None:
        self._train_loss_sum = self._train_loss_sum + loss * n
        self._train_count += n
        self._train_last_loss = loss
        # A progress bar shows the step loss at every step; without one (sweeps, benchmarks)
        # it is handed to Lightning only on the steps the loggers write.
        if self._trainer is None or self._trainer.progress_bar_callback is not None \
                or logger_will_write(self._trainer):
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)

    def on_train_epoch_start(self) -> None:
        self.train_scores.reset()
        self._train_loss_sum, self._train_count, self._train_last_loss = torch.zeros((), device=self.device), 0, None

    def on_train_epoch_end(self) -> None:
        if not self._train_count:
            return
        self.log("train/loss_epoch", self._train_loss_sum / self._train_count)
        self.log("train/loss", self._train_last_loss, logger=False)
        self.log_dict({f"train/{k}": v for k, v in self.train_scores.compute().items()})
        self.train_scores.reset()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        if not self.trainable:
            return None  # a closed-form head on a frozen network: nothing is trained by SGD
        scored = self(batch)
        loss = self.head.loss(scored)
        self.train_scores.update(scored.preds.detach(), scored.target)
        self._log_train_step(loss.detach(), batch["x"].shape[0])
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor], split: str) -> None:
        scored = self(batch)
        self.scores[split].update(scored)
        self.log(f"{split}/loss", self.head.loss(scored), on_epoch=True, prog_bar=True,
                 batch_size=batch["x"].shape[0])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_start(self) -> None:
        self.head.prepare(self)

    def on_test_start(self) -> None:
        self.head.prepare(self)

    def on_train_start(self) -> None:
        self.val_best.reset()  # forget the sanity-check epoch

    def on_validation_epoch_end(self) -> None:
        scalars, _ = self.scores["val"].compute()
        self.scores["val"].reset()
        self.log_dict(scalars, prog_bar=True)
        self.val_best(scalars[self.selection.monitor])
        self.log(self.selection.best, self.val_best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        scalars, curves = self.scores["test"].compute()
        self.scores["test"].reset()
        self.log_dict(scalars)
        self.curves = {name: [float(v) for v in curve] for name, curve in curves.items()}

    def configure_optimizers(self) -> Any:
        trainable = [p for p in self.parameters() if p.requires_grad]
        if not trainable:  # a closed-form head on a frozen network
            return None
        optimizer = self.optimizer_factory(params=trainable)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer),
                                 "monitor": "val/loss", "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["stm_lab_config"] = self.config
        checkpoint["stm_lab_task"] = self.artifacts
