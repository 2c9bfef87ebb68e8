"""Reliability: config errors before training, divergence, crashes, interrupts, resume, skipping.

Every row of the README's "Troubleshooting" table is one of these tests.
"""

from __future__ import annotations

import json
import math
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import torch
from conftest import TINY, compose_config
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from omegaconf import open_dict, read_write
from test_cli import ENV

import stm_lab.summary as summary_module
from stm_lab.build import build_task
from stm_lab.errors import ConfigError
from stm_lab.run import run_job, train
from stm_lab.summary import read_summary, write_json_atomic
from stm_lab.tasks import TASKS, Task, TaskSpec
from stm_lab.tasks.spec import task_field

TESTS = Path(__file__).parent
# The checkout under test first (not whichever copy of stm_lab is installed), then the tests'
# own helpers (reliability_callbacks).
CLI_ENV = {**ENV, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
# Steps per epoch with TINY: 256 training sequences in batches of 32.
STEPS_PER_EPOCH = 8
# Plain SGD at a rate near float32's limit, unclipped: the loss overflows within a few steps.
SGD_UNCLIPPED = ["optimizer._target_=torch.optim.SGD", "trainer.gradient_clip_val=null"]
DIVERGING = [*SGD_UNCLIPPED, "optimizer.lr=1e38"]


def pause_at(step: int, marker: Path) -> list[str]:
    return ["+callbacks.pause._target_=reliability_callbacks.PauseAt", f"+callbacks.pause.step={step}",
            f"+callbacks.pause.marker={marker}"]


def wait_for(path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


# ------------------------------------------------------------------ config errors


@pytest.mark.parametrize("override,message", [
    ("data.delay=abc", "config key 'data.delay' has a bad value 'abc'; allowed: an integer"),
    ("cell.hidden_size=2.5", "config key 'cell.hidden_size' has a bad value 2.5; allowed: an integer"),
    ("+data.dealy=3", "'data.dealy' has a bad value 3; allowed: batch_size, delay, list_length"),
    ("++cell.nonlinearity=relu", "config key 'cell.nonlinearity' has a bad value 'relu'; allowed: dropout, forget_bias"),
    ("optimizer._target_=torch.optim.Adamm", "allowed: torch.optim.ASGD"),
    ("optimizer.lr=-1", "Invalid learning rate"),
    ("+optimizer.momentun=0.9", "'optimizer.momentun' has a bad value 0.9; allowed: amsgrad, betas"),
    ("trainer.precision=33", "'trainer.precision' has a bad value 33; allowed: 64, 32, 16"),
    ("trainer.accelerator=tpuu", "config key 'trainer'"),
    ("+sed=3", "config key 'sed' has a bad value 3; allowed: callbacks, cell, ckpt_path"),
    ("compile=maybe", "config key 'compile' has a bad value 'maybe'; allowed: true or false"),
    ("seed=-1", "config key 'seed' has a bad value -1; allowed: an integer in [0, 4294967295]"),
    ("embedding_dim=0", "'embedding_dim' has a bad value 0; allowed: null or an integer >= 1"),
    ("ckpt_path=missing.ckpt", "'ckpt_path' has a bad value 'missing.ckpt'; allowed: an existing checkpoint"),
])
def test_config_error_names_key_value_and_allowed(make_cfg, override, message):
    cfg = make_cfg(override)
    with pytest.raises(ConfigError) as info:
        train(cfg)
    assert message in str(info.value)
    out = Path(cfg.paths.output_dir)
    assert not (out / "checkpoints").exists()  # nothing trained
    summary = read_summary(out)
    assert summary["status"] == "failed" and summary["reason"].startswith("config error: ")


def test_a_new_task_is_validated_from_its_annotations():
    """No validation code per task: a new dataclass's annotations are the schema."""

    @dataclass(frozen=True)
    class Toy(Task):
        mode: Literal["recall", "recognise"] = task_field("recall or recognise")
        rate: float = task_field("a rate")

        @property
        def spec(self) -> TaskSpec:
            raise NotImplementedError

    TASKS.register("toy_for_validation")(Toy)
    try:
        base = {"task": "toy_for_validation", "n_train": 8, "n_val": 8, "n_test": 8, "batch_size": 4,
                "on_device": False, "regime": "fixed", "mode": "recall", "rate": 0.5}
        assert build_task({**base, "mode": "recognise", "rate": 1}).rate == 1  # an int is a fine float
        with pytest.raises(ConfigError, match=r"'data.mode' has a bad value 'forget'; allowed: recall, recognise"):
            build_task({**base, "mode": "forget"})
        with pytest.raises(ConfigError, match=r"'data.rate' has a bad value 'high'; allowed: a number"):
            build_task({**base, "rate": "high"})
        with pytest.raises(ConfigError, match=r"'data.n_val' has a bad value None; allowed: an integer"):
            build_task({k: v for k, v in base.items() if k != "n_val"})
    finally:
        TASKS.unregister("toy_for_validation")


# Override choices: each composes; many are wrong in type or range, some combinations clash.
CHOICES = {
    "data.delay": ["0", "-1", "2", "abc", "2.5", "null"],
    "data.list_length": ["0", "2", "x"],
    "data.num_symbols": ["1", "3", "true"],
    "data.batch_size": ["0", "16", "big"],
    "cell": ["rnn", "gru", "lstm"],
    "cell.hidden_size": ["0", "8", "-3", "4.5", "abc"],
    "cell.num_layers": ["0", "1", "2"],
    "cell.dropout": ["0.0", "0.5", "1.5", "null"],
    "cell.recurrent_init": ["default", "orthogonal", "identity", "zeros"],
    "compile": ["false", "maybe"],
    "++cell.nonlinearity": ["tanh", "relu", "gelu"],
    "++cell.forget_bias": ["null", "2.0", "x"],
    "+cell.bogus": ["1"],
    "head": ["auto", "per_step", "sequence"],
    "embedding_dim": ["null", "4", "0", "x"],
    "optimizer.lr": ["0.001", "-1", "0", "fast"],
    "optimizer._target_": ["torch.optim.SGD", "torch.optim.RMSprop", "torch.optim.Adamm"],
    "trainer.gradient_clip_val": ["null", "0.5", "x"],
    "trainer.precision": ["32-true", "33"],
    "seed": ["0", "7", "x"],
    "+data.extra": ["1"],
}


@settings(max_examples=10, deadline=None, derandomize=True, database=None,
          phases=(Phase.explicit, Phase.generate),  # no shrinking: each example trains
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(picks=st.lists(st.sampled_from(sorted(CHOICES)), min_size=1, max_size=5, unique=True),
       data=st.data())
def test_random_overrides_train_or_fail_with_config_error(picks, data, tmp_path_factory):
    overrides = [f"{key}={data.draw(st.sampled_from(CHOICES[key]), label=key)}" for key in picks]
    out = tmp_path_factory.mktemp("prop")
    cfg = compose_config([*TINY, "+trainer.fast_dev_run=true", *overrides], out)
    try:
        summary = train(cfg)
    except ConfigError:
        assert read_summary(out)["status"] == "failed"
        return
    assert summary["status"] == "completed", (overrides, summary.get("reason"))


# ------------------------------------------------------------ failures at run time


def test_nan_loss_stops_run_and_keeps_last_good_checkpoint(make_cfg):
    # Unclipped SGD whose learning rate grows 1e20-fold per epoch: two finite epochs, then
    # the loss overflows early in the third. (The loss of the second is finite but ~1e17: the
    # finite-loss check, tests/test_divergence.py, would stop it there; off here, so that this
    # test is about non-finite values.)
    cfg = make_cfg("trainer.max_epochs=4", *SGD_UNCLIPPED, "callbacks.divergence.max_loss_ratio=null",
                   "scheduler={_target_:torch.optim.lr_scheduler.ExponentialLR,_partial_:true,gamma:1e20}")
    summary = train(cfg)
    assert summary["status"] == "failed"
    assert summary["reason"].startswith("diverged: ") and "epoch 2" in summary["reason"]
    out = Path(cfg.paths.output_dir)
    assert read_summary(out)["status"] == "failed"
    assert "DivergenceError" in (out / "traceback.txt").read_text()
    ckpt = torch.load(summary["last_checkpoint"], weights_only=False)
    # The last finished epoch, not overwritten by the diverged state of epoch 2.
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 2 * STEPS_PER_EPOCH
    assert all(torch.isfinite(w).all() for w in ckpt["state_dict"].values())
    assert not list((out / "checkpoints").glob("epoch_002*"))


def test_exception_during_fit_is_recorded_with_traceback(make_cfg):
    cfg = make_cfg("+callbacks.crash._target_=reliability_callbacks.FailAt", "+callbacks.crash.step=3")
    summary = train(cfg)
    assert summary["status"] == "failed"
    assert summary["reason"] == "RuntimeError: simulated crash at step 3"
    trace = Path(summary["traceback"]).read_text()
    assert "Traceback" in trace and "reliability_callbacks.py" in trace


def _as_multirun() -> None:
    hydra_cfg = HydraConfig.get()
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.mode = RunMode.MULTIRUN


def test_failed_job_returns_nan_in_multirun_and_exits_in_single_run(make_cfg):
    cfg = make_cfg(*DIVERGING, "+optimized_metric=val/acc_best", subdir="single")
    with pytest.raises(SystemExit) as info:
        run_job(cfg)
    assert info.value.code == 1
    cfg = make_cfg(*DIVERGING, "+optimized_metric=val/acc_best", subdir="multi")
    _as_multirun()
    assert math.isnan(run_job(cfg))
    assert read_summary(cfg.paths.output_dir)["status"] == "failed"
    cfg = make_cfg("data.delay=abc", "+optimized_metric=val/acc_best", subdir="config")
    _as_multirun()
    assert math.isnan(run_job(cfg))  # a config error fails this job only
    assert "data.delay" in read_summary(cfg.paths.output_dir)["reason"]


def test_sigint_saves_checkpoint_and_same_config_resumes(make_cfg, tmp_path):
    """A real SIGINT to this process mid-epoch; the same config in the same folder resumes."""
    marker = tmp_path / "paused"
    cfg = make_cfg("trainer.max_epochs=2", *pause_at(11, marker))
    sender = threading.Thread(target=lambda: (wait_for(marker), os.kill(os.getpid(), signal.SIGINT)))
    sender.start()
    summary = train(cfg)
    sender.join()
    assert summary["status"] == "interrupted" and summary["reason"] == "received SIGINT"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers given back
    ckpt = torch.load(summary["last_checkpoint"], weights_only=False)
    assert ckpt["global_step"] == 11  # mid-epoch 2, at a batch boundary
    resumed = train(cfg)
    assert resumed["status"] == "completed"
    assert resumed["resumed_from"] == summary["last_checkpoint"]
    final = torch.load(summary["last_checkpoint"], weights_only=False)
    assert final["global_step"] == 2 * STEPS_PER_EPOCH  # no step trained twice or skipped
    assert "test/acc" in resumed["metrics"]


def test_killed_run_resumes_and_completed_run_is_skipped(make_cfg):
    cfg = make_cfg()
    first = train(cfg)
    out = Path(cfg.paths.output_dir)
    # skip_completed: the stored summary comes back and nothing runs (the file is untouched).
    again = train(make_cfg("skip_completed=true"))
    assert again == first == read_summary(out)
    # A job killed outright leaves status "running": the same config resumes from last.ckpt.
    write_json_atomic(out / "summary.json", {**first, "status": "running"})
    resumed = train(make_cfg())
    assert resumed["status"] == "completed"
    assert resumed["resumed_from"] == str(out / "checkpoints" / "last.ckpt")
    assert torch.load(resumed["resumed_from"], weights_only=False)["global_step"] == STEPS_PER_EPOCH
    # A different config in the same folder does not pick up that checkpoint.
    write_json_atomic(out / "summary.json", {**first, "status": "running"})
    assert train(make_cfg("seed=1"))["resumed_from"] is None


# ---------------------------------------------------------------- command line


def run_cli(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stm_lab", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=CLI_ENV, **kw)


def test_sigterm_checkpoints_and_same_command_resumes_with_same_wandb_run(tmp_path):
    """A pre-empted job: SIGTERM from outside, then the very same command resumes it."""
    run_dir, marker = tmp_path / "run", tmp_path / "paused"
    args = [*[a for a in TINY if not a.startswith("logger=")], "logger=wandb", "trainer.max_epochs=2",
            *pause_at(5, marker), f"hydra.run.dir={run_dir}"]
    cmd = [sys.executable, "-m", "stm_lab", *args]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=CLI_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(marker)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "interrupted (received SIGTERM)" in err and "Traceback" not in err
    stopped = read_summary(run_dir)
    assert stopped["status"] == "interrupted"
    assert torch.load(stopped["last_checkpoint"], weights_only=False)["global_step"] == 5

    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    done = read_summary(run_dir)
    assert done["status"] == "completed" and done["resumed_from"] == stopped["last_checkpoint"]
    run_id = (run_dir / "wandb_id").read_text().strip()
    assert stopped["wandb"]["id"] == done["wandb"]["id"] == run_id
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(p.name.endswith(run_id) for p in runs)


def test_multirun_isolates_failures_and_resumes_with_skip_completed(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "optimizer.lr=-1,1e38,0.003", *SGD_UNCLIPPED, f"hydra.sweep.dir={sweep}", *TINY]
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    # Job folders are named by config (stm_lab.identity.job_dirname); find each job by its lr.
    def by_lr() -> dict[float, dict]:
        found = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
        return {s["config"]["optimizer"]["lr"]: s for s in found}

    first = by_lr()
    assert first[-1]["status"] == "failed" and "Invalid learning rate" in first[-1]["reason"]
    assert first[1e38]["status"] == "failed" and first[1e38]["reason"].startswith("diverged")
    assert first[0.003]["status"] == "completed"
    assert "Traceback" not in r.stderr

    r = run_cli(*args, "skip_completed=true", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    second = by_lr()
    assert second[0.003] == first[0.003]  # skipped: untouched
    assert "already completed; skipped" in r.stderr
    for lr in (-1, 1e38):  # the failed jobs ran again
        assert second[lr]["started"] != first[lr]["started"]


def test_records_are_written_whole_and_readable_by_others(tmp_path, monkeypatch):
    """summary.json appears whole (no temporary file left) with the mode a plain open gives
    (0644 under umask 022), not mkstemp's owner-only 0600: colleagues read each other's runs."""
    monkeypatch.setattr(summary_module, "_UMASK", 0o022)
    write_json_atomic(tmp_path / "summary.json", {"status": "completed"})
    assert read_summary(tmp_path) == {"status": "completed"}
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
