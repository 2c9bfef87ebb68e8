"""CPU thread policies under load: the default run and the step-time grid, idle and busy.

THE FULL MEASUREMENT (on a quiet machine: nothing else running; takes 1-3 hours on 2 cores):

    python benchmarks/threads.py --out results/threads-$(date +%Y%m%d)
    python benchmarks/threads.py --sweep --out results/threads-$(date +%Y%m%d)-sweep

Smoke test (1 repeat, tiny sizes, idle and 1 competitor; minutes on a quiet machine):

    python benchmarks/threads.py --quick --out /tmp/threads-quick
    python benchmarks/threads.py --sweep --quick --out /tmp/threads-sweep-quick

What it measures (see benchmarks/threads.md):

(a) the default run, ``python -m stm_lab`` (``--epochs N`` shortens it): wall time of the
    command (start-up included) and the run's own ``wall_time_s`` from summary.json;
(b) the raw training step of benchmarks/step_time.py (encoder, core, head, Adam, clipping; one
    batch resident) for each cell and B×T×H point of ``--cells`` × ``--grid``, in ms/step;

for each thread policy (``--policies``):

    torch     torch's default: its own thread count, OpenMP's default spin-waiting
              (GOMP_SPINCOUNT=300000 is libgomp's default when OMP_WAIT_POLICY is unset; set
              explicitly so that ``python -m stm_lab`` leaves the wait policy alone)
    one       runtime.threads=1
    passive   torch's thread count with OMP_WAIT_POLICY=PASSIVE
    affinity  as many threads as CPUs in the affinity mask, default spin-waiting (a naive auto)
    auto      the product: runtime.threads=auto under ``python -m stm_lab`` (stm_lab/threads.py)
    spin:N    (extra, for experiments) torch's thread count, GOMP_SPINCOUNT=N

with 0, 1 and 2 competing CPU-bound processes (``--loads``): each is a pure-Python busy loop
(one core, no threads, next to no memory traffic), started before and stopped after each group
of measurements by this script (and ending by itself if the script is killed). Every measurement runs in a fresh process, so
that the OpenMP settings are read as torch loads. Repeats interleave everything: each repeat
goes through the load levels and, within each, the policies in an order rotated by one.

``--sweep`` instead times K default-sized runs (``--jobs``, 8) as one multirun, sequential
(Hydra's basic launcher) against ``hydra/launcher=joblib hydra.launcher.n_jobs=2``, idle, under
the product's policy; issue 17's target is a speed-up >= 1.8.

Outputs in ``--out``: ``results.json`` (machine, versions, load, every measurement),
``measurements.csv`` (one row per measurement), ``summary.csv`` (median, min, max, quartiles per
cell of the table) and ``table.md`` (what is printed). Thread variables inherited from the
calling shell (OMP_NUM_THREADS, OMP_WAIT_POLICY...) are removed from the measured processes.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from cpu_model import cpu_model

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ("torch", "one", "passive", "affinity", "auto")
# Inherited settings that would decide the outcome for every policy alike: removed.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY",
               "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "TORCH_NUM_THREADS", "SLURM_CPUS_PER_TASK")
LIBGOMP_DEFAULT_SPIN = "300000"  # libgomp's spin count when OMP_WAIT_POLICY is unset
# One core of pure-Python work, no threads; it ends by itself soon after this script does.
BUSY_LOOP = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    for _ in range(10**6): pass"
QUICK_RUN = ["data.n_train=512", "data.n_val=128", "data.n_test=128"]


# ------------------------------------------------------------------------ environment


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.setdefault("WANDB_MODE", "offline")
    env.setdefault("WANDB_SILENT", "true")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def torch_default_threads(env: dict[str, str]) -> int:
    """torch's own intra-op thread count in a clean process (MKL may count physical cores)."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def policy_setup(policy: str, torch_threads: int) -> tuple[dict[str, str], str]:
    """(environment variables, ``runtime.threads`` value) for a policy."""
    spin = {"GOMP_SPINCOUNT": LIBGOMP_DEFAULT_SPIN}
    if policy.startswith("spin:"):  # torch's thread count, libgomp spinning this many rounds
        return {"GOMP_SPINCOUNT": policy.split(":", 1)[1]}, str(torch_threads)
    return {
        "torch": (spin, str(torch_threads)),
        "one": ({}, "1"),
        "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, str(torch_threads)),
        "affinity": (spin, str(affinity())),
        "auto": ({}, "auto"),
    }[policy]


