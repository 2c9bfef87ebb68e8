"""How many CPU threads a run computes with, how they wait, and why.

Most stm_lab runs are small recurrent networks: each time step is a handful of small matrix
products, so a training step is hundreds of short OpenMP parallel regions. How the threads of
those regions wait for each other decides the speed more than the arithmetic does:

- torch's CPU build uses GNU OpenMP (libgomp). By default an idle worker thread spins for a
  while (~10 ms measured here) before it sleeps. When another process competes for the cores, a
  spinning thread burns the core its team-mate needs, and every region waits for the slowest
  thread: with other work on a 2-core machine the default two threads made training several
  times to ten times slower than one thread (benchmarks/threads.md).
- With ``OMP_WAIT_POLICY=PASSIVE`` workers sleep at once, so the collapse goes; two passive
  threads still lost 10-50 % to one thread on a busy machine, and gained on an idle one.
  libgomp reads the variable once, when torch loads it: set later it does nothing (measured).
  So ``python -m stm_lab`` sets it before anything imports torch (:func:`prepare_wait_policy`),
  unless the user chose a wait policy. Intel OpenMP's ``KMP_*`` variables do not apply: this
  torch links libgomp only.

The thread count is ``runtime.threads`` (conf/config.yaml): ``auto`` or an integer, and an
integer always wins. ``auto`` resolves, in this order:

1. ``OMP_NUM_THREADS`` in the environment is honoured, as torch and numpy honour it. It is also
   how a joblib (loky) sweep worker is told its share: joblib starts each worker with
   ``OMP_NUM_THREADS = cpu_count() // n_jobs`` (or the value the sweep itself was started with),
   so honouring it keeps parallel jobs from oversubscribing the cores.
2. Otherwise the usable CPUs: the smallest of the affinity mask (``os.sched_getaffinity``), the
   cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``, rounded up as joblib does) and
   ``SLURM_CPUS_PER_TASK``.
3. Of those, as many as were idle over a quarter of a second before training (per-CPU idle time
   in /proc/stat, rounded; at least one), so a run started beside other work does not fight it
   for the cores. Load that starts later costs little because the threads wait passively.
4. One thread if they would spin-wait instead: torch was loaded before the wait policy could be
   set (stm_lab used as a library in a running Python) and the user set no wait policy.

The model size is not an input: on a busy machine step 3 already gives one thread, at every
size measured; whether a second idle CPU pays for the smallest models (e.g. B×T×H = 32×50×64) is
for the quiet-machine measurement of benchmarks/threads.md to show. The interop thread pool is left
alone: these runs do not use it (no ``torch.jit.fork``), and torch refuses to resize it once
started.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stm_lab.errors import ConfigError

KEY = "runtime.threads"
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # what libgomp reads (at load) to decide how to wait
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
PROC_STAT = Path("/proc/stat")
IDLE_WINDOW_S = 0.25  # how long auto looks at the CPUs before choosing (short: it runs every job)


# ------------------------------------------------------------------------------ probes


def affinity_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; all CPUs where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPU time per second this process's cgroup allows (``quota / period``), or None without
    a limit. The process's own cgroup and every parent up to the mount point are read, so both a
    container (which sees its cgroup as ``/``) and a systemd or SLURM slice are covered; the
    tightest limit wins."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # cgroup v2: cpu.max holds "max 100000" or "200000 100000"
            for folder in _up_to(root, path):
                limits += _read_limit(folder / "cpu.max", None)
        elif "cpu" in controllers.split(","):  # cgroup v1: quota and period in two files
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
                if mount.is_dir():
                    for folder in _up_to(mount, path):
                        limits += _read_limit(folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us")
                    break
    return min(limits) if limits else None


def _up_to(mount: Path, path: str) -> list[Path]:
    """``mount/path`` and each of its parents down to ``mount``, the ones that exist."""
    parts = [p for p in path.strip("/").split("/") if p and p != ".."]
    folders = [mount.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]
    return [f for f in folders if f.is_dir()]


def _read_limit(quota_file: Path, period_file: Path | None) -> list[float]:
    try:
        if period_file is None:
            quota, period = quota_file.read_text().split()[:2]
        else:
            quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
        q, p = int(quota), int(period)
    except (OSError, ValueError):  # no file, or "max": no limit at this level
        return []
    return [q / p] if q > 0 and p > 0 else []  # v1 writes -1 for no limit


def slurm_cpus(env: Mapping[str, str]) -> int | None:
    """``SLURM_CPUS_PER_TASK``: the CPUs a SLURM job step asked for (set with ``--cpus-per-task``)."""
    return _positive_int(env.get("SLURM_CPUS_PER_TASK"))


def idle_cpus(cpus: Iterable[int] | None = None, window: float = IDLE_WINDOW_S, stat: Path = PROC_STAT) -> float | None:
    """How many of ``cpus`` (default: the affinity mask) sat idle over a short window, summed as
    fractions (1.6: one CPU idle and another idle 60 % of the time). Read from the per-CPU lines
    of /proc/stat; stolen time (a busy VM host) counts as busy. None where it cannot be read."""
    if cpus is None:
        try:
            cpus = os.sched_getaffinity(0)
        except (AttributeError, OSError):
            cpus = None
    first = cpu_times(stat)
    if not first:
        return None
    time.sleep(window)
    return idle_between(first, cpu_times(stat), cpus)


def idle_between(first: Mapping[int, tuple[int, int]], second: Mapping[int, tuple[int, int]],
                 cpus: Iterable[int] | None = None) -> float | None:
    """Idle CPUs (summed fractions) between two :func:`cpu_times` samples, over ``cpus``."""
    wanted = set(first) & set(second) & (set(first) if cpus is None else set(cpus))
    idle = 0.0
    for cpu in wanted:
        (idle0, total0), (idle1, total1) = first[cpu], second[cpu]
        if total1 > total0:
            idle += (idle1 - idle0) / (total1 - total0)
    return idle if wanted else None


def cpu_times(stat: Path = PROC_STAT) -> dict[int, tuple[int, int]]:
    """cpu number -> (idle + iowait, total) ticks, from /proc/stat's ``cpuN`` lines."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *fields = line.split()
            ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
            out[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))
    return out


