"""Sweeps: the Optuna sweeper (resume, failures, results), parallel and cluster launchers, DDP.

The sweeper's logic is tested on a toy objective (tests/toy_objective.py: no training, so a
search of many trials costs about a second); the launchers and one search run the real
``python -m stm_lab`` on the tiny copy task.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import TINY, compose_config
from test_cli import ENV, run_cli

from hydra_plugins.stm_lab_optuna.sweeper import OptunaSweeper
from stm_lab.errors import ConfigError
from stm_lab.run import train

TOY = Path(__file__).with_name("toy_objective.py")
ROOT = Path(__file__).parents[1]


def read_trials(sweep: Path) -> list[dict[str, str]]:
    with open(sweep / "trials.csv") as f:
        return list(csv.DictReader(f))


def run_toy(sweep: Path, log: Path, *args: str, kill_after: int | None = None) -> subprocess.CompletedProcess:
    env = {**ENV, "TOY_LOG": str(log)}
    if kill_after is not None:
        env["TOY_KILL_AFTER"] = str(kill_after)
    cmd = [sys.executable, str(TOY), "-m", "hydra/sweeper=stm_lab_optuna", "hydra/sweeper/sampler=grid",
           "hydra.sweeper.direction=minimize", "hydra.sweeper.study_name=toy", "hydra.sweeper.n_trials=6",
           f"hydra.sweep.dir={sweep}", "x=range(0,6)", *args]
    return subprocess.run(cmd, cwd=sweep.parent, env=env, capture_output=True, text=True, timeout=120)


def test_search_survives_failures_and_a_kill_then_resumes_without_redoing(tmp_path):
    sweep, log = tmp_path / "sweep", tmp_path / "calls.txt"
    # Killed (SIGKILL) when the 4th trial starts: 3 trials finished, 1 left RUNNING in storage.
    r = run_toy(sweep, log, kill_after=3)
    assert r.returncode != 0
    first = log.read_text().split()
    assert len(first) == 3
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    states = [t.state for t in optuna.load_study(study_name="toy", storage=storage).trials]
    assert states.count(optuna.trial.TrialState.RUNNING) == 1 and len(states) == 4

    # The same command resumes: only the 3 missing grid points run, two at a time (joblib).
    r = run_toy(sweep, log, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2")
    assert r.returncode == 0, r.stderr[-3000:]
    calls = log.read_text().split()
    second = calls[3:]
    assert len(second) == 3 and not set(first) & set(second)  # no finished trial was redone
    assert sorted(calls) == [str(x) for x in range(6)]          # and the whole grid was covered

    trials = optuna.load_study(study_name="toy", storage=storage).trials
    assert len(trials) == 7  # 6 grid points + the interrupted one, closed as FAIL
    rows = read_trials(sweep)
    assert [int(r["number"]) for r in rows] == list(range(7))
    by_state: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_state.setdefault(row["state"], []).append(row)
    assert len(by_state["INTERRUPTED"]) == 1
    assert {int(r["params.x"]): float(r["value"]) for r in by_state["COMPLETE"]} == {0: 4.0, 2: 0.0, 5: 9.0}
    fails = {int(r["params.x"]): r["fail_reason"] for r in by_state["FAIL"]}
    assert fails == {1: "JobExited: the run exited with code 2", 3: "RuntimeError: diverged",
                     4: "the objective is nan"}
    # The re-run trial has the interrupted one's parameters.
    assert by_state["INTERRUPTED"][0]["params.x"] in {r["params.x"] for r in rows if r["state"] != "INTERRUPTED"}
    for row in rows:
        if row["state"] != "INTERRUPTED":
            assert Path(row["job_dir"]) == sweep / row["number"]

    best = yaml.safe_load((sweep / "best.yaml").read_text())
    assert best["best_params"] == {"x": 2} and best["best_value"] == 0.0
    assert best["best_overrides"] == ["x=2"]
    assert best["trials"] == {"complete": 3, "pruned": 0, "fail": 3, "interrupted": 1}

    # A finished study re-run does nothing; a longer one is refused for a different space.
    r = run_toy(sweep, log)
    assert r.returncode == 0 and len(log.read_text().split()) == 6
    r = run_toy(sweep, log, "x=range(0,8)")
    assert r.returncode != 0 and "hydra.sweeper.study_name" in r.stderr


def test_sweep_configs_compose(tmp_path):
    cfg = compose_config(["hparams_search=copy_optuna", "hydra/sweeper/sampler=random",
                          "hydra/sweeper/pruner=median"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("stm_lab_optuna.sweeper.OptunaSweeper")
    assert cfg.optimized_metric == "auto" and sweeper.direction == "auto"
    assert sweeper.sampler._target_ == "optuna.samplers.RandomSampler"
    assert sweeper.pruner._target_ == "optuna.pruners.MedianPruner"
    assert set(sweeper.params) == {"cell", "cell.hidden_size", "optimizer.lr", "trainer.gradient_clip_val"}
    assert cfg.hydra.sweep.dir.endswith("searches/copy_optuna")  # fixed: a re-run finds the study

    slurm = compose_config(["launcher=slurm", "hydra.launcher.partition=gpu"]).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher")
    assert (slurm.partition, slurm.gpus_per_node, slurm.array_parallelism) == ("gpu", 1, 32)
    joblib = compose_config(["hydra/launcher=joblib", "hydra.launcher.n_jobs=4"]).hydra.launcher
    assert joblib._target_.endswith("JoblibLauncher") and joblib.n_jobs == 4
    assert compose_config(["trainer=ddp"]).trainer.strategy == "ddp_spawn"


def test_sweeper_plugin_ships_in_the_wheel_and_hydra_finds_it():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'packages = ["stm_lab", "hydra_plugins"]' in text
    # hydra_plugins/ must stay a namespace package, shared with the other installed plugins.
    assert not (ROOT / "hydra_plugins" / "__init__.py").exists()
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    found = {f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Sweeper)}
    assert "hydra_plugins.stm_lab_optuna.sweeper.OptunaSweeper" in found


def test_auto_objective_follows_the_task_headline_and_its_direction():
    from hydra_plugins.stm_lab_optuna._search import resolve_objective

    assert resolve_objective(compose_config([]), "auto", "auto") == ("val/acc_best", "maximize")
    assert resolve_objective(compose_config(["data=adding"]), "auto", "auto") == ("val/mse_best", "minimize")
    assert resolve_objective(compose_config(["data=nback"]), "auto", "auto") == ("val/recall_best", "maximize")
    with pytest.raises(ConfigError, match="hydra.sweeper.direction.*not a declared metric"):
        resolve_objective(compose_config([]), "val/loss", "auto")  # no definition: say the direction


@pytest.mark.parametrize("overrides,key", [
    ([], "optimized_metric"),                                  # nothing to optimise
    (["optimized_metric=val/acc_best", "hydra.sweeper.direction=up"], "hydra.sweeper.direction"),
    (["optimized_metric=val/acc_best", "hydra.sweeper.params={}"], "hydra.sweeper.params"),
])
def test_bad_search_settings_are_refused_before_any_trial(overrides, key, tmp_path):
    cfg = compose_config(["hydra/sweeper=stm_lab_optuna", f"hydra.sweep.dir={tmp_path}/s", *overrides])
    sweeper = OptunaSweeper(**cfg.hydra.sweeper)
    sweeper.config, sweeper.launcher = cfg, object()  # the launcher must never be reached
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        sweeper.sweep([])
    assert not (tmp_path / "s" / "optuna.db").exists()


@pytest.mark.slow
def test_stm_lab_search_runs_4_jobs_in_parallel_with_failing_trials(tmp_path):
    """The real product, a parallel multirun of 4 jobs: hparams_search=copy_optuna, 4 trials run
    two at a time by the joblib launcher, two of them with a learning rate the optimiser
    rejects; the search completes and writes its results."""
    sweep = tmp_path / "search"
    r = run_cli("-m", "hparams_search=copy_optuna", f"hydra.sweep.dir={sweep}", "hydra/sweeper/sampler=grid",
                "cell=choice(rnn,gru)", "optimizer.lr=choice(0.01,-1.0)", "trainer.gradient_clip_val=1.0",
                "hydra.sweeper.n_jobs=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2," in r.stdout + r.stderr
    rows = read_trials(sweep)
    assert len(rows) == 4
    assert {(r["params.cell"], float(r["params.optimizer.lr"])) for r in rows} == {
        ("rnn", 0.01), ("gru", 0.01), ("rnn", -1.0), ("gru", -1.0)}
    for row in rows:
        failed = float(row["params.optimizer.lr"]) < 0
        assert row["state"] == ("FAIL" if failed else "COMPLETE"), row
        if not failed:
            summary = json.loads((Path(row["job_dir"]) / "summary.json").read_text())
            assert summary["metrics"]["val/acc_best"] == pytest.approx(float(row["value"]))
            assert summary["cell"] == row["params.cell"]
    best = yaml.safe_load((sweep / "best.yaml").read_text())
    assert best["optimized_metric"] == "val/acc_best" and best["trials"]["complete"] == 2
    assert best["best_value"] == max(float(r["value"]) for r in rows if r["value"])


def test_submitit_local_launcher_runs_a_2_job_search(tmp_path):
    """submitit's local executor (the SLURM launcher's code path without SLURM): each job runs
    in its own submitit process; the search hands it batches of 2 trials."""
    sweep, log = tmp_path / "sweep", tmp_path / "calls.txt"
    r = run_toy(sweep, log, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=2",
                "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2", "x=choice(0,2)")
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(log.read_text().split()) == ["0", "2"]
    rows = read_trials(sweep)
    assert [(r["state"], float(r["value"])) for r in sorted(rows, key=lambda r: r["params.x"])] == [
        ("COMPLETE", 4.0), ("COMPLETE", 0.0)]
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2  # each job ran under submitit


@pytest.mark.slow
def test_ddp_trainer_trains_on_two_cpu_processes(tmp_path):
    # The shipped trainer=ddp with two CPU processes. ddp_fork is the same strategy with workers
    # forked rather than spawned: spawning re-imports torch per worker, ~90 s on a shared 2-core
    # CPU against ~6 s forked; the DDP code path that the run goes through is the same.
    cfg = compose_config([*TINY, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                          "trainer.strategy=ddp_fork"], tmp_path / "run")
    summary = train(cfg)
    assert summary["status"] == "completed"
    assert summary["config"]["trainer"]["devices"] == 2
    assert 0.0 <= summary["metrics"]["test/acc"] <= 1.0
    assert Path(summary["best_checkpoint"]).is_file()


def test_wandb_sweep_command_builds_and_runs(tmp_path):
    """The command `wandb agent` builds from experiments/wandb_sweep.yaml, with W&B's own
    argument builder and values the server could send, runs (in-process, tiny, offline)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    spec = yaml.safe_load((ROOT / "experiments" / "wandb_sweep.yaml").read_text())
    assert spec["metric"]["name"] == "val/acc_best"
    args = {k: {"value": v["values"][-1] if "values" in v else v["max"]} for k, v in spec["parameters"].items()}
    macros = {**create_sweep_command_args({"args": args}), "env": ["/usr/bin/env"]}
    command = [part for c in spec["command"]
               for part in (macros[c[2:-1]] if c.startswith("${") else [c])]
    assert command[:4] == ["/usr/bin/env", "python", "-m", "stm_lab"]
    overrides = command[4:]
    assert overrides == ["cell=gru", "cell.hidden_size=128", "optimizer.lr=0.03", "trainer.gradient_clip_val=5.0"]
    cfg = compose_config([*TINY, *overrides], tmp_path / "run")  # the sweep's values win over TINY's
    assert (cfg.cell.name, cfg.cell.hidden_size, cfg.optimizer.lr) == ("gru", 128, 0.03)
    summary = train(cfg)
    assert summary["status"] == "completed" and "val/acc_best" in summary["metrics"]


