"""The CPU thread policy (stm_lab/threads.py): what ``auto`` resolves to in each environment.

conftest.py sets OMP_NUM_THREADS=1 for the whole suite, and ``auto`` honours OMP_NUM_THREADS
(the variable is how a user, and joblib, say how many threads a process gets). So the policy's
own resolution is tested here with explicit environments (``Probes``), never the suite's, and
one run is made with the variable removed. No timing here: speed is in benchmarks/threads.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import pytest
import torch
from conftest import TINY

from stm_lab import threads
from stm_lab.errors import ConfigError
from stm_lab.run import train
from stm_lab.summary import read_summary
from stm_lab.threads import Probes, apply_thread_policy, prepare_wait_policy, resolve_threads

PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}


def probes(env: dict[str, str] | None = None, affinity: int = 8, quota: float | None = None,
           worker: bool = False, idle: float | None = 64.0) -> Probes:
    """Fake probes; by default every CPU is idle."""
    return Probes(env=env if env is not None else dict(PASSIVE), affinity=lambda: affinity,
                  cgroup=lambda: quota, joblib_worker=lambda: worker, idle=lambda: idle)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ auto, by environment


def test_auto_uses_the_affinity_mask():
    choice = resolve_threads("auto", probes(affinity=6))
    assert (choice.threads, choice.cpus, choice.wait_policy) == (6, 6, "passive")
    assert "affinity 6" in choice.source


@pytest.mark.parametrize("quota,expected", [(2.0, 2), (1.5, 2), (0.5, 1), (16.0, 8)])
def test_auto_respects_the_cgroup_quota(quota, expected):
    choice = resolve_threads("auto", probes(affinity=8, quota=quota))
    assert choice.threads == expected
    assert f"cgroup quota {quota:g}" in choice.source


@pytest.mark.parametrize("slurm,affinity,expected", [("3", 8, 3), ("16", 4, 4), ("bad", 4, 4)])
def test_auto_respects_slurm_cpus_per_task(slurm, affinity, expected):
    choice = resolve_threads("auto", probes({**PASSIVE, "SLURM_CPUS_PER_TASK": slurm}, affinity=affinity))
    assert choice.threads == expected


def test_auto_takes_the_tightest_limit():
    env = {**PASSIVE, "SLURM_CPUS_PER_TASK": "4"}
    assert resolve_threads("auto", probes(env, affinity=6, quota=3.0)).threads == 3
    assert resolve_threads("auto", probes(env, affinity=2, quota=3.0)).threads == 2


@pytest.mark.parametrize("idle,expected", [(2.0, 2), (1.6, 2), (1.4, 1), (0.9, 1), (0.0, 1), (7.5, 4)])
def test_auto_leaves_busy_cpus_to_the_processes_using_them(idle, expected):
    choice = resolve_threads("auto", probes(affinity=4, quota=2.0 if expected < 4 else None, idle=idle))
    assert choice.threads == expected
    assert choice.idle_cpus == idle and f"{idle:.1f} idle" in choice.source
    assert ("other processes were using the rest" in choice.source) == (expected < choice.cpus)


def test_auto_without_an_idle_reading_uses_the_usable_cpus():
    choice = resolve_threads("auto", probes(affinity=3, idle=None))
    assert choice.threads == 3 and "idle ones unknown" in choice.source


def test_idle_cpus_reads_per_cpu_idle_time(tmp_path):
    """Two samples of /proc/stat: cpu0 idle all the time, cpu1 part of it, cpu2 (outside the mask) busy."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  300 0 0 300 0 0 0 0 0 0\ncpu0 100 0 0 100 0 0 0 0 0 0\n"
                    "cpu1 100 0 0 100 0 0 0 0 0 0\ncpu2 100 0 0 100 0 0 0 0 0 0\n")
    first = threads.cpu_times(stat)
    assert first == {0: (100, 200), 1: (100, 200), 2: (100, 200)}
    stat.write_text("cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 100 0 0 125 0 0 0 0 0 0\n"
                    "cpu1 110 0 0 108 2 0 0 2 0 0\ncpu2 125 0 0 100 0 0 0 0 0 0\n")
    second = threads.cpu_times(stat)
    # iowait counts as idle, steal time (a busy VM host) as busy: cpu1 was idle 10 of 22 ticks
    assert threads.idle_between(first, second, {0, 1}) == pytest.approx(1.0 + 10 / 22)
    assert threads.idle_between(first, second) == pytest.approx(1.0 + 10 / 22)  # + cpu2, idle 0
    assert threads.idle_cpus({0}, window=0.0, stat=tmp_path / "missing") is None
    if Path("/proc/stat").exists():
        assert threads.idle_cpus(window=0.01) is not None  # this machine's own


