"""Optuna pruning for runs that the ``stm_lab_optuna`` sweeper launched.

A run reports its intermediate values (one per validation epoch) to its own trial in the
study's storage and stops early when the study's pruner says so. Outside such a search it does
nothing; with the default pruner (``nop``) it still reports, which costs one storage write per
epoch and gives a dashboard (optuna-dashboard) learning curves.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl

from stm_lab.optuna_trial import PRUNED_AT, current_trial

log = logging.getLogger(__name__)


class OptunaPruning(pl.Callback):
    """Report ``monitor`` after each validation epoch; stop the run when the pruner says so.
    (``monitor: auto`` in config: the task's headline metric, as for model selection.)

    The run then ends normally (test, summary.json) and the sweeper records the trial PRUNED.
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.trial: Any | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero:
            self.trial = current_trial()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.trial is None or trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            self.trial.set_user_attr(PRUNED_AT, epoch)
            log.info(f"Optuna trial {self.trial.number}: pruned after epoch {epoch} ({self.monitor}={float(value):.4f})")
            trainer.should_stop = True
