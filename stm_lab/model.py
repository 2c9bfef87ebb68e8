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
    LagR2,
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
        # Model selection tracks the task's headline metric (the one its chance level is for):
        # val/acc for most tasks, val/recall for n-back, val/mse for adding, val/mc for memory capacity.
        self.monitor_name = f"val/{spec.headline}"
        self.best_name = f"{self.monitor_name}_best"
        self.val_best = MinMetric() if spec.lower_is_better else MaxMetric()
        if spec.is_classification and spec.positions:
            self.test_positions = SerialPositionAccuracy(spec.positions)
            self.test_sequence_acc = SequenceAccuracy()
        if "mc" in spec.extra_metrics:
            self.test_r2 = LagR2(spec.output_size)
        # A closed-form readout (head=ridge) sits on a frozen network: nothing is trained by SGD.
        self.closed_form = bool(getattr(head, "closed_form", False))
        if self.closed_form:
            self.encoder.requires_grad_(False)
            self.core.requires_grad_(False)

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

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        if self.closed_form:
            return None  # the readout is solved, not trained; the network is frozen
        return self._step(batch, "train")[0]

    @torch.no_grad()
    def fit_closed_form_head(self) -> None:
        """Solve the ridge readout on the training split's states at the scored steps."""
        def states():
            for batch in self.trainer.datamodule.train_dataloader():
                batch = {k: v.to(self.device) for k, v in batch.items()}
                h = self.core(self.encoder(batch["x"]))
                yield h[batch["mask"]], batch["y"][batch["mask"]]

        self.head.fit(states())

    def on_validation_start(self) -> None:
        if self.closed_form and not self.head.fitted:
            self.fit_closed_form_head()

    def on_test_start(self) -> None:
        if self.closed_form and not self.head.fitted:
            self.fit_closed_form_head()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        _, out, target = self._step(batch, "test")
        if hasattr(self, "test_positions"):
            row, position = scored_positions(batch["mask"])
            self.test_positions.update(out, target, position)
            self.test_sequence_acc.update(out, target, row, batch["mask"].shape[0])
        if hasattr(self, "test_r2"):
            self.test_r2.update(out, target)

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
        if hasattr(self, "test_r2"):  # the memory-capacity curve: r^2 at each delay k
            for k, r2 in enumerate(self.test_r2.compute(), start=1):
                self.log(f"test/r2_lag_{k}", r2)
            self.test_r2.reset()

    def configure_optimizers(self) -> Any:
        trainable = [p for p in self.parameters() if p.requires_grad]
        if not trainable:  # head=ridge on a frozen network
            return None
        optimizer = self.optimizer_factory(params=trainable)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer),
                                 "monitor": "val/loss", "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["stm_lab_config"] = self.config
