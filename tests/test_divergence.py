"""Divergence that stays finite: a loss far above the chance-level loss for several steps in a row
ends the run as failed (diverged), with the figures; a normal run is never flagged."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_reliability import _as_multirun

from stm_lab.errors import ConfigError, DivergenceError
from stm_lab.guards import DivergenceGuard
from stm_lab.run import run_job, train
from stm_lab.tasks.spec import TaskSpec

CHANCE_LOSS = math.log(4)  # TINY: copy with 4 symbols, cross-entropy of a uniform guess
DEFAULT_RATIO = 10         # conf/callbacks/default.yaml


def test_an_exploding_finite_loss_fails_as_diverged_and_the_sweep_goes_on(make_cfg):
    summary = train(make_cfg("optimizer.lr=1e6", subdir="single"))
    assert summary["status"] == "failed", summary.get("metrics")
    reason = summary["reason"]
    assert reason.startswith("diverged: training loss ") and "for 5 steps" in reason
    # The reference is the larger of the chance-level loss, ln(4), and the run's first loss.
    reference = float(reason.split("the reference loss ")[1].split()[0])
    assert f"{DEFAULT_RATIO} × the reference loss" in reason and reference >= round(CHANCE_LOSS, 3)
    assert ("ln(4)" in reason) == (reference == round(CHANCE_LOSS, 3)) or "the run's first loss" in reason
    cfg = make_cfg("optimizer.lr=1e6", "optimized_metric=val/acc_best", subdir="multi")
    _as_multirun()
    assert math.isnan(run_job(cfg))  # a sweeper records the trial failed, and goes on


def test_a_normal_run_stays_clear_of_the_threshold(make_cfg):
    cfg = make_cfg("logger=csv", "trainer.log_every_n_steps=1", "trainer.max_epochs=3")
    summary = train(cfg)
    assert summary["status"] == "completed"
    with open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv") as f:
        losses = [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]
    assert len(losses) == 24
    assert max(losses) < 0.2 * DEFAULT_RATIO * CHANCE_LOSS  # far below: a factor of 5 to spare


def test_thresholds_are_config_keys(make_cfg):
    lenient = train(make_cfg("optimizer.lr=1e6", "callbacks.divergence.patience=1000", subdir="lenient"))
    assert lenient["status"] == "completed"  # 8 steps: never 1000 in a row
    with pytest.raises(ConfigError, match=r"config key 'callbacks.divergence'.*max_loss_ratio"):
        train(make_cfg("callbacks.divergence.max_loss_ratio=0.5", subdir="bad"))
    # Without the node, non-finite losses still stop a run (that guard is always there).
    nan = train(make_cfg("callbacks.divergence=null", "optimizer._target_=torch.optim.SGD",
                         "trainer.gradient_clip_val=null", "optimizer.lr=1e38", subdir="nan"))
    assert nan["status"] == "failed" and nan["reason"].startswith("diverged: training loss is")


class Fake:
    """Just enough of a trainer and a module for the guard."""

    def __init__(self, spec: TaskSpec | None) -> None:
        self.trainer = SimpleNamespace(current_epoch=0, global_step=0)
        self.module = SimpleNamespace(spec=spec, parameters=lambda: [torch.zeros(2)])

    def step(self, guard: DivergenceGuard, loss: float) -> None:
        guard.on_train_batch_end(self.trainer, self.module, {"loss": torch.tensor(loss)}, None, 0)
        self.trainer.global_step += 1


def spec(kind: str) -> TaskSpec:
    if kind == "classes":
        return TaskSpec("tokens", 10, "classes", 8, "steps", 5, "per_step", {"acc": 0.125}, "")
    return TaskSpec("real", 2, "regression", 1, "one", 5, "sequence", {"mse": 1 / 6}, "")


def test_guard_counts_steps_in_a_row_above_the_reference():
    guard, fake = DivergenceGuard(max_loss_ratio=10, patience=3, reference="auto"), Fake(spec("classes"))
    guard.on_train_start(fake.trainer, fake.module)
    limit = 10 * math.log(8)
    for loss in [2.0, limit * 2, limit * 2, 1.0, limit * 2, limit * 2]:  # a good step resets the count
        fake.step(guard, loss)
    with pytest.raises(DivergenceError, match=r"stayed above 20.79 for 3 steps .*ln\(8\).*step 6"):
        fake.step(guard, limit * 2)


def test_regression_reference_is_the_larger_of_chance_mse_and_the_first_loss():
    guard, fake = DivergenceGuard(max_loss_ratio=10, patience=1, reference="auto"), Fake(spec("regression"))
    guard.on_train_start(fake.trainer, fake.module)
    fake.step(guard, 1.2)  # the first loss: larger than the chance MSE 1/6
    fake.step(guard, 11.9)
    with pytest.raises(DivergenceError, match=r"above 12 .*the run's first loss"):
        fake.step(guard, 12.5)
    fixed = DivergenceGuard(max_loss_ratio=2, patience=1, reference=0.5)
    fixed.on_train_start(fake.trainer, fake.module)
    with pytest.raises(DivergenceError, match=r"above 1 .*2 × the reference loss 0.5 \(set in the config\)"):
        fake.step(fixed, 1.5)