@contextlib.contextmanager
def competitors(n: int):
    """``n`` busy-loop processes for the duration of the block; always stopped."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(n)]
    try:
        if procs:
            time.sleep(0.5)  # let the scheduler spread them
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine(env: dict[str, str]) -> dict[str, Any]:
    cpu = cpu_model()
    sys.path.insert(0, str(ROOT))
    from stm_lab.threads import cgroup_cpu_quota

    parallel = subprocess.run([sys.executable, "-c", "import torch; print(torch.__config__.parallel_info())"],
                              env=env, capture_output=True, text=True).stdout
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "affinity_cpus": affinity(),
            "cgroup_cpu_quota": cgroup_cpu_quota(), "platform": platform.platform(),
            "python": platform.python_version(), "torch_parallel_info": parallel.strip()}


def versions() -> dict[str, str]:
    out = {}
    for name in ("torch", "lightning", "numpy", "joblib", "hydra-core", "hydra-joblib-launcher", "stm_lab"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["stm_lab_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                               capture_output=True, text=True).stdout.strip()
    return out


# ------------------------------------------------------------------------ measurements


def default_run(policy: str, args: argparse.Namespace, env: dict[str, str], torch_threads: int,
                run_dir: Path) -> dict[str, Any]:
    """(a): ``python -m stm_lab`` as a user types it, plus the policy's settings."""
    extra_env, threads = policy_setup(policy, torch_threads)
    cmd = [sys.executable, "-m", "stm_lab", f"hydra.run.dir={run_dir}", f"runtime.threads={threads}"]
    if args.epochs:
        cmd.append(f"trainer.max_epochs={args.epochs}")
    if args.quick:
        cmd += QUICK_RUN
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env={**env, **extra_env}, cwd=run_dir.parent, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"default run failed ({policy}):\n{r.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"command_s": round(wall, 3), "run_s": summary["wall_time_s"],
            "threads": summary.get("threads", {}).get("threads"),
            "thread_source": summary.get("threads", {}).get("source"),
            "test_acc": summary["metrics"].get("test/acc")}


def step_grid(policy: str, args: argparse.Namespace, env: dict[str, str], torch_threads: int) -> list[dict[str, Any]]:
    """(b): one fresh process runs the whole grid under the policy (``_step`` below)."""
    extra_env, threads = policy_setup(policy, torch_threads)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_step", "--threads", threads, "--cells", args.cells,
           "--grid", args.grid, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    r = subprocess.run(cmd, env={**env, **extra_env}, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"step grid failed ({policy}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def step_worker(argv: list[str]) -> None:
    """The measured process of (b). ``--threads auto`` does what ``python -m stm_lab`` does:
    the wait policy before torch loads, then the thread policy."""
    p = argparse.ArgumentParser()
    p.add_argument("--threads", default="auto")
    p.add_argument("--cells", default="lstm")
    p.add_argument("--grid", default="128x100x128")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    a = p.parse_args(argv)
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    from stm_lab.threads import apply_thread_policy, prepare_wait_policy

    if a.threads == "auto":
        prepare_wait_policy()
    import torch
    from step_time import compose_cfg, parse_grid, raw_step_ms

    step_args = argparse.Namespace(compile=False, precision="32-true", device=torch.device("cpu"),
                                   warmup=a.warmup, steps=a.steps)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cell in a.cells.split(","):
            for B, T, H in parse_grid(a.grid):
                cfg = compose_cfg(cell, B, T, H, a.warmup + a.steps, Path(tmp) / f"{cell}{B}{T}{H}", step_args)
                value = "auto" if a.threads == "auto" else int(a.threads)
                record = apply_thread_policy({"runtime": {"threads": value}})
                ms = raw_step_ms(cfg, step_args.device, step_args)
                rows.append({"cell": cell, "point": f"{B}x{T}x{H}", "ms": round(ms, 3),
                             "threads": torch.get_num_threads(), "thread_source": record["source"]})
    print(json.dumps(rows))


# ------------------------------------------------------------------------ statistics, tables


def spread(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
    return {"n": len(v), "median": statistics.median(v), "min": v[0], "max": v[-1], "q1": q[0], "q3": q[2]}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["what"], r["point"], r["policy"], r["competitors"]), []).append(r["value"])
    out = []
    for (what, point, policy, load), values in groups.items():
        out.append({"what": what, "point": point, "policy": policy, "competitors": load, **spread(values)})
    return out


