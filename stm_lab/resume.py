"""Picking up where a run stopped, after checking what it would pick up.

A run is what its config computes (:mod:`stm_lab.identity`), wherever it lives. The run
record (:mod:`stm_lab.record`) decides, from the previous summary in the run's folder and the
identities, whether to skip, resume or start afresh; this module supplies the checks:

- a checkpoint is loaded before it is trusted: a torn or truncated file (a run killed while
  writing it) is named and set aside, and the newest readable checkpoint of the run is used;
- an explicit ``ckpt_path`` must be a readable checkpoint whose model fits this run (same
  parameter names and shapes, same task, same optimizer): otherwise a config error naming
  ``ckpt_path``, not a traceback from deep inside the training loop.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stm_lab.errors import ConfigError
from stm_lab.identity import config_diff, identity_of, run_identity
from stm_lab.summary import read_summary

# Statuses a run resumes from automatically: it stopped on a signal, or died without a word.
RESUMABLE = ("interrupted", "running")
BROKEN = ".broken"  # suffix given to a checkpoint file that cannot be read
# Config keys a checkpoint must share with the run that resumes from it (besides its weights).
MUST_MATCH = ("data.task", "optimizer._target_")


def previous_summary(out_dir: str | Path) -> dict[str, Any] | None:
    try:
        return read_summary(out_dir)
    except (OSError, json.JSONDecodeError):  # none yet (writes are atomic: never half a file)
        return None


def same_job(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return run_identity(a) == run_identity(b)


def is_completed(previous: Mapping[str, Any] | None, config: Mapping[str, Any]) -> bool:
    """The summary is of a completed run of this very config."""
    return bool(previous) and previous.get("status") == "completed" and identity_of(previous) == run_identity(config)


# ------------------------------------------------------------------- checkpoints


class UnreadableCheckpoint(Exception):
    """A checkpoint file that cannot be used; the message says why in a few words."""


def why_unreadable(path: Path, error: BaseException) -> str:
    size = path.stat().st_size if path.exists() else 0
    if size == 0:
        return "an empty file (0 bytes)"
    if not zipfile.is_zipfile(path):
        return f"not a PyTorch checkpoint, or a torn one ({size} bytes; not a complete zip archive)"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"a corrupted checkpoint ({first.split('. ')[0][:160]})"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents (on the CPU), as Lightning would load them to resume; raises
    :class:`UnreadableCheckpoint` for a file that cannot resume a run."""
    import torch

    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torn zip, garbage, EOF: torch raises many kinds
        raise UnreadableCheckpoint(why_unreadable(path, e)) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UnreadableCheckpoint("not a Lightning checkpoint (no state_dict)")
    if "optimizer_states" not in ckpt or "loops" not in ckpt:
        raise UnreadableCheckpoint("weights only (no optimizer or loop state): it cannot resume training")
    return ckpt


def newest_good_checkpoint(ckpt_dir: Path, set_aside: bool = True) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest readable checkpoint in ``ckpt_dir`` (``last.ckpt`` first), and the files that
    could not be read, each renamed ``*.broken`` (kept, never used again) when ``set_aside``:
    only the process that owns the folder renames (the other DDP ranks only read)."""
    if not ckpt_dir.is_dir():
        return None, []
    last = ckpt_dir / "last.ckpt"
    others = sorted((p for p in ckpt_dir.glob("*.ckpt") if p != last), key=lambda p: p.stat().st_mtime, reverse=True)
    broken = []
    for path in ([last] if last.exists() else []) + others:
        try:
            load_checkpoint(path)
        except UnreadableCheckpoint as e:
            aside = path.with_name(path.name + BROKEN)
            if set_aside:
                path.replace(aside)
            broken.append((aside, str(e)))
            continue
        return path, broken
    return None, broken


def explicit_checkpoint(ckpt_path: str, ckpt_dir: Path) -> str:
    """``ckpt_path`` as given (``last``: this run's ``last.ckpt``), checked to be a readable
    checkpoint; a ConfigError naming ``ckpt_path`` otherwise (one line)."""
    if ckpt_path == "last":
        last = ckpt_dir / "last.ckpt"
        if not last.exists():
            raise ConfigError("ckpt_path", "last", f"a checkpoint file, or 'last' when {last} exists",
                              hint="nothing to resume in this output folder")
        ckpt_path = str(last)
    if not Path(ckpt_path).is_file():
        raise ConfigError("ckpt_path", ckpt_path, "an existing checkpoint file, or 'last'")
    try:
        load_checkpoint(ckpt_path)
    except UnreadableCheckpoint as e:
        raise ConfigError("ckpt_path", ckpt_path, "a readable checkpoint file, or 'last'", hint=f"it is {e}") from None
    return str(ckpt_path)


def _flat_get(config: Mapping[str, Any] | None, dotted: str) -> Any:
    node: Any = config or {}
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def check_fits(ckpt_path: str, model: Any, config: Mapping[str, Any]) -> None:
    """The checkpoint's weights fit ``model`` name for name and shape for shape, and it was
    trained on the same task with the same optimizer class (its optimizer state is restored);
    otherwise a ConfigError naming ``ckpt_path`` and what differs."""
    ckpt = load_checkpoint(ckpt_path)
    stored = ckpt.get("stm_lab_config")
    theirs = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if hasattr(v, "shape")}
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = [f"{k} is {theirs[k]} there, {ours[k]} here" for k in sorted(ours.keys() & theirs.keys())
                if theirs[k] != ours[k]]
    missing, extra = sorted(ours.keys() - theirs.keys()), sorted(theirs.keys() - ours.keys())
    if missing:
        problems.append(f"{len(missing)} weight(s) missing there (e.g. {missing[0]})")
    if extra:
        problems.append(f"{len(extra)} weight(s) unknown here (e.g. {extra[0]})")
    if isinstance(stored, Mapping):
        problems += [f"{key} is {_flat_get(stored, key)!r} there, {_flat_get(config, key)!r} here"
                     for key in MUST_MATCH if _flat_get(stored, key) != _flat_get(config, key)]
    if not problems:
        return
    differ = ""
    if isinstance(stored, Mapping):
        keys = [k for k in config_diff(stored, config) if k.split(".")[0] in ("cell", "head", "data", "embedding_dim")]
        if keys:
            differ = f"; its config differs in {', '.join(keys[:5])}"
    raise ConfigError("ckpt_path", ckpt_path, hint=f"its model does not fit this run: {'; '.join(problems[:3])}{differ}")