def test_auto_uses_one_thread_while_threads_spin_wait():
    """torch loaded without a wait policy: its threads spin, and several of them stall on a busy
    machine, so auto keeps one (the usable CPUs are still reported)."""
    choice = resolve_threads("auto", probes(env={}, affinity=8))
    assert (choice.threads, choice.cpus, choice.wait_policy) == (1, 8, "spin")
    assert "spin-wait" in choice.source and "OMP_WAIT_POLICY=PASSIVE" in choice.source


@pytest.mark.parametrize("env,label", [({"OMP_WAIT_POLICY": "active"}, "user-set (OMP_WAIT_POLICY=active)"),
                                       ({"GOMP_SPINCOUNT": "10000"}, "user-set (GOMP_SPINCOUNT=10000)"),
                                       ({"GOMP_SPINCOUNT": "0"}, "passive")])
def test_a_wait_policy_chosen_by_the_user_allows_all_cpus(env, label):
    choice = resolve_threads("auto", probes(env=env, affinity=4))
    assert (choice.threads, choice.wait_policy) == (4, label)


def test_auto_honours_omp_num_threads_from_the_user():
    choice = resolve_threads("auto", probes({**PASSIVE, "OMP_NUM_THREADS": "3"}, affinity=8))
    assert choice.threads == 3
    assert choice.source == "auto: OMP_NUM_THREADS=3 in the environment"
    assert resolve_threads("auto", probes({"OMP_NUM_THREADS": "2,1"})).threads == 2  # per nesting level
    assert resolve_threads("auto", probes({**PASSIVE, "OMP_NUM_THREADS": "x"}, affinity=5)).threads == 5


def test_auto_in_a_joblib_worker_takes_the_share_joblib_gave_it():
    choice = resolve_threads("auto", probes({**PASSIVE, "OMP_NUM_THREADS": "1"}, affinity=2, worker=True))
    assert choice.threads == 1
    assert "joblib" in choice.source


def _worker_view() -> tuple[bool, str | None, int, str]:
    choice = resolve_threads("auto")
    return threads.in_joblib_worker(), os.environ.get("OMP_NUM_THREADS"), choice.threads, choice.source


