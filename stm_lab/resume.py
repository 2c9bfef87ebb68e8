"""Picking up where a run stopped: resume an interrupted run, skip a completed one.

A run is identified by its output folder plus its resolved config: re-running the same
command in the same folder (``hydra.run.dir=...``, or the same ``hydra.sweep.dir`` for a
multirun) finds the previous ``summary.json`` there and compares configs, ignoring the
keys that only say *how* to run (``RUN_CONTROL_KEYS``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from stm_lab.errors import ConfigError
from stm_lab.summary import read_summary

# Keys that change how a job is started, not what it computes.
RUN_CONTROL_KEYS = ("skip_completed", "ckpt_path", "runtime")  # runtime: CPU threads (stm_lab/threads.py)
# Statuses a run resumes from automatically: it stopped on a signal, or died without a word.
RESUMABLE = ("interrupted", "running")


def previous_summary(out_dir: str | Path) -> dict[str, Any] | None:
    try:
        return read_summary(out_dir)
    except (OSError, json.JSONDecodeError):  # none yet (writes are atomic: never half a file)
        return None


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two resolved configs (run-control keys aside)."""
    def flat(c: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(c, dict):
            return {k: v for key, val in c.items() for k, v in flat(val, f"{prefix}{key}.").items()}
        return {prefix[:-1]: c}

    # Through JSON, as summaries store them: tuples and lists compare equal.
    fa, fb = (flat(json.loads(json.dumps(c, default=str))) for c in (a, b))
    return sorted(k for k in fa.keys() | fb.keys()
                  if k.split(".")[0] not in RUN_CONTROL_KEYS and fa.get(k) != fb.get(k))


def same_job(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return not config_diff(a, b)


def is_completed(previous: dict[str, Any] | None, config: dict[str, Any]) -> bool:
    """The folder holds a completed run of this very config."""
    return bool(previous) and previous.get("status") == "completed" and same_job(previous.get("config", {}), config)


def resume_checkpoint(ckpt_path: str | None, previous: dict[str, Any] | None, config: dict[str, Any],
                      ckpt_dir: Path) -> str | None:
    """The checkpoint ``fit`` starts from: ``ckpt_path`` if given (``last``: the newest
    ``last.ckpt`` of this run), else this folder's ``last.ckpt`` when the previous run of the
    same config here was interrupted or died, else None (a fresh start)."""
    last = ckpt_dir / "last.ckpt"
    if ckpt_path == "last":
        if not last.exists():
            raise ConfigError("ckpt_path", "last", "a checkpoint file, or 'last' when "
                              f"{last} exists", hint="nothing to resume in this output folder")
        ckpt_path = str(last)
    if ckpt_path is not None:
        if not Path(ckpt_path).is_file():
            raise ConfigError("ckpt_path", ckpt_path, "an existing checkpoint file, or 'last'")
        return str(ckpt_path)
    if previous and previous.get("status") in RESUMABLE and last.exists():
        if same_job(previous.get("config", {}), config):
            print(f"stm_lab: resuming the {previous['status']} run from {last}", file=sys.stderr)
            return str(last)
        differ = ", ".join(config_diff(previous.get("config", {}), config)[:5])
        print(f"stm_lab: {ckpt_dir.parent} holds an unfinished run of another config ({differ} "
              "differ); starting fresh", file=sys.stderr)
    return None