def table(summary: list[dict[str, Any]], policies: list[str], loads: list[int]) -> str:
    by = {(s["what"], s["point"], s["policy"], s["competitors"]): s for s in summary}
    lines = []
    for what, unit in (("run command", "s"), ("run train+test", "s"), ("raw step", "ms")):
        points = list(dict.fromkeys(s["point"] for s in summary if s["what"] == what))
        if not points:
            continue
        lines += ["", f"### {what} ({unit}): median [min–max], and loaded / idle median", ""]
        busy = [n for n in loads if n] if 0 in loads else []  # ratio columns need the idle one
        head = "| point | policy | " + " | ".join(f"{n} competing" for n in loads)
        head += "".join(f" | {n}/0" for n in busy) + " |"
        lines += [head, "|" + "---|" * (2 + len(loads) + len(busy))]
        for point in points:
            for policy in policies:
                cells = []
                for n in loads:
                    s = by.get((what, point, policy, n))
                    cells.append(f"{s['median']:.4g} [{s['min']:.4g}–{s['max']:.4g}]" if s else "–")
                idle = by.get((what, point, policy, 0))
                ratios = []
                for n in busy:
                    s = by.get((what, point, policy, n))
                    ratios.append(f"{s['median'] / idle['median']:.2f}" if s and idle else "–")
                lines.append(f"| {point} | {policy} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def write_outputs(out: Path, meta: dict[str, Any], rows: list[dict[str, Any]], text: str,
                  summary: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({**meta, "measurements": rows, "summary": summary}, indent=1,
                                                 default=str))
    for name, data in (("measurements.csv", rows), ("summary.csv", summary)):
        if data:
            keys = list(dict.fromkeys(k for r in data for k in r))
            with open(out / name, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=keys)
                w.writeheader()
                w.writerows(data)
    (out / "table.md").write_text(text + "\n")


def header(meta: dict[str, Any]) -> str:
    m, v = meta["machine"], meta["versions"]
    return "\n".join([
        f"# {meta['started']} · {m['cpu']} · {m['logical_cpus']} logical CPUs (affinity {m['affinity_cpus']}, "
        f"cgroup quota {m['cgroup_cpu_quota']}) · python {m['python']}",
        "# " + " · ".join(f"{k} {val}" for k, val in v.items()),
        f"# command: {meta['command']}",
        f"# torch's default threads: {meta['torch_default_threads']}; each competitor: a pure-Python busy loop",
        f"# uptime before: {meta['uptime_before']}",
    ])


# ------------------------------------------------------------------------ main modes


