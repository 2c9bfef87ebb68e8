"""Checks before anything runs: folders that cannot be written, and sizes that cannot fit in memory.

- :class:`CheckFolders`, a Hydra callback (conf/hydra/default.yaml), tries the run's (or the
  sweep's) folder and the data cache before Hydra writes anything there: a folder that cannot
  be created or written is one line and exit code 2, not a traceback from Hydra.
- :func:`check_memory`, called by the build step once the task's spec is known and before any
  data is generated or any weight allocated, estimates the largest allocations the run will make
  from the task's sizes (the splits, a batch of one-hot inputs and of output scores, the
  memoryless baseline's table, the input and output layers) and refuses a run that needs more
  than the memory available, naming the keys that set those sizes.

No torch here: the callback runs in Hydra's process before the run imports anything heavy.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from stm_lab.errors import ConfigError
from stm_lab.runfolder import writable_dir

GiB = 2**30


# ------------------------------------------------------------------------- folders


class CheckFolders(Callback):
    """Before a run or a sweep starts: its folder and the data cache must be writable."""

    def _check(self, config: DictConfig, folder_key: str) -> None:
        for key in (folder_key, "paths.cache_dir"):
            try:
                value = OmegaConf.select(config, key)
            except Exception:  # an interpolation that cannot resolve here is left to the run
                continue
            if value in (None, ""):
                continue
            path = Path(str(value)).expanduser()
            problem = writable_dir(path)
            if problem:
                print(f"stm_lab: cannot write {path} ({key}): {problem}; choose a writable folder "
                      f"({key}=... or paths.log_dir=...)", file=sys.stderr)
                sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")


# -------------------------------------------------------------------------- memory


def available_memory() -> int | None:
    """Bytes this process can still allocate: the system's available memory, or the container's
    (cgroup) limit less its usage when that is lower. None when it cannot be told."""
    found: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        try:
            import psutil

            found.append(int(psutil.virtual_memory().available))
        except Exception:
            pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            found.append(max(int(limit) - usage, 0))
    return min(found) if found else None


def _size_keys(task: Any, spec: Any) -> dict[str, list[str]]:
    """Which task parameters set the sequence length, the input size and the output size: each
    integer parameter is nudged and the spec compared (only when a message needs them)."""
    keys: dict[str, list[str]] = {"seq_len": [], "input_size": [], "output_size": []}
    for field in dataclasses.fields(task):
        value = getattr(task, field.name)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        for nudged in (value + 1, value - 1, value * 2):
            try:
                other = dataclasses.replace(task, **{field.name: nudged}).spec
            except Exception:  # a value the task refuses: try another
                continue
            for attr, names in keys.items():
                if getattr(other, attr) != getattr(spec, attr):
                    names.append(f"data.{field.name}")
            break
    return keys


def _fmt(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", GiB), ("MiB", 2**20)):
        if n >= size or unit == "MiB":
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def memory_needed(cfg: DictConfig, task: Any, spec: Any) -> list[tuple[str, int, str]]:
    """The run's largest allocations that grow with the task's sizes: ``(what, bytes, how it is
    counted)``. An estimate from the spec and the config, made before anything is allocated."""
    data = cfg.data
    n = sum(int(data.get(k) or 0) for k in ("n_train", "n_val", "n_test"))
    batch = int(data.get("batch_size") or 0)
    steps = int(spec.seq_len)
    tokens = spec.input_kind == "tokens"
    x_bytes = 8 if tokens else 4 * spec.input_size
    y_bytes = 8 if spec.is_classification else 4 * spec.output_size
    items = [("the generated splits", 2 * n * steps * (x_bytes + y_bytes + 1),
              f"{n} sequences (data.n_train + data.n_val + data.n_test) × {steps} steps × "
              f"{x_bytes + y_bytes + 1} bytes, twice over while they are made and cached")]
    if tokens and cfg.get("embedding_dim") is None:
        items.append(("a batch of one-hot inputs", batch * steps * spec.input_size * 4,
                      f"data.batch_size={batch} × {steps} steps × {spec.input_size} tokens × 4 bytes; "
                      "embedding_dim=... avoids it"))
    if spec.is_classification:
        items.append(("a batch of output scores", batch * steps * spec.output_size * 4,
                      f"data.batch_size={batch} × {steps} steps × {spec.output_size} classes × 4 bytes"))
        if tokens:
            items.append(("the memoryless baseline's token-by-answer table", spec.input_size * spec.output_size * 8,
                          f"{spec.input_size} tokens × {spec.output_size} classes × 8 bytes"))
    hidden = (cfg.get("cell") or {}).get("hidden_size")
    if isinstance(hidden, int) and hidden > 0:
        width = cfg.get("embedding_dim") or spec.input_size
        # Weights, gradients and two optimiser moments: 4 copies of 4 bytes.
        items.append(("the input and output layers", (width + spec.output_size) * hidden * 16,
                      f"({width} inputs + {spec.output_size} outputs) × cell.hidden_size={hidden} × 16 bytes"))
    return items


def check_memory(cfg: DictConfig, task: Any, spec: Any, available: int | None = None) -> None:
    """A ConfigError (one line, naming the keys) when the estimate exceeds the memory available."""
    available = available_memory() if available is None else available
    if available is None:
        return
    items = sorted(memory_needed(cfg, task, spec), key=lambda item: -item[1])
    total = sum(size for _, size, _ in items)
    if total <= available:
        return
    sizes = _size_keys(task, spec)

    def keys_of(what: str) -> Iterable[str]:
        if what == "the generated splits":
            return ["data.n_train", "data.n_val", "data.n_test", *sizes["seq_len"]]
        if what.startswith("a batch"):
            attr = "input_size" if "input" in what else "output_size"
            return ["data.batch_size", *sizes["seq_len"], *sizes[attr]]
        if what.startswith("the memoryless"):
            return [*sizes["input_size"], *sizes["output_size"]]
        return ["cell.hidden_size", *sizes["input_size"], *sizes["output_size"]]

    big = [item for item in items if item[1] >= 0.1 * total][:2]
    keys = [k for k in dict.fromkeys(k for what, _, _ in big for k in keys_of(what)) if OmegaConf.select(cfg, k) is not None]
    raise MemoryCheckError(keys, {k: OmegaConf.select(cfg, k) for k in keys},
                           f"need about {_fmt(total)} of memory, more than the {_fmt(available)} available: "
                           + "; ".join(f"{what} {_fmt(size)} ({how})" for what, size, how in big))


class MemoryCheckError(ConfigError):
    """Sizes (several keys together) that make a run need more memory than there is."""

    def __init__(self, keys: list[str], values: dict[str, Any], why: str) -> None:
        self.key, self.value = (keys[0] if keys else "data"), values
        given = ", ".join(f"{k}={v}" for k, v in values.items())
        ValueError.__init__(self, f"config keys {given} {why}")


__all__ = ["CheckFolders", "MemoryCheckError", "available_memory", "check_memory", "memory_needed"]
