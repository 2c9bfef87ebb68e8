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
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
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
        self.cwd, self.env = tmp_path, env
        self.dir = tmp_path / "sweep"
        self.name = f"stm_lab_test_{uuid.uuid4().hex[:8]}"
        self.cmd = [sys.executable, "-m", "stm_lab", "-m", *SLURM, f"hydra.launcher.name={self.name}",
                    f"hydra.sweep.dir={self.dir}", *args]

    def run(self, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.cmd, *extra], cwd=self.cwd, env=self.env, capture_output=True,
                              text=True, timeout=WAIT)

    def start(self) -> subprocess.Popen:
        return subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def arrays(self) -> list[str]:
        """The SLURM job ids submitted so far (one per array), oldest first."""
        ids = [p.parent.name for p in self.dir.glob(".submitit/*/*_submission.sh")]
        return sorted(ids, key=int)

    def summary(self, job: int | str) -> dict:
        return read_summary(self.dir / str(job))

    def log(self, job_id: str, task: int = 0) -> str:
        """The job's stdout and stderr as submitit keeps them (every start of it, appended)."""
        folder = self.dir / ".submitit" / job_id
        return "".join(p.read_text() for p in sorted(folder.glob(f"{job_id}_{task}_log.*")))

    def queued(self) -> bool:
        out = subprocess.run(["squeue", "--noheader", "--name", self.name], env=self.env,
                             capture_output=True, text=True, timeout=60).stdout
        return bool(out.strip())

    def cancel(self) -> None:
        subprocess.run(["scancel", "--name", self.name], env=self.env, capture_output=True, timeout=60)


@pytest.fixture
def sweeps(env):
    """Make sweeps; whatever they left in the queue is cancelled when the test ends."""
    made: list[Sweep] = []

    def make(tmp_path: Path, *args: str) -> Sweep:
        made.append(Sweep(tmp_path, env, *args))
        return made[-1]

    yield make
    # A job whose result is in may still be exiting: give it a moment to leave the queue.
    deadline = time.monotonic() + 30
    while any(s.queued() for s in made) and time.monotonic() < deadline:
        time.sleep(0.5)
    for s in made:
        s.cancel()


