"""summary.json: what a run was and what it measured, written atomically beside its outputs."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

SUMMARY = "summary.json"
TRACEBACK = "traceback.txt"  # the full traceback of a run that failed at run time
PACKAGES = ("stm_lab", "torch", "lightning", "torchmetrics", "hydra-core", "wandb", "datasets", "numpy")


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str))


def write_text_atomic(path: str | Path, text: str) -> None:
    with open_atomic(path) as f:
        f.write(text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which is not safe from several threads.
_UMASK = _umask()


@contextlib.contextmanager
def open_atomic(path: str | Path, newline: str | None = None) -> Iterator[IO[str]]:
    """A text file opened for writing that appears at ``path`` whole, or not at all: written
    in the same folder under a hidden name, synced, then renamed over ``path``. It gets the
    mode a plain ``open`` would give (0644 under the usual umask), not mkstemp's private 0600,
    so a colleague on a shared cluster can read the run's records."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w", newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    with open(Path(run_dir) / SUMMARY) as f:
        return json.load(f)


def library_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def git_commit() -> str | None:
    """The commit of the code that ran (suffixed ``-dirty`` with local changes), if in a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")