def test_joblib_loky_worker_is_recognised_and_its_share_kept(monkeypatch):
    """What joblib really does (the hydra joblib launcher uses loky): each worker starts with
    OMP_NUM_THREADS = cpu_count() // n_jobs when the parent did not set it; auto keeps that."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert not threads.in_joblib_worker()
    views = joblib.Parallel(n_jobs=2, backend="loky")(joblib.delayed(_worker_view)() for _ in range(2))
    share = max(joblib.cpu_count() // 2, 1)
    for worker, omp, n, source in views:
        assert worker and omp == str(share) and n == share, (worker, omp, n, source)
        assert "joblib" in source


# ------------------------------------------------------------------ explicit, errors


def test_an_explicit_integer_wins():
    env = {"OMP_NUM_THREADS": "1", "SLURM_CPUS_PER_TASK": "2"}
    choice = resolve_threads(5, probes(env, affinity=2, quota=1.0, worker=True))
    assert choice.threads == 5
    assert choice.source == "runtime.threads=5"


@pytest.mark.parametrize("value", [0, -2, "many", "4", 1.5, True, None, [2]])
def test_a_bad_value_is_a_config_error_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"runtime\.threads.*auto or an integer >= 1"):
        resolve_threads(value, probes())


def test_an_unknown_runtime_key_is_a_config_error():
    with pytest.raises(ConfigError, match=r"runtime\.thread'"):
        apply_thread_policy({"runtime": {"thread": 2}}, probes())


def test_apply_sets_torch_threads():
    record = apply_thread_policy({"runtime": {"threads": "auto"}}, probes(affinity=3))
    assert torch.get_num_threads() == 3
    assert record == {"threads": 3, "source": "auto: 3 of 3 usable CPUs (affinity 3); 64.0 idle over 0.25 s; "
                      "threads wait passive", "cpus": 3, "idle_cpus": 64.0, "wait_policy": "passive"}
    apply_thread_policy({"runtime": {"threads": 1}}, probes(affinity=3))
    assert torch.get_num_threads() == 1


# ------------------------------------------------------------------ probes


def _cgroup_tree(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    proc_file = tmp_path / "proc_cgroup"
    proc_file.write_text(proc)
    return root, proc_file


@pytest.mark.parametrize("proc,files,expected", [
    # v2, a container that sees its own cgroup as "/"
    ("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5),
    ("0::/\n", {"cpu.max": "max 100000\n"}, None),
    # v2, a slice inside a parent with a tighter limit: the tightest wins
    ("0::/job/step\n", {"cpu.max": "max 100000", "job/cpu.max": "200000 100000",
                        "job/step/cpu.max": "400000 100000"}, 2.0),
    # v1 with separate and joined controller folders; -1 means no limit
    ("3:cpu,cpuacct:/slurm/job\n", {"cpu,cpuacct/slurm/job/cpu.cfs_quota_us": "300000",
                                    "cpu,cpuacct/slurm/job/cpu.cfs_period_us": "100000"}, 3.0),
    ("1:cpu:/\n2:cpuacct:/\n", {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
    # v1 path of the host (no cgroup namespace): the mount root is the container's cgroup
    ("4:cpu:/docker/abc\n", {"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000"}, 0.5),
    ("0::/\n", {}, None),
])
def test_cgroup_quota_is_read(tmp_path, proc, files, expected):
    root, proc_file = _cgroup_tree(tmp_path, proc, files)
    assert threads.cgroup_cpu_quota(root, proc_file) == expected


def test_probes_of_this_machine_are_sane():
    assert threads.affinity_cpus() >= 1
    quota = threads.cgroup_cpu_quota()
    assert quota is None or quota > 0


# ------------------------------------------------------------------ the wait policy


def test_wait_policy_is_set_only_before_torch_loads_and_only_if_unset():
    env: dict[str, str] = {}
    assert prepare_wait_policy(env, torch_loaded=False) == "PASSIVE"
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "1000"}):
        env = dict(chosen)
        assert prepare_wait_policy(env, torch_loaded=False) is None
        assert env == chosen  # the user's choice stands
    env = {}
    assert prepare_wait_policy(env, torch_loaded=True) is None and env == {}  # too late to matter


# ------------------------------------------------------------------ in a run


def test_the_choice_lands_in_summary_json(make_cfg):
    """Under the suite's OMP_NUM_THREADS=1, auto says so; an integer is recorded as such."""
    cfg = make_cfg(subdir="auto")
    train(cfg)
    record = read_summary(cfg.paths.output_dir)["threads"]
    assert record["threads"] == 1
    assert record["source"] == "auto: OMP_NUM_THREADS=1 in the environment"
    cfg = make_cfg("runtime.threads=2", subdir="fixed")
    train(cfg)
    assert read_summary(cfg.paths.output_dir)["threads"]["threads"] == 2


def test_a_run_without_omp_num_threads_follows_the_policy(make_cfg, monkeypatch):
    """The suite's own thread setting removed: the run resolves from the (faked) machine."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 2)
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: None)
    monkeypatch.setattr(threads, "idle_cpus", lambda: 1.8)
    cfg = make_cfg()
    summary = train(cfg)
    assert summary["status"] == "completed"
    record = read_summary(cfg.paths.output_dir)["threads"]
    assert record == {"threads": 2, "source": "auto: 2 of 2 usable CPUs (affinity 2); 1.8 idle over 0.25 s; "
                      "threads wait passive", "cpus": 2, "idle_cpus": 1.8, "wait_policy": "passive"}
    assert torch.get_num_threads() == 2  # applied to torch, not only recorded


def test_a_bad_value_fails_the_run_before_training(make_cfg):
    cfg = make_cfg("runtime.threads=0")
    with pytest.raises(ConfigError, match=r"runtime\.threads"):
        train(cfg)
    summary = read_summary(cfg.paths.output_dir)
    assert summary["status"] == "failed" and "runtime.threads" in summary["reason"]


def test_the_command_line_sets_passive_waiting_before_torch(tmp_path):
    """``python -m stm_lab`` with no thread variables: the workers wait passively (set before
    torch loaded), so auto may use every usable CPU that is idle. One subprocess: a few seconds."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", *threads.WAIT_VARS)}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(threads.__file__).parents[1]), env.get("PYTHONPATH", "")])
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "stm_lab", *TINY, f"hydra.run.dir={out}"], env=env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads((out / "summary.json").read_text())["threads"]
    cpus, _ = threads.usable_cpus(Probes(env={}))
    assert record["wait_policy"] == "passive"
    assert record["cpus"] == cpus and record["idle_cpus"] is not None
    assert record["threads"] == max(1, min(cpus, int(record["idle_cpus"] + 0.5)))
