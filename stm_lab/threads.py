"""How many CPU threads a run computes with, how they wait, and why.

Most stm_lab runs are small recurrent networks: each time step is a handful of small matrix
products, so a training step is hundreds of short OpenMP parallel regions. How the threads of
those regions wait for each other decides the speed more than the arithmetic does:

- torch's CPU build uses GNU OpenMP (libgomp). By default an idle worker thread spins for a
  while (~10 ms on the development machine) before it sleeps. When another process competes for
  the cores, a spinning thread burns the core that its team-mate needs, and every region waits
  for the slowest thread: measured, the default two threads on two cores made training 8-17x
  slower with other work on the machine, while one thread lost little (benchmarks/threads.md).
- With ``OMP_WAIT_POLICY=PASSIVE`` the workers sleep at once; under load they then cost about
  what one thread costs, and idle they kept the speed of two threads in the step-time tests.
  libgomp reads the variable once, when torch loads it: set afterwards it does nothing
  (measured by the CPU time workers burn while the main thread sleeps). So ``python -m stm_lab``
  sets it before anything imports torch (:func:`prepare_wait_policy`), unless the user chose a
  wait policy. Intel OpenMP's ``KMP_*`` variables do not apply: this torch links libgomp only.

The thread count (``runtime.threads`` in conf/config.yaml) is ``auto`` or an integer; an integer
always wins. ``auto`` resolves, in this order:

1. ``OMP_NUM_THREADS`` in the environment is honoured, as torch and numpy honour it. This
   is also how a joblib (loky) sweep worker is told its share: joblib starts each worker with
   ``OMP_NUM_THREADS = cpu_count() // n_jobs`` (or the value the sweep itself was started with),
   so honouring it is what keeps parallel jobs from oversubscribing the cores.
2. Otherwise the usable CPUs: the smallest of the affinity mask (``os.sched_getaffinity``),
   the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``, rounded up as joblib does) and
   ``SLURM_CPUS_PER_TASK``.
3. All of them when the threads wait passively (or the user chose a wait policy); one when they
   spin-wait by default, i.e. when torch was loaded before the wait policy could be set (stm_lab
   used as a library in an already running Python), where a second thread risks the stall above.

The model size is not an input: torch runs an operation on one thread when it has fewer than
32768 elements to work through, so a small model stays single-threaded by itself. The interop
thread pool is left alone: these runs do not use it (no ``torch.jit.fork``), and torch refuses
to resize it once it has started.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stm_lab.errors import ConfigError

KEY = "runtime.threads"
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # what libgomp reads (at load) to decide how to wait
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


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

    def __post_init__(self) -> None:
        self.env = os.environ if self.env is None else self.env
        self.affinity = self.affinity or affinity_cpus
        self.cgroup = self.cgroup or cgroup_cpu_quota
        self.joblib_worker = self.joblib_worker or in_joblib_worker


# ------------------------------------------------------------------------------ policy


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    source: str  # why, in words
    cpus: int | None = None  # the usable CPUs, where they were looked at
    wait_policy: str = "spin"

    def record(self) -> dict[str, Any]:
        """What the run puts into summary.json under ``threads``."""
        return {"threads": self.threads, "source": self.source, "cpus": self.cpus,
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
    if several_ok or cpus == 1:
        return ThreadChoice(cpus, f"auto: {cpus} usable CPUs ({limits}); threads wait {wait}",
                            cpus=cpus, wait_policy=wait)
    return ThreadChoice(1, f"auto: 1 of {cpus} usable CPUs ({limits}): OpenMP threads spin-wait "
                        "(OMP_WAIT_POLICY was unset when torch loaded), and several spinning threads "
                        "stall when another process wants the CPUs; `python -m stm_lab` sets "
                        "OMP_WAIT_POLICY=PASSIVE before torch loads", cpus=cpus, wait_policy=wait)


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
