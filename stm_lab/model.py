"""The one LightningModule: encode inputs → recurrent core → head, scored on the task's mask."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MinMetric

from stm_lab.metrics import (
    SequenceAccuracy,
    SerialPositionAccuracy,
    TrainingScores,
    scored_positions,
    split_metrics,
)
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


class MemoryModel(pl.LightningModule):
    """Trains any (task, cell, head) combination; loss and metrics see only the scored steps."""

    def __init__(self, spec: TaskSpec, encoder: InputEncoder, core: nn.Module, head: nn.Module,
                 optimizer: OptimizerFactory, scheduler: SchedulerFactory | None = None,
                 config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.spec, self.encoder, self.core, self.head = spec, encoder, core, head
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.config = config  # stored in every checkpoint, so one file reproduces the run
        self.metrics = nn.ModuleDict({f"{s}_metrics": split_metrics(spec, s) for s in ("val", "test")})
        self.train_scores = TrainingScores(spec)  # lean: updated on every training step
        self._train_loss_sum, self._train_count, self._train_last_loss = torch.zeros(()), 0, None
        if spec.is_classification:
            self.best_name, self.val_best = "val/acc_best", MaxMetric()
            self.monitor_name = "val/acc"
            if spec.positions:
                self.test_positions = SerialPositionAccuracy(spec.positions)
                self.test_sequence_acc = SequenceAccuracy()
        else:
            self.best_name, self.val_best = "val/mse_best", MinMetric()
            self.monitor_name = "val/mse"

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predictions at the scored steps: (N, output_size), aligned with ``y[mask]``."""
        return self.head(self.core(self.encoder(x)), mask)

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.spec.is_classification:
            return F.cross_entropy(out, target)
        return F.mse_loss(out, target)

    def _step(self, batch: dict[str, torch.Tensor], split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mask = batch["mask"]
        out = self(batch["x"], mask)
        target = batch["y"][mask]
        loss = self.loss(out, target)
        n = batch["x"].shape[0]
        if split == "train":
            self.train_scores.update(out.detach(), target)
            self._log_train_step(loss.detach(), n)
        else:
            metrics = self.metrics[f"{split}_metrics"]
            metrics.update(out, target)
            self.log(f"{split}/loss", loss, on_epoch=True, prog_bar=True, batch_size=n)
            self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        return loss, out, target

    # Training-step logging. Each ``self.log`` call costs Lightning more host time than a small
    # model's step, so the training loop logs as a raw loop would: the epoch's loss and metrics
    # accumulate on the device (no host sync) and are logged once per epoch; the step loss on
    # the steps the loggers write (``trainer.log_every_n_steps``). The names are unchanged:
    # train/loss_step, train/loss_epoch, train/loss (the last step's), train/acc, train/recall.
    def _log_train_step(self, loss: torch.Tensor, n: int) -> None:
        self._train_loss_sum = self._train_loss_sum + loss * n
        self._train_count += n
        self._train_last_loss = loss
        # A progress bar shows the step loss at every step, as before; without one (sweeps,
        # benchmarks) it is handed to Lightning only on the steps the loggers write.
        connector = getattr(self._trainer, "_logger_connector", None)
        if connector is None or connector.should_update_logs \
                or self._trainer.progress_bar_callback is not None:
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

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        _, out, target = self._step(batch, "test")
        if hasattr(self, "test_positions"):
            row, position = scored_positions(batch["mask"])
            self.test_positions.update(out, target, position)
            self.test_sequence_acc.update(out, target, row, batch["mask"].shape[0])

    def on_train_start(self) -> None:
        self.val_best.reset()  # forget the sanity-check epoch

    def on_validation_epoch_end(self) -> None:
        current = self.metrics["val_metrics"][self.monitor_name.split("/")[1]].compute()
        self.val_best(current)
        self.log(self.best_name, self.val_best.compute(), prog_bar=True)
        self.log("val/chance", self.spec.chance)

    def on_test_epoch_end(self) -> None:
        self.log("test/chance", self.spec.chance)
        if hasattr(self, "test_positions"):
            for i, acc in enumerate(self.test_positions.compute()):
                self.log(f"test/acc_pos_{i + 1}", acc)
            self.log("test/acc_sequence", self.test_sequence_acc.compute())
            self.test_positions.reset()
            self.test_sequence_acc.reset()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer),
                                 "monitor": "val/loss", "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["stm_lab_config"] = self.config