def in_joblib_worker() -> bool:
    """Whether this process is a worker of a joblib/loky pool (e.g. ``hydra/launcher=joblib``):
    loky counts the nesting depth of its workers in the executor module, > 0 inside one."""
    for name in ("joblib.externals.loky.process_executor", "loky.process_executor"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "_CURRENT_DEPTH", 0) > 0:
            return True
    return False


def _positive_int(value: str | None) -> int | None:
    # OMP_NUM_THREADS may list one count per nesting level ("4,2"): the first is this level's.
    try:
        n = int(str(value).split(",")[0].strip())
    except ValueError:
        return None
    return n if n >= 1 else None


@dataclass
class Probes:
    """Where :func:`resolve_threads` looks. Unset fields take this module's functions and
    ``os.environ`` when the probes are made (each run), so tests can replace either."""

    env: Mapping[str, str] | None = None
    affinity: Callable[[], int] | None = None
    cgroup: Callable[[], float | None] | None = None
    joblib_worker: Callable[[], bool] | None = None
    idle: Callable[[], float | None] | None = None

    def __post_init__(self) -> None:
        self.env = os.environ if self.env is None else self.env
        self.affinity = self.affinity or affinity_cpus
        self.cgroup = self.cgroup or cgroup_cpu_quota
        self.joblib_worker = self.joblib_worker or in_joblib_worker
        self.idle = self.idle or idle_cpus


# ------------------------------------------------------------------------------ policy


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    source: str  # why, in words
    cpus: int | None = None  # the usable CPUs, where they were looked at
    wait_policy: str = "spin"
    idle_cpus: float | None = None  # how many of them were idle when the run started, where measured

    def record(self) -> dict[str, Any]:
        """What the run puts into summary.json under ``threads``."""
        return {"threads": self.threads, "source": self.source, "cpus": self.cpus,
                "idle_cpus": None if self.idle_cpus is None else round(self.idle_cpus, 2),
                "wait_policy": self.wait_policy}


def wait_policy(env: Mapping[str, str]) -> tuple[str, bool]:
    """``(policy in words, whether more than one thread is safe)`` from the variables libgomp read
    when torch loaded (the environment now: nothing in stm_lab changes them after that)."""
    policy = env.get("OMP_WAIT_POLICY", "").strip().upper()
    spin = env.get("GOMP_SPINCOUNT", "").strip()
    if policy == "PASSIVE" or spin == "0":
        return "passive", True
    if policy or spin:  # the user chose how threads wait (ACTIVE, a spin count): theirs to judge
        return f"user-set ({', '.join(f'{k}={env[k]}' for k in WAIT_VARS if env.get(k))})", True
    return "spin", False


def usable_cpus(probes: Probes) -> tuple[int, str]:
    """The CPUs this process can use, and which limit set the number."""
    affinity = probes.affinity()
    found = [(affinity, f"affinity {affinity}")]
    quota = probes.cgroup()
    if quota is not None:
        found.append((max(1, math.ceil(quota - 1e-9)), f"cgroup quota {quota:g} CPUs"))
    slurm = slurm_cpus(probes.env)
    if slurm is not None:
        found.append((slurm, f"SLURM_CPUS_PER_TASK={slurm}"))
    n = min(c for c, _ in found)
    return n, ", ".join(words for _, words in found)


def check_setting(value: Any) -> int | str:
    """``auto`` or an integer >= 1; anything else is a ConfigError naming ``runtime.threads``."""
    if value == "auto" and isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(KEY, value, "auto or an integer >= 1")


def resolve_threads(setting: Any = "auto", probes: Probes | None = None) -> ThreadChoice:
    """The thread count for ``runtime.threads = setting`` in this process (see the module's text)."""
    setting = check_setting(setting)
    probes = probes or Probes()
    env = probes.env
    wait, several_ok = wait_policy(env)
    if isinstance(setting, int):
        return ThreadChoice(setting, f"{KEY}={setting}", wait_policy=wait)
    omp = _positive_int(env.get("OMP_NUM_THREADS"))
    if omp is not None:
        who = ("set by joblib for its worker (cpu_count // n_jobs, or the sweep's own value)"
               if probes.joblib_worker() else "in the environment")
        return ThreadChoice(omp, f"auto: OMP_NUM_THREADS={env['OMP_NUM_THREADS']} {who}", wait_policy=wait)
    cpus, limits = usable_cpus(probes)
    if cpus == 1:
        return ThreadChoice(1, f"auto: 1 usable CPU ({limits})", cpus=1, wait_policy=wait)
    if not several_ok:
        return ThreadChoice(1, f"auto: 1 of {cpus} usable CPUs ({limits}): OpenMP threads spin-wait "
                            "(OMP_WAIT_POLICY was unset when torch loaded), and several spinning threads "
                            "stall when another process wants the CPUs; `python -m stm_lab` sets "
                            "OMP_WAIT_POLICY=PASSIVE before torch loads", cpus=cpus, wait_policy=wait)
    idle = probes.idle()
    if idle is None:
        return ThreadChoice(cpus, f"auto: {cpus} usable CPUs ({limits}), idle ones unknown; threads "
                            f"wait {wait}", cpus=cpus, wait_policy=wait)
    n = max(1, min(cpus, math.floor(idle + 0.5)))
    busy = "" if n == cpus else ", other processes were using the rest"
    return ThreadChoice(n, f"auto: {n} of {cpus} usable CPUs ({limits}); {idle:.1f} idle over "
                        f"{IDLE_WINDOW_S:g} s{busy}; threads wait {wait}", cpus=cpus, wait_policy=wait,
                        idle_cpus=idle)


def apply_thread_policy(cfg: Mapping[str, Any], probes: Probes | None = None) -> dict[str, Any]:
    """Resolve ``cfg.runtime.threads``, set torch's intra-op threads, return the summary record.

    The one call a run makes before training (stm_lab.run.train)."""
    runtime = cfg.get("runtime") or {}
    for key in runtime:
        if key != "threads":
            raise ConfigError(f"runtime.{key}", runtime[key], ["threads"], hint="unknown key")
    choice = resolve_threads(runtime.get("threads", "auto"), probes)
    import torch

    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice.record()


def prepare_wait_policy(env: MutableMapping[str, str] | None = None, torch_loaded: bool | None = None) -> str | None:
    """Before torch loads (``python -m stm_lab`` calls this first): make OpenMP threads wait
    passively, unless the user chose a wait policy. Returns what was set, None if nothing.

    Sweep workers inherit the variable: joblib's loky workers and SLURM jobs start from this
    process's environment."""
    env = os.environ if env is None else env
    loaded = "torch" in sys.modules if torch_loaded is None else torch_loaded
    if loaded or any(env.get(k) for k in WAIT_VARS):
        return None
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return "PASSIVE"
