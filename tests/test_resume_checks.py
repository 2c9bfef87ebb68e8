"""Resume is checked before it is trusted: torn checkpoints, foreign checkpoints, corrupt files,
and a resumed run that has nothing left to train still reports what it measured."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stm_lab.errors import ConfigError
from stm_lab.run import run_job, train
from stm_lab.summary import read_summary, write_json_atomic


def as_killed(out: Path) -> None:
    """The folder as a SIGKILL leaves it: summary.json still says running."""
    write_json_atomic(out / "summary.json", {**read_summary(out), "status": "running"})


def test_torn_last_checkpoint_falls_back_to_the_newest_good_one(make_cfg, capsys):
    cfg = make_cfg("trainer.max_epochs=2")
    first = train(cfg)
    out = Path(cfg.paths.output_dir)
    last = out / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # killed while writing it
    as_killed(out)
    resumed = train(make_cfg("trainer.max_epochs=2"))
    err = capsys.readouterr().err
    assert f"{last} is not a PyTorch checkpoint, or a torn one" in err and "last.ckpt.broken" in err
    assert resumed["status"] == "completed"
    assert resumed["resumed_from"] == first["best_checkpoint"]  # the newest readable one
    assert (out / "checkpoints" / "last.ckpt.broken").exists()  # kept, never used again
    assert "val/acc_best" in resumed["metrics"] and "test/acc" in resumed["metrics"]


def test_corrupt_ckpt_path_is_a_one_line_config_error(make_cfg, tmp_path):
    bad = tmp_path / "weights.ckpt"
    bad.write_bytes(b"\x80\x04not a checkpoint at all" * 8)
    with pytest.raises(ConfigError) as info:
        train(make_cfg(f"ckpt_path={bad}"))
    message = str(info.value)
    assert message.startswith(f"config key 'ckpt_path' has a bad value '{bad}'") and "\n" not in message
    assert "weights_only" not in message and "not a PyTorch checkpoint" in message


def test_checkpoint_of_another_model_is_a_config_error_naming_ckpt_path(make_cfg):
    done = train(make_cfg(subdir="small"))
    with pytest.raises(ConfigError) as info:
        train(make_cfg("cell.hidden_size=32", f"ckpt_path={done['best_checkpoint']}", subdir="wide"))
    message = str(info.value)
    assert "config key 'ckpt_path'" in message and "does not fit this run" in message
    assert "cell.hidden_size" in message and "\n" not in message
    with pytest.raises(ConfigError, match=r"optimizer._target_ is 'torch.optim.Adam' there, 'torch.optim.SGD' here"):
        train(make_cfg("optimizer._target_=torch.optim.SGD", f"ckpt_path={done['best_checkpoint']}", subdir="sgd"))


def test_resumed_run_with_nothing_left_to_train_reports_its_validation(make_cfg):
    cfg = make_cfg("optimized_metric=val/acc_best")
    first = train(cfg)
    as_killed(Path(cfg.paths.output_dir))  # killed after its last checkpoint, before its summary
    value = run_job(make_cfg("optimized_metric=val/acc_best"))  # what a sweeper receives
    resumed = read_summary(cfg.paths.output_dir)
    assert resumed["status"] == "completed" and resumed["resumed_from"].endswith("last.ckpt")
    assert resumed["metrics"]["val/acc_best"] == pytest.approx(first["metrics"]["val/acc_best"])
    assert value == pytest.approx(first["metrics"]["val/acc_best"])
    assert resumed["metrics"]["test/acc"] == pytest.approx(first["metrics"]["test/acc"])


def test_best_score_before_an_interruption_counts(make_cfg):
    """Resumed mid-run: val/acc_best is the best over every epoch, not only those after the resume."""
    crash = ["+callbacks.crash._target_=reliability_callbacks.FailAt", "+callbacks.crash.step=10"]
    cfg = make_cfg("trainer.max_epochs=2", *crash)
    assert train(cfg)["status"] == "failed"  # in epoch 1; last.ckpt holds epoch 0
    last = Path(cfg.paths.checkpoint_dir) / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    for state in ckpt["callbacks"].values():
        if state.get("monitor") == "val/acc":  # an excellent epoch 0
            state["best_k_models"] = {k: torch.tensor(0.99) for k in state["best_k_models"]}
            state["best_model_score"] = state["kth_value"] = torch.tensor(0.99)
    torch.save(ckpt, last)
    resumed = train(make_cfg("trainer.max_epochs=2", "ckpt_path=last"))
    assert resumed["status"] == "completed" and resumed["metrics"]["val/acc_best"] == pytest.approx(0.99)
