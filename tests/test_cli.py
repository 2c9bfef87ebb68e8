"""The command line, as a user runs it (subprocesses: each costs a few seconds, so few of them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF, TINY

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_DATASETS_OFFLINE": "1",
       "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stm_lab", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
# Hub datasets need a network; the text experiment runs in process on local files (test_text.py).
OFFLINE = [name for name in EXPERIMENTS if name != "text"]


def test_every_experiment_runs_in_one_multirun(tmp_path):
    """One process, one job per experiment (fast_dev_run): each writes a completed summary."""
    sweep = tmp_path / "sweep"
    r = run_cli("-m", f"+experiment={','.join(OFFLINE)}", "debug=fdr", "logger=none",
                "callbacks.progress_bar=null", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = {}
    for path in sweep.glob("*/summary.json"):
        s = json.loads(path.read_text())
        name = next(o.split("=", 1)[1] for o in s["overrides"] if o.startswith("+experiment="))
        assert s["status"] == "completed", name
        assert f"test/{s['headline']}" in s["metrics"], name
        assert s["headline"] in s["chance"] and s["headline"] in s["floor"], name  # beside its references
        seen[name] = s
    assert sorted(seen) == OFFLINE
    assert "test/mse" in seen["adding"]["metrics"] and seen["adding"]["chance"]["mse"] == 1 / 6
    assert "test/mc" in seen["mc_probe"]["metrics"] and len(seen["mc_probe"]["curves"]["test/r2_lag"]) == 40
    assert {"test/recall_pos", "val/recall_best"} <= set(seen["nback"]["metrics"])
    assert len(seen["serial_recall"]["curves"]["test/acc_pos"]) == 7


def test_multirun_2x2_separate_runs_and_wandb(tmp_path):
    sweep = tmp_path / "sweep"
    args = [a for a in TINY if not a.startswith("logger=")]
    r = run_cli("-m", "cell=rnn,gru", "seed=0,1", "logger=wandb", f"hydra.sweep.dir={sweep}", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summaries = sorted(sweep.glob("*/summary.json"))
    assert len(summaries) == 4
    seen = set()
    for path in summaries:
        s = json.loads(path.read_text())
        assert s["status"] == "completed"
        seen.add((s["cell"], s["seed"]))
        assert s["wandb"]["group"] == "sweep" and s["wandb"]["mode"] == "offline"
        files = list(path.parent.glob("wandb/offline-run-*/run-*.wandb"))
        assert len(files) == 1, files  # exactly one W&B run per job: no bleeding between jobs
        blob = files[0].read_bytes()
        assert s["wandb"]["id"].encode() in blob
        # test/acc_pos_curve: the serial-position table and its line plot; chance/floor: the references
        for key in (b"test/acc", b"val/acc_best", b"train/loss_step", b"test/acc_pos_curve", b"chance/acc",
                    b"floor/acc"):
            assert key in blob
    assert seen == {("rnn", 0), ("rnn", 1), ("gru", 0), ("gru", 1)}
    ids = {json.loads(p.read_text())["wandb"]["id"] for p in summaries}
    assert len(ids) == 4


@pytest.mark.parametrize("args,expected", [
    (["data.delay=0"], "config key 'data.delay' has a bad value 0; allowed: an integer >= 1"),
    (["cell=transformer"], "Available options in 'cell'"),
])
def test_config_errors_are_clear_and_early(args, expected, tmp_path):
    r = run_cli(*args, "logger=none", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert r.returncode != 0
    assert expected in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained
