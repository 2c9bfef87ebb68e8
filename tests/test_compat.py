"""Each private-API touch in stm_lab/compat.py, against the installed library: these fail the day
Lightning or Optuna moves what they rely on (then compat.py is the one place to change)."""

from __future__ import annotations

import lightning.pytorch as pl
import optuna
import pytest

from stm_lab import compat


@pytest.fixture
def trainer() -> pl.Trainer:
    return pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", log_every_n_steps=5)


def test_logger_connector_says_when_loggers_write(trainer):
    from lightning.pytorch.trainer.states import RunningStage, TrainerFn

    trainer.state.fn, trainer.state.stage = TrainerFn.FITTING, RunningStage.TRAINING  # inside fit
    trainer.fit_loop.epoch_loop._batches_that_stepped = 4  # the 5th step: (4 + 1) % 5 == 0
    assert compat.logger_will_write(trainer) is True
    trainer.fit_loop.epoch_loop._batches_that_stepped = 5
    assert compat.logger_will_write(trainer) is False


def test_request_stop_sets_the_flag_the_fit_loop_checks(trainer):
    assert trainer._signal_connector.received_sigterm is False
    compat.request_stop(trainer)
    assert trainer._signal_connector.received_sigterm is True


def test_optuna_trial_reattaches_to_a_running_trial():
    study = optuna.create_study(direction="maximize")
    asked = study.ask()
    frozen = study.get_trials(deepcopy=False)[0]
    live = compat.optuna_trial(study, frozen)
    live.report(0.5, step=0)
    assert study.get_trials(deepcopy=False)[0].intermediate_values == {0: 0.5}
    assert live.number == asked.number