def measure(args: argparse.Namespace) -> None:
    env = clean_env()
    policies, loads = args.policies.split(","), [int(n) for n in args.loads.split(",")]
    unknown = {p for p in policies if p not in POLICIES and not p.startswith("spin:")}
    if unknown:
        sys.exit(f"unknown policies {sorted(unknown)}; known: {', '.join(POLICIES)}")
    parts = args.parts.split(",")
    meta = {"started": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "command": " ".join(sys.argv),
            "machine": machine(env), "versions": versions(), "uptime_before": uptime(),
            "torch_default_threads": torch_default_threads(env), "policies": policies, "loads": loads,
            "competitor": BUSY_LOOP, "args": vars(args)}
    print(header(meta), flush=True)
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="stm_lab-threads-"))
    env["STM_LAB_CACHE"] = str(work / "cache")
    if "run" in parts:  # generate the task's splits once, outside the timings
        default_run("one", args, env, meta["torch_default_threads"], work / "warmup")
    for rep in range(args.repeats):
        for load in loads[rep % len(loads):] + loads[:rep % len(loads)]:
            with competitors(load):
                k = rep % len(policies)
                for policy in policies[k:] + policies[:k]:
                    common = {"repeat": rep, "competitors": load, "policy": policy,
                              "loadavg_1min": round(os.getloadavg()[0], 2),
                              "time": f"{datetime.now(timezone.utc):%H:%M:%S}"}
                    if "run" in parts:
                        r = default_run(policy, args, env, meta["torch_default_threads"],
                                        work / f"run-{rep}-{load}-{policy}")
                        for what, key in (("run command", "command_s"), ("run train+test", "run_s")):
                            rows.append({**common, "what": what, "point": f"{args.epochs or 'default'} epochs",
                                         "value": r[key], "threads": r["threads"],
                                         "thread_source": r["thread_source"], "test_acc": r["test_acc"]})
                        print(f"  rep {rep} · {load} competing · {policy:8} · run {r['command_s']:.1f} s "
                              f"(train+test {r['run_s']:.1f} s, {r['threads']} threads, acc {r['test_acc']:.4f})",
                              flush=True)
                    if "step" in parts:
                        for s in step_grid(policy, args, env, meta["torch_default_threads"]):
                            rows.append({**common, "what": "raw step", "point": f"{s['cell']} {s['point']}",
                                         "value": s["ms"], "threads": s["threads"],
                                         "thread_source": s["thread_source"]})
                            print(f"  rep {rep} · {load} competing · {policy:8} · {s['cell']} {s['point']} "
                                  f"{s['ms']:.1f} ms ({s['threads']} threads)", flush=True)
                    write_outputs(args.out, meta, rows, "(incomplete)", [])  # an interrupted run keeps its data
    meta["uptime_after"] = uptime()
    summary = summarise(rows)
    text = header(meta) + f"\n# uptime after: {meta['uptime_after']}\n" + table(summary, policies, loads)
    accs = {r["test_acc"] for r in rows if r.get("test_acc") is not None}
    if accs:
        text += f"\n\ntest/acc of the default runs: {', '.join(f'{a:.4f}' for a in sorted(accs))}" \
                f" ({'identical' if len(accs) == 1 else 'NOT identical'} across policies and loads)"
    print(text)
    write_outputs(args.out, meta, rows, text, summary)
    print(f"\nwritten: {args.out}/results.json, measurements.csv, summary.csv, table.md")


