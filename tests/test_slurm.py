"""``launcher=slurm`` against a real SLURM scheduler: a one-node cluster on this machine.

    bash tests/slurm/start.sh && pytest tests/test_slurm.py; bash tests/slurm/stop.sh

Every test runs the real command, ``python -m stm_lab -m launcher=slurm ...``, on tiny runs: the
jobs go through ``sbatch`` as job arrays and run under ``srun``; the scheduler itself cancels,
time-limits and requeues them. Without a cluster these tests skip on a developer's machine and
fail in CI (``CI=true``), saying why.

The test cluster has no accounting database (no slurmdbd, so no ``sacct``): which jobs ran in
which array is read from the records slurmctld writes as each job ends (jobcomp/filetxt, the
file named by ``JobCompLoc``), and a job's restarts from ``scontrol show job``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY

from stm_lab.compare import main as compare_main
from stm_lab.summary import library_versions, read_summary

pytestmark = pytest.mark.slurm

TESTS = Path(__file__).parent
ROOT = TESTS.parent
START = "bash tests/slurm/start.sh"
# Each job: one CPU, no GPU, 1 GB, 5 minutes.
SLURM = ["launcher=slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=5"]
RUN = [a for a in TINY if not a.startswith("logger=")]  # each test picks its logger
WAIT = 600  # seconds: the most any one command may take on a loaded 2-core machine


# ---------------------------------------------------------------- the cluster


def slurm_conf() -> Path:
    if os.environ.get("SLURM_CONF"):
        return Path(os.environ["SLURM_CONF"])
    return Path(os.environ.get("STM_LAB_SLURM_DIR", "/tmp/stm_lab_slurm")) / "slurm.conf"


def cluster_problem(env: dict[str, str]) -> str | None:
    """Why there is no usable cluster, or None."""
    if shutil.which("sbatch") is None:
        return "sbatch is not installed"
    if not Path(env["SLURM_CONF"]).is_file():
        return f"no cluster config at {env['SLURM_CONF']}"
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 30 s"
    if r.returncode != 0:
        return f"sinfo failed: {r.stderr.strip()}"
    states = r.stdout.split()
    if not any(s.startswith(("idle", "mix", "alloc")) for s in states):
        return f"no node to run on (sinfo: {' '.join(states) or 'no nodes'})"
    return None


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """The environment of every command here: offline, the test cluster, this checkout first."""
    path = [str(TESTS), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_DATASETS_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "SLURM_CONF": str(slurm_conf()),
           "PYTHONPATH": os.pathsep.join(path)}
    problem = cluster_problem(env)
    if problem:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"the SLURM test cluster is not up: {problem}. `{START}` starts it "
                        "(.ci/run does, before pytest)", pytrace=False)
        pytest.skip(f"no SLURM test cluster ({problem}); start one with `{START}`")
    return env


def slurm(env: dict[str, str], *cmd: str) -> str:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True).stdout


def job_info(env: dict[str, str], job: str) -> dict[str, str]:
    """``scontrol show job`` as a dict (the first record: the job itself, or an array's first task)."""
    out = slurm(env, "scontrol", "-o", "show", "job", job)
    return dict(kv.split("=", 1) for kv in out.splitlines()[0].split() if "=" in kv)


def finished_jobs(env: dict[str, str], array: str, n: int, timeout: float = 60.0) -> list[dict[str, str]]:
    """The jobcomp records of the array (or single job) ``array``: waits until there are ``n``."""
    loc = re.search(r"^JobCompLoc\s*=\s*(\S+)", slurm(env, "scontrol", "show", "config"), re.M)
    assert loc, "the test cluster records finished jobs with jobcomp/filetxt (JobCompLoc)"
    deadline = time.monotonic() + timeout
    while True:
        lines = Path(loc.group(1)).read_text().splitlines() if Path(loc.group(1)).exists() else []
        records = [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in lines]
        mine = [r for r in records if array in (r.get("ArrayJobId"), r.get("JobId"))]
        if len(mine) >= n or time.monotonic() > deadline:
            return mine
        time.sleep(0.5)


# ---------------------------------------------------------------- one sweep command


class Sweep:
    """``python -m stm_lab -m launcher=slurm ARGS``: its folder, its jobs (all named ``name``)."""

    def __init__(self, tmp_path: Path, env: dict[str, str], *args: str) -> None:
        self.cwd, self.env = tmp_path, dict(env)
        self.dir = tmp_path / "sweep"
        self.name = f"stm_lab_test_{uuid.uuid4().hex[:8]}"
        self.cmd = [sys.executable, "-m", "stm_lab", "-m", *SLURM, f"hydra.launcher.name={self.name}",
                    f"hydra.sweep.dir={self.dir}", *args]
        self.procs: list[subprocess.Popen] = []

    def run(self, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.cmd, *extra], cwd=self.cwd, env=self.env, capture_output=True,
                              text=True, timeout=WAIT)

    def start(self) -> subprocess.Popen:
        self.procs.append(subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True))
        return self.procs[-1]

    def arrays(self) -> list[str]:
        """The SLURM job ids submitted so far (one per array), oldest first."""
        ids = [p.parent.name for p in self.dir.glob(".submitit/*/*_submission.sh")]
        return sorted(ids, key=int)

    def job_dir(self, job: int | str) -> Path:
        """A job's folder: an Optuna trial's is its number; a grid job's is named by its
        overrides, which here start with its seed (``seed=3,...``), the job's number."""
        numbered = self.dir / str(job)
        if numbered.is_dir():
            return numbered
        named = [p for p in self.dir.iterdir() if p.is_dir() and re.match(rf"seed={job}(,|-|$)", p.name)]
        assert len(named) == 1, f"one folder for job {job} in {self.dir}: {sorted(p.name for p in named)}"
        return named[0]

    def summary(self, job: int | str) -> dict:
        return read_summary(self.job_dir(job))

    def log(self, job_id: str, task: int = 0) -> str:
        """The job's stdout and stderr as submitit keeps them (every start of it, appended)."""
        folder = self.dir / ".submitit" / job_id
        return "".join(p.read_text() for p in sorted(folder.glob(f"{job_id}_{task}_log.*")))

    def queued(self) -> bool:
        out = subprocess.run(["squeue", "--noheader", "--name", self.name], env=self.env,
                             capture_output=True, text=True, timeout=60).stdout
        return bool(out.strip())

    def cancel(self) -> None:
        """Stop what is left: a launching process a failed scenario did not wait for, its jobs."""
        for proc in self.procs:
            proc.kill()
        subprocess.run(["scancel", "--name", self.name], env=self.env, capture_output=True, timeout=60)