def test_pruning_callback_stops_the_run_and_the_trial_is_recorded_pruned(tmp_path):
    """A run of a search reports val/acc to its trial; a pruner that rejects every value stops
    it after the first epoch, and the sweeper then tells the study PRUNED."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import JobReturn, JobStatus

    from hydra_plugins.stm_lab_optuna._search import tell
    from stm_lab.optuna_trial import default_storage

    sweep = tmp_path / "search"
    sweep.mkdir()
    study = optuna.create_study(study_name="p", storage=default_storage(sweep), direction="maximize")
    study.ask()  # trial 0, finished elsewhere
    trial = study.ask()
    search = ["hparams_search=copy_optuna", "hydra.sweeper.study_name=p", f"hydra.sweep.dir={sweep}",
              "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner", "+hydra.sweeper.pruner.lower=1.5"]
    cfg = compose_config([*TINY, "trainer.max_epochs=3", *search], tmp_path / "run")
    hydra_cfg = compose_config([*TINY, *search])
    hydra_cfg.hydra.job.num = trial.number  # as the sweeper's launcher sets it
    HydraConfig().set_config(hydra_cfg)
    summary = train(cfg)
    assert summary["status"] == "completed"
    stored = study.trials[trial.number]
    assert stored.user_attrs["pruned_at_step"] == 0
    assert list(stored.intermediate_values) == [0]  # one report: it stopped after epoch 0 of 3
    assert stored.intermediate_values[0] == pytest.approx(summary["metrics"]["val/acc"])

    tell(study, trial, JobReturn(status=JobStatus.COMPLETED, _return_value=summary["metrics"]["val/acc_best"]))
    assert study.trials[trial.number].state == optuna.trial.TrialState.PRUNED