def sweep(args: argparse.Namespace) -> None:
    """K default-sized runs: one sequential multirun against a joblib one with n_jobs=2."""
    env = clean_env()
    work = Path(tempfile.mkdtemp(prefix="stm_lab-sweep-"))
    env["STM_LAB_CACHE"] = str(work / "cache")
    jobs = 2 if args.quick else args.jobs
    meta = {"started": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "command": " ".join(sys.argv),
            "machine": machine(env), "versions": versions(), "uptime_before": uptime(),
            "torch_default_threads": torch_default_threads(env), "jobs": jobs, "n_jobs": args.n_jobs}
    print(header(meta), flush=True)
    base = [sys.executable, "-m", "stm_lab", "-m", "seed=" + ",".join(map(str, range(jobs))),
            "logger=none", "callbacks.progress_bar=null", f"paths.log_dir={work}"]
    if args.epochs:
        base.append(f"trainer.max_epochs={args.epochs}")
    if args.quick:
        base += QUICK_RUN
    modes = {"sequential": [], "joblib": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.n_jobs}"]}
    subprocess.run([*base[:4], "seed=0", *base[5:], f"hydra.sweep.dir={work}/warmup"], env=env, check=True,
                   capture_output=True)  # splits cached, files warm
    rows = []
    for rep in range(args.repeats):
        order = list(modes) if rep % 2 == 0 else list(modes)[::-1]
        for mode in order:
            sweep_dir = work / f"{mode}-{rep}"
            load = round(os.getloadavg()[0], 2)
            t0 = time.perf_counter()
            r = subprocess.run([*base, *modes[mode], f"hydra.sweep.dir={sweep_dir}"], env=env,
                               capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                raise RuntimeError(f"{mode} sweep failed:\n{r.stderr[-3000:]}")
            summaries = [json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")]
            threads = sorted({s["threads"]["threads"] for s in summaries})
            rows.append({"repeat": rep, "what": "sweep", "point": f"{jobs} runs", "policy": mode,
                         "competitors": 0, "value": round(wall, 3), "loadavg_1min": load,
                         "threads": "/".join(map(str, threads)),
                         "completed": sum(s["status"] == "completed" for s in summaries)})
            print(f"  rep {rep} · {mode:10} {wall:7.1f} s · threads per run {threads} · "
                  f"{rows[-1]['completed']}/{jobs} completed · load {load}", flush=True)
    meta["uptime_after"] = uptime()
    summary = summarise(rows)
    by = {s["policy"]: s for s in summary}
    speedups = [a["value"] / b["value"] for a, b in zip(
        (r for r in rows if r["policy"] == "sequential"), (r for r in rows if r["policy"] == "joblib"), strict=True)]
    text = header(meta) + f"\n# uptime after: {meta['uptime_after']}\n\n"
    text += "| mode | wall s, median [min–max] |\n|---|---|\n"
    text += "\n".join(f"| {m} | {by[m]['median']:.1f} [{by[m]['min']:.1f}–{by[m]['max']:.1f}] |" for m in modes)
    text += (f"\n\nspeed-up sequential / joblib n_jobs={args.n_jobs}: median {statistics.median(speedups):.2f} "
             f"[{min(speedups):.2f}–{max(speedups):.2f}] over {len(speedups)} paired repeats (target >= 1.8)")
    print(text)
    summary.append({"what": "speed-up", "point": f"{jobs} runs", "policy": f"sequential/joblib{args.n_jobs}",
                    "competitors": 0, **spread(speedups)})
    write_outputs(args.out, meta, rows, text, summary)
    print(f"\nwritten: {args.out}/results.json, measurements.csv, summary.csv, table.md")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_step"]:
        return step_worker(argv[1:])
    # SIGTERM (a timeout, a cluster) unwinds like Ctrl-C, so the competitors are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for results.json, *.csv, table.md")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 repeat, tiny run and grid")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--loads", default="0,1,2", help="numbers of competing busy-loop processes")
    p.add_argument("--parts", default="run,step", help="run (the default run), step (the step grid)")
    p.add_argument("--epochs", type=int, default=0, help="trainer.max_epochs of the runs (0: the config's)")
    p.add_argument("--cells", default="rnn,lstm,gru")
    p.add_argument("--grid", default="32x50x64,128x100x128", help="BxTxH points of the step grid")
    p.add_argument("--steps", type=int, default=10, help="timed steps per point")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--sweep", action="store_true", help="time a joblib sweep against a sequential one")
    p.add_argument("--jobs", type=int, default=8, help="--sweep: runs in the sweep")
    p.add_argument("--n-jobs", type=int, default=2, help="--sweep: hydra.launcher.n_jobs")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.epochs = 1, args.epochs or 1
        args.loads = args.loads if "--loads" in argv else "0,1"
        args.cells, args.grid, args.steps, args.warmup = "lstm", "32x50x64", 3, 1
    if args.sweep:
        if "--repeats" not in argv and not args.quick:
            args.repeats = 3
        sweep(args)
    else:
        measure(args)


if __name__ == "__main__":
    main()
