"""A run's identity: a hash of what it computes, not of where it lives.

Folders are where runs live, not what they are. Two runs with the same identity train the
same model on the same data with the same settings; they may differ only in the keys listed
in :data:`IDENTITY_EXCLUDED` (where files go, how progress is shown or logged, how the job is
started). summary.json records the identity (``identity``); ``skip_completed`` finds a
completed run by it anywhere in a sweep folder, and a job never writes over a completed run
of another identity.

A grid sweep's job folders are named from the job's overrides by the same rule
(:func:`job_dirname`, used as ``hydra.sweep.subdir``), so the same point of a grid lands in
the same folder however the sweep was spelled or ordered.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

# Keys (and everything below them) that never enter a run's identity:
IDENTITY_EXCLUDED = (
    "hydra",                         # Hydra's own node (where a config still carries it)
    "paths",                         # folders: output, checkpoints, data cache, log root
    "logger",                        # where metrics are sent (W&B, CSV, none)
    "tags",                          # W&B labels
    "skip_completed", "ckpt_path",   # how a job is started (ckpt_path: where to resume from)
    "runtime",                       # CPU threads: how fast, not what (stm_lab/threads.py)
    "launcher",                      # where jobs run (launcher=slurm sets only hydra.launcher)
    "optimized_metric",              # which metric a sweeper reads back; the run is the same
    "callbacks.progress_bar",        # display only
    "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "trainer.log_every_n_steps",     # how often loggers write; training is the same
    "trainer.default_root_dir",      # a folder
)
# Besides these, any string value inside the run's own folder (``paths.output_dir``), such as a
# callback's ``dirpath``, is a location and is left out too.

SUMMARY = "summary.json"
# Sub-folders of a sweep that never hold a run of their own (pruned when looking runs up).
NOT_RUNS = {"wandb", "checkpoints", "csv", ".hydra", ".submitit", "replaced"}


def _excluded(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in IDENTITY_EXCLUDED)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def identity_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The dotted keys and values that make a run what it is (JSON-normalised: a tuple and a
    list compare equal, as they do once a summary is written)."""
    plain = json.loads(json.dumps(config, default=str))
    out_dir = str((plain.get("paths") or {}).get("output_dir") or "") or None

    def inside_run_folder(value: Any) -> bool:
        return bool(out_dir) and isinstance(value, str) and (value == out_dir or value.startswith(out_dir + os.sep))

    return {k: v for k, v in _flat(plain).items() if not _excluded(k) and not inside_run_folder(v)}


def run_identity(config: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of :func:`identity_config`."""
    blob = json.dumps(identity_config(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def identity_of(summary: Mapping[str, Any]) -> str | None:
    """The identity a summary records, or (summaries written before it was recorded) the one
    computed from its stored config."""
    if summary.get("identity"):
        return str(summary["identity"])
    config = summary.get("config")
    return run_identity(config) if isinstance(config, Mapping) else None


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two configs, excluded keys aside."""
    fa, fb = identity_config(a), identity_config(b)
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k, None) != fb.get(k, None) or (k in fa) != (k in fb))


def describe_diff(a: Mapping[str, Any], b: Mapping[str, Any], limit: int = 4) -> str:
    """``seed: 0 → 2, cell.hidden_size: 16 → 32`` (at most ``limit`` keys)."""
    fa, fb = identity_config(a), identity_config(b)
    keys = config_diff(a, b)
    parts = [f"{k}: {fa.get(k, '(absent)')!s} → {fb.get(k, '(absent)')!s}" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"{len(keys) - limit} more")
    return ", ".join(parts)


# ------------------------------------------------------------------ finding runs


def summaries_under(root: Path, wanted: Callable[[Path], bool] | None = None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every readable summary.json at or below ``root`` (a run folder, or a sweep folder of them)
    that ``wanted`` (given the file) does not rule out."""
    for folder, dirs, files in os.walk(root):
        if SUMMARY in files:
            dirs[:] = []  # runs do not nest
            if wanted is not None and not wanted(Path(folder) / SUMMARY):
                continue
            try:
                with open(Path(folder) / SUMMARY) as f:
                    summary = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(summary, dict):
                yield Path(folder), summary
        else:
            dirs[:] = sorted(d for d in dirs if d not in NOT_RUNS)


_HEAD_IDENTITY = re.compile(r'"identity": "([0-9a-f]+)"')


def _may_match(summary_file: Path, identity: str) -> bool:
    """From the first bytes of a summary (status and identity come first): False when it is
    surely another run or not completed, so a sweep of thousands is not parsed in full."""
    try:
        with open(summary_file, "rb") as f:
            head = f.read(400).decode("utf-8", "replace")
    except OSError:
        return False
    found = _HEAD_IDENTITY.search(head)
    if found is None:  # a summary from before identities were recorded: read it in full
        return True
    return found.group(1) == identity and '"status": "completed"' in head


def find_completed(root: Path, identity: str, prefer: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    """A completed run of this identity at or below ``root``; ``prefer`` (the job's own folder)
    is looked at first."""
    places = ([prefer] if prefer is not None else []) + [root]
    for place in places:
        if not place.is_dir():
            continue
        for folder, summary in summaries_under(place, lambda path: _may_match(path, identity)):
            if summary.get("status") == "completed" and identity_of(summary) == identity:
                return folder, summary
    return None


# ------------------------------------------------------------- sweep job folders

# Characters kept as they are in a folder name; anything else makes the name hashed.
_SAFE = re.compile(r"[^A-Za-z0-9._=,+@-]")
MAX_NAME = 64


def _override_key(line: str) -> str:
    key = line.split("=", 1)[0].lstrip("+~")
    return key.split("@", 1)[0]


def job_dirname(overrides: Sequence[str]) -> str:
    """A sweep job's folder name from its overrides: ``cell=gru,seed=1`` (sorted, the keys of
    :data:`IDENTITY_EXCLUDED` left out; ``default`` when none is left). When that is longer than
    64 characters or holds characters unsafe in a file name: a readable prefix (the overrides in
    command-line order, where the swept keys usually come first) and 10 hex digits of the hash
    of the sorted overrides: ``seed=2,data.delay=3,data.list_length=3,data.num_s-3f9c0a1b2e``.

    The folder is a convenience, not the identity: ``skip_completed`` finds a completed run by
    its identity anywhere in the sweep folder, whatever its folder is called."""
    kept = [str(o) for o in overrides if not _excluded(_override_key(str(o)))]
    name = ",".join(sorted(kept))
    if not name:
        return "default"
    if _SAFE.sub("_", name) == name and len(name) <= MAX_NAME and not name.startswith("."):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    readable = _SAFE.sub("_", ",".join(kept))[:MAX_NAME - 11].strip("._,")
    return f"{readable}-{digest}"


RESOLVER = "stm_lab.job_dir"


def register_resolver() -> None:
    """``${stm_lab.job_dir:${hydra.overrides.task}}``, the job folder of a grid sweep
    (conf/hydra/default.yaml). Registered when stm_lab.config is imported."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, lambda overrides: job_dirname(list(overrides or [])))