def wait_until(check, what: str, proc: subprocess.Popen | None = None, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the sweep ended (code {proc.returncode}) before {what}:\n{err[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)
    return value


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=WAIT)
    finally:
        proc.kill()
    return proc.returncode, err


def pause(seed: int, step: int, marker: Path) -> list[str]:
    """The run with this seed pauses at ``step`` (in training) until a stop signal reaches it."""
    return ["+callbacks.pause._target_=slurm_callbacks.PauseOne", "+callbacks.pause.value=${seed}",
            f"+callbacks.pause.when={seed}", f"+callbacks.pause.step={step}", f"+callbacks.pause.marker={marker}"]


def global_step(ckpt: str) -> int:
    return torch.load(ckpt, weights_only=False, map_location="cpu")["global_step"]


# ---------------------------------------------------------------- the tests


def test_grid_sweep_is_one_array_a_cancelled_job_resumes_and_setup_reaches_the_jobs(sweeps, env, tmp_path):
    """4 jobs, one array. ``scancel`` of the job still training: its summary says interrupted,
    with last.ckpt; the same command with skip_completed=true skips the 3 completed runs and
    resumes the 4th from its checkpoint, into the same W&B run. The launcher's setup lines and
    the launching shell's environment reach every job, which runs this very Python."""
    marker = tmp_path / "paused"
    setup = "hydra.launcher.setup=['export STM_LAB_SETUP_MARK=from-setup','echo setup lines ran']"
    sweep = sweeps(tmp_path, "seed=0,1,2,3", *RUN, "logger=wandb", *pause(3, 2, marker), setup,
                   "tags=[${oc.env:STM_LAB_SETUP_MARK},${oc.env:STM_LAB_LAUNCH_MARK}]")
    sweep.env = {**env, "STM_LAB_LAUNCH_MARK": "from-launcher"}
    proc = sweep.start()
    wait_until(marker.exists, "job 3 to reach training step 2", proc)
    (array,) = sweep.arrays()
    slurm(env, "scancel", f"{array}_3")
    code, err = finish(proc)
    # The launcher collects every job, then reports the one that did not complete.
    assert code != 0 and "the run exited with code 143" in err, err[-3000:]
    stopped = sweep.summary(3)
    assert stopped["status"] == "interrupted" and stopped["reason"] == "received SIGTERM"
    assert global_step(stopped["last_checkpoint"]) == 2
    first = {job: sweep.summary(job) for job in range(3)}
    assert all(s["status"] == "completed" for s in first.values())

    # ONE array of 4 tasks, each a SLURM job of its own.
    script = (sweep.dir / ".submitit" / array / f"{array}_submission.sh").read_text()
    assert "#SBATCH --array=0-3" in script
    records = finished_jobs(env, array, 4)
    assert sorted(int(r["ArrayTaskId"]) for r in records) == [0, 1, 2, 3]
    assert {r["ArrayJobId"] for r in records} == {array} and len({r["JobId"] for r in records}) == 4
    states = {int(r["ArrayTaskId"]): r["JobState"] for r in records}
    assert states[3] in ("CANCELLED", "FAILED") and {states[t] for t in range(3)} == {"COMPLETED"}

    # Setup and environment: the job's config, resolved inside the job, saw both variables; its
    # log has the setup's output; srun ran the launching Python, with the same libraries.
    assert first[0]["config"]["tags"] == ["from-setup", "from-launcher"]
    assert "setup lines ran" in sweep.log(f"{array}_0")
    assert f"{sys.executable} -u -m submitit.core._submit" in script.split("srun --unbuffered", 1)[1]
    assert first[0]["versions"] == library_versions()

    r = sweep.run("skip_completed=true")
    assert r.returncode == 0, r.stderr[-3000:]
    for job in range(3):  # skipped: the summaries are untouched
        assert sweep.summary(job) == first[job]
    done = sweep.summary(3)
    assert done["status"] == "completed" and done["resumed_from"] == stopped["last_checkpoint"]
    arrays = sweep.arrays()
    assert len(arrays) == 2 and "resuming the interrupted run" in sweep.log(f"{arrays[1]}_3")
    assert "already completed; skipped" in sweep.log(f"{arrays[1]}_0")

    # Each job its own W&B offline run; the resumed job logged to the run it started.
    for job in range(4):
        run_id = (sweep.dir / str(job) / "wandb_id").read_text().strip()
        runs = list((sweep.dir / str(job) / "wandb").glob("offline-run-*"))
        assert runs and all(p.name.endswith(run_id) for p in runs)
        assert len(runs) == (2 if job == 3 else 1)
    assert stopped["wandb"]["id"] == done["wandb"]["id"]

    out = tmp_path / "compare"
    assert compare_main([str(sweep.dir), "--over", "none", "--out", str(out)]) == 0
    with open(out / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 4 and {r["status"] for r in runs} == {"completed"}


def test_optuna_search_runs_trials_as_slurm_jobs_and_resumes_after_the_launcher_is_killed(sweeps, tmp_path):
    """hparams_search=copy_optuna, 6 trials in batches of 2, each batch one array. The launching
    process is killed (SIGKILL) once the second batch is submitted; that batch is cancelled, as
    a user would. The same command resumes: the 2 finished trials stay as they were, the 2 cut
    short run again, 2 more complete the 6."""
    sweep = sweeps(tmp_path, "hparams_search=copy_optuna", "hydra.sweeper.n_trials=6",
                   "hydra.sweeper.n_jobs=2", "cell=choice(rnn,gru)", "hydra/sweeper/sampler=random",
                   *RUN, "logger=none")
    proc = sweep.start()
    wait_until(lambda: len(sweep.arrays()) >= 2, "the second batch", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    second = sweep.arrays()[1]
    slurm(sweep.env, "scancel", second)
    first_rows = read_trials(sweep.dir)
    assert [(r["number"], r["state"]) for r in first_rows] == [("0", "COMPLETE"), ("1", "COMPLETE")]
    started = {n: sweep.summary(n)["started"] for n in (0, 1)}

    r = sweep.run()
    assert r.returncode == 0, r.stderr[-3000:]
    rows = read_trials(sweep.dir)
    states = [r["state"] for r in rows]
    assert states.count("COMPLETE") == 6 and states.count("INTERRUPTED") == 2, states
    assert {r["number"] for r in rows if r["state"] == "INTERRUPTED"} == {"2", "3"}
    assert rows[:2] == first_rows  # not redone
    assert {n: sweep.summary(n)["started"] for n in (0, 1)} == started
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
    assert len(arrays) == 4 and arrays[1] == second
    for array in arrays:
        script = (sweep.dir / ".submitit" / array / f"{array}_submission.sh").read_text()
        assert "#SBATCH --array=0-1" in script
    for array in (arrays[0], *arrays[2:]):
        records = finished_jobs(sweep.env, array, 2)
        assert sorted(r["ArrayTaskId"] for r in records) == ["0", "1"]
        assert {r["JobState"] for r in records} == {"COMPLETED"}


def read_trials(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "trials.csv") as f:
        return list(csv.DictReader(f))


def test_time_limit_requeues_the_job_and_it_resumes_from_last_ckpt(sweeps, env, tmp_path):
    """A job reaches its time limit mid-training. SLURM sends the warning submitit asked for
    (USR2, signal_delay_s before the limit); the run stops at the batch boundary with last.ckpt,
    the job is requeued (max_num_timeout=1) and the restarted job resumes from that checkpoint.

    The limit is real and enforced by SLURM; the test only chooses when it falls: once the run
    is in training, it lowers the job's limit (``scontrol update TimeLimit``) so that SLURM's
    next time-limit check (every 30 s) sends the warning, and raises it back for the restart."""
    marker = tmp_path / "paused"
    sweep = sweeps(tmp_path, "seed=0", *RUN, "logger=none", *pause(0, 2, marker),
                   "hydra.launcher.max_num_timeout=1", "hydra.launcher.signal_delay_s=90")
    proc = sweep.start()
    wait_until(marker.exists, "training step 2", proc)
    (job,) = sweep.arrays()  # a sweep of one job: a plain job, not an array
    elapsed = seconds(job_info(env, job)["RunTime"])
    # The new limit falls 60-120 s from now; the warning, 90 s before it, is already due.
    slurm(env, "scontrol", "update", f"JobId={job}", f"TimeLimit={elapsed // 60 + 2}")
    stopped = wait_until(lambda: (s := sweep.summary(0))["status"] == "interrupted" and s, "the warning", proc)
    slurm(env, "scontrol", "update", f"JobId={job}", "TimeLimit=5")
    assert stopped["reason"] == "received SIGUSR2" and global_step(stopped["last_checkpoint"]) == 2

    code, err = finish(proc)
    assert code == 0, err[-3000:]
    done = sweep.summary(0)
    assert done["status"] == "completed" and done["resumed_from"] == stopped["last_checkpoint"]
    assert job_info(env, job)["Restarts"] == "1"
    log = sweep.log(job)
    assert "Requeued job" in log and "resuming the interrupted run" in log


def seconds(runtime: str) -> int:
    """SLURM's [D-]HH:MM:SS."""
    days, _, hms = runtime.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


def test_ddp_on_slurm_two_ranks_from_srun_and_only_rank_zero_records(sweeps, tmp_path):
    """trainer=ddp with strategy ddp and 2 tasks per node: srun starts both ranks (gloo on the
    CPU); only global rank 0 writes summary.json and the W&B run."""
    sweep = sweeps(tmp_path, "seed=0", *RUN, "logger=wandb", "trainer=ddp", "trainer.strategy=ddp",
                   "trainer.accelerator=cpu", "trainer.devices=2", "hydra.launcher.tasks_per_node=2")
    r = sweep.run()
    assert r.returncode == 0, r.stderr[-3000:]
    (job,) = sweep.arrays()
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in sweep.log(job, task=1)
    summary = sweep.summary(0)
    assert summary["status"] == "completed", summary.get("reason")
    assert summary["config"]["trainer"]["strategy"] == "ddp" and summary["config"]["trainer"]["devices"] == 2
    assert math.isfinite(summary["metrics"]["test/acc"])
    runs = list((sweep.dir / "0" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and summary["wandb"]["id"] == (sweep.dir / "0" / "wandb_id").read_text().strip()