def wait_until(check, what: str, proc: subprocess.Popen | None = None, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the sweep ended (code {proc.returncode}) before {what}:\n{err[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)
    return value


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=WAIT)
    finally:
        proc.kill()
    return proc.returncode, out + err


def pause(seeds: list[int], step: int, marker: str) -> list[str]:
    """The runs with these seeds pause at ``step`` (in training) until a stop signal reaches them;
    ``marker`` (with ``${seed}`` in it) says when they are there."""
    return ["+callbacks.pause._target_=slurm_callbacks.PauseSome", "+callbacks.pause.value=${seed}",
            f"+callbacks.pause.among=[{','.join(map(str, seeds))}]", f"+callbacks.pause.step={step}",
            f"+callbacks.pause.marker={marker}"]


def global_step(ckpt: str) -> int:
    return torch.load(ckpt, weights_only=False, map_location="cpu")["global_step"]


def seconds(runtime: str) -> int:
    """SLURM's [D-]HH:MM:SS."""
    days, _, hms = runtime.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


# ---------------------------------------------------------------- the scenarios
# Each plays one story against the cluster and returns what it saw on the way; the tests below
# check it. They run at the same time (the `runs` fixture), the way several users share a
# cluster: while one waits (for a signal, for a requeued job's turn, for its launcher to start)
# the scheduler runs the others' jobs, which keeps the whole file to a few minutes on 2 CPUs.


def play_grid(sweep: Sweep, sweeps: dict[str, Sweep]) -> dict:
    """4 jobs in one array, with setup lines and a variable of the launching environment.
    In training, job 2 is cancelled (scancel) and job 3 reaches its time limit (it may be
    requeued once: max_num_timeout=1). Then the same command with skip_completed=true.

    The time limit is real and enforced by SLURM; the test only chooses when it falls: once
    job 3 is in training, it lowers that job's limit (``scontrol update TimeLimit``) so that
    SLURM's next time-limit check (every 30 s) sends the warning submitit asked for (USR2,
    signal_delay_s=90 s before the limit); then it raises the limit back, for the restart."""
    sweep.cmd += ["seed=0,1,2,3", *RUN, "logger=wandb", *pause([2, 3], 2, f"{sweep.cwd}/paused_${{seed}}"),
                  "hydra.launcher.max_num_timeout=1", "hydra.launcher.signal_delay_s=90",
                  "hydra.launcher.setup=['export STM_LAB_SETUP_MARK=from-setup','echo setup lines ran']",
                  "+callbacks.env._target_=slurm_callbacks.WriteEnv",
                  f"+callbacks.env.path={sweep.cwd}/env_${{seed}}.json",
                  "+callbacks.env.names=[STM_LAB_SETUP_MARK,STM_LAB_LAUNCH_MARK,SLURM_JOB_ID]"]
    sweep.env["STM_LAB_LAUNCH_MARK"] = "from-launcher"
    proc = sweep.start()
    wait_until((sweep.cwd / "paused_2").exists, "job 2 to reach training step 2", proc)
    (array,) = sweep.arrays()
    slurm(sweep.env, "scancel", f"{array}_2")
    wait_until((sweep.cwd / "paused_3").exists, "job 3 to reach training step 2", proc)
    limited = f"{array}_3"
    elapsed = seconds(job_info(sweep.env, limited)["RunTime"])
    # The new limit falls 60-120 s from now, so the warning is due at once.
    slurm(sweep.env, "scontrol", "update", f"JobId={limited}", f"TimeLimit={elapsed // 60 + 2}")
    warned = wait_until(lambda: (s := sweep.summary(3))["status"] == "interrupted" and s, "the warning", proc)
    slurm(sweep.env, "scontrol", "update", f"JobId={limited}", "TimeLimit=5")
    seen = {"array": array, "warned": warned, "warned_step": global_step(warned["last_checkpoint"])}
    seen["code"], seen["output"] = finish(proc)
    cancelled = sweep.summary(2)
    seen.update(cancelled=cancelled, cancelled_step=global_step(cancelled["last_checkpoint"]),
                first={job: sweep.summary(job) for job in range(4)},
                restarts=job_info(sweep.env, limited)["Restarts"],
                records=finished_jobs(sweep.env, array, 5))  # 4 ends, and job 3's requeue
    seen["rerun"] = sweep.run("skip_completed=true")
    return seen


def play_search(sweep: Sweep, sweeps: dict[str, Sweep]) -> dict:
    """hparams_search=copy_optuna, 6 trials in batches of 2. The launching process is killed
    (SIGKILL) once the second batch is submitted, and that batch cancelled, as a user would;
    then the same command again."""
    sweep.cmd += ["hparams_search=copy_optuna", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2",
                  "cell=choice(rnn,gru)", "hydra/sweeper/sampler=random", *RUN, "logger=none"]
    proc = sweep.start()
    wait_until(lambda: len(sweep.arrays()) >= 2, "the second batch", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cut = sweep.arrays()[1]
    slurm(sweep.env, "scancel", cut)
    seen = {"cut": cut, "rows": read_trials(sweep.dir),
            "started": {n: sweep.summary(n)["started"] for n in (0, 1)}}
    seen["rerun"] = sweep.run()
    return seen


def play_ddp(sweep: Sweep, sweeps: dict[str, Sweep]) -> dict:
    """trainer=ddp with strategy ddp on 2 tasks: srun starts both ranks (gloo on the CPU). It
    takes the whole node, so it queues behind the search's first batch (the longest story)."""
    wait_until(sweeps["search"].arrays, "the search's first batch")
    sweep.cmd += ["seed=0", *RUN, "logger=wandb", "trainer=ddp", "trainer.strategy=ddp",
                  "trainer.accelerator=cpu", "trainer.devices=2", "hydra.launcher.tasks_per_node=2"]
    return {"run": sweep.run()}


def read_trials(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "trials.csv") as f:
        return list(csv.DictReader(f))


SCENARIOS = {"search": play_search, "grid": play_grid, "ddp": play_ddp}


@pytest.fixture(scope="module")
def runs(env, tmp_path_factory):
    """Start every scenario at once; ``runs[name]`` waits for one and returns what it saw (or
    raises what went wrong). At the end, whatever a scenario left in the queue is cancelled."""
    sweeps = {name: Sweep(tmp_path_factory.mktemp(name), env) for name in SCENARIOS}
    pool = ThreadPoolExecutor(max_workers=len(SCENARIOS))
    futures = {name: pool.submit(play, sweeps[name], sweeps) for name, play in SCENARIOS.items()}

    class Runs(dict):
        def __missing__(self, name: str) -> tuple[Sweep, dict]:
            self[name] = (sweeps[name], futures[name].result())
            return self[name]

    try:
        yield Runs()
    finally:
        pool.shutdown(wait=True)
        # A job whose result is in may still be exiting: give it a moment to leave the queue.
        deadline = time.monotonic() + 30
        while any(s.queued() for s in sweeps.values()) and time.monotonic() < deadline:
            time.sleep(0.5)
        for s in sweeps.values():
            s.cancel()


# ---------------------------------------------------------------- the tests


def test_grid_sweep_is_one_job_array_each_job_with_summary_and_wandb_run(runs):
    sweep, seen = runs["grid"]
    array = seen["array"]
    script = (sweep.dir / ".submitit" / array / f"{array}_submission.sh").read_text()
    assert "#SBATCH --array=0-3" in script
    # slurmctld's records: 4 jobs of their own, tasks 0-3 of ONE array.
    tasks = {int(r["ArrayTaskId"]): r["JobId"] for r in seen["records"]}
    assert sorted(tasks) == [0, 1, 2, 3] and len(set(tasks.values())) == 4
    assert {r["ArrayJobId"] for r in seen["records"]} == {array}
    assert all(seen["first"][job]["status"] == "completed" for job in (0, 1, 3))

    assert seen["rerun"].returncode == 0, seen["rerun"].stderr[-3000:]
    for job in range(4):
        summary = sweep.summary(job)
        assert summary["status"] == "completed"
        run_id = (sweep.job_dir(job) / "wandb_id").read_text().strip()
        assert summary["wandb"]["id"] == run_id and summary["wandb"]["mode"] == "offline"
        runs_dirs = list((sweep.job_dir(job) / "wandb").glob("offline-run-*"))
        assert runs_dirs and all(p.name.endswith(run_id) for p in runs_dirs)
        # A stopped job resumed into the W&B run it started: one run, two offline logs of it.
        assert len(runs_dirs) == (2 if job in (2, 3) else 1)

    out = sweep.cwd / "compare"
    assert compare_main([str(sweep.dir), "--over", "none", "--out", str(out)]) == 0
    with open(out / "runs.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and {r["status"] for r in table} == {"completed"}


def test_scancel_leaves_an_interrupted_run_and_skip_completed_finishes_only_it(runs):
    """SIGTERM from scancel: the run stops at a batch boundary with last.ckpt; the launcher
    collects the other jobs and reports this one. skip_completed=true then submits the missing
    job alone, which resumes from the checkpoint into the same W&B run."""
    sweep, seen = runs["grid"]
    assert seen["code"] != 0 and "the run exited with code 143" in seen["output"], seen["output"][-3000:]
    cancelled = seen["cancelled"]
    assert cancelled["status"] == "interrupted" and cancelled["reason"] == "received SIGTERM"
    assert seen["cancelled_step"] == 2
    assert [r["JobState"] for r in seen["records"] if r["ArrayTaskId"] == "2"] == ["CANCELLED"]

    rerun = seen["rerun"]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "skip_completed: jobs [0, 1, 3] already completed" in rerun.stdout + rerun.stderr
    for job in (0, 1, 3):  # not submitted: the summaries are untouched
        assert sweep.summary(job) == seen["first"][job]
    arrays = sweep.arrays()
    assert len(arrays) == 2
    resumed = arrays[1]  # the missing job alone: a plain job, under its own number
    assert "#SBATCH --array" not in (sweep.dir / ".submitit" / resumed / f"{resumed}_submission.sh").read_text()
    assert "resuming the interrupted run" in sweep.log(resumed)
    done = sweep.summary(2)
    assert done["status"] == "completed" and done["resumed_from"] == cancelled["last_checkpoint"]
    assert done["wandb"]["id"] == cancelled["wandb"]["id"]


def test_time_limit_requeues_the_job_and_it_resumes_from_last_ckpt(runs):
    """SLURM's warning before the limit stops the run at a batch boundary with last.ckpt; the
    job is requeued (max_num_timeout=1) and the restarted job resumes from that checkpoint,
    all within the first command."""
    sweep, seen = runs["grid"]
    warned = seen["warned"]
    assert warned["reason"] == "received SIGUSR2" and seen["warned_step"] == 2
    assert seen["restarts"] == "1"
    # slurmctld's records of job 3: requeued (back to PENDING), then completed.
    assert [r["JobState"] for r in seen["records"] if r["ArrayTaskId"] == "3"] == ["PENDING", "COMPLETED"]
    done = seen["first"][3]
    assert done["status"] == "completed" and done["resumed_from"] == warned["last_checkpoint"]
    assert done["wandb"]["id"] == warned["wandb"]["id"]
    log = sweep.log(f"{seen['array']}_3")
    assert "Requeued job" in log and "resuming the interrupted run" in log


def test_setup_lines_and_the_launching_environment_reach_the_jobs(runs):
    sweep, seen = runs["grid"]
    # Written inside each job: the variable the setup lines exported, the one set where the sweep
    # was launched, and SLURM's own; the interpreter is this one (this virtual environment's).
    for seed in range(4):
        inside = json.loads((sweep.cwd / f"env_{seed}.json").read_text())
        assert inside["executable"] == sys.executable
        assert inside["env"].pop("SLURM_JOB_ID")
        assert inside["env"] == {"STM_LAB_SETUP_MARK": "from-setup", "STM_LAB_LAUNCH_MARK": "from-launcher"}
    assert "setup lines ran" in sweep.log(f"{seen['array']}_0")
    assert seen["first"][0]["versions"] == library_versions()  # the same libraries


def test_optuna_search_runs_trials_as_slurm_jobs_and_resumes_after_the_launcher_is_killed(runs):
    """The same command after the kill: the 2 finished trials stay as they were, the 2 cut
    short run again, 2 more complete the 6."""
    sweep, seen = runs["search"]
    assert [(r["number"], r["state"]) for r in seen["rows"]] == [("0", "COMPLETE"), ("1", "COMPLETE")]
    assert seen["rerun"].returncode == 0, seen["rerun"].stderr[-3000:]
    rows = read_trials(sweep.dir)
    states = [r["state"] for r in rows]
    assert states.count("COMPLETE") == 6 and states.count("INTERRUPTED") == 2, states
    assert {r["number"] for r in rows if r["state"] == "INTERRUPTED"} == {"2", "3"}
    assert rows[:2] == seen["rows"]  # not redone
    assert {n: sweep.summary(n)["started"] for n in (0, 1)} == seen["started"]
    for row in rows:
        if row["state"] == "COMPLETE":
            summary = read_summary(row["job_dir"])
            assert summary["status"] == "completed"
            assert summary["metrics"]["val/acc_best"] == pytest.approx(float(row["value"]))
    best = yaml.safe_load((sweep.dir / "best.yaml").read_text())
    assert best["trials"] == {"complete": 6, "pruned": 0, "fail": 0, "interrupted": 2}
    assert best["best_value"] == max(float(r["value"]) for r in rows if r["state"] == "COMPLETE")

    # Every batch was an array of 2 SLURM jobs: 1 before the kill, the cut one, 2 after.
    arrays = sweep.arrays()
    assert len(arrays) == 4 and arrays[1] == seen["cut"]
    for array in arrays:
        script = (sweep.dir / ".submitit" / array / f"{array}_submission.sh").read_text()
        assert "#SBATCH --array=0-1" in script
    for array in (arrays[0], *arrays[2:]):
        records = finished_jobs(sweep.env, array, 2)
        assert sorted(r["ArrayTaskId"] for r in records) == ["0", "1"]


def test_ddp_on_slurm_runs_two_ranks_from_srun_and_only_rank_zero_records(runs):
    sweep, seen = runs["ddp"]
    assert seen["run"].returncode == 0, seen["run"].stderr[-3000:]
    (job,) = sweep.arrays()
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in sweep.log(job, task=1)
    summary = sweep.summary(0)
    assert summary["status"] == "completed", summary.get("reason")
    assert summary["config"]["trainer"]["strategy"] == "ddp" and summary["config"]["trainer"]["devices"] == 2
    assert math.isfinite(summary["metrics"]["test/acc"])
    runs_dirs = list((sweep.job_dir(0) / "wandb").glob("offline-run-*"))
    assert len(runs_dirs) == 1 and summary["wandb"]["id"] == (sweep.job_dir(0) / "wandb_id").read_text().strip()
