"""A run's folder: one process at a time (:class:`RunLock`), and a previous run that is not
continued is kept aside, never overwritten (:func:`move_aside`).

The lock is a file, ``run.lock``, holding the owner's pid, host and start time, and an
exclusive ``flock`` on it for as long as the run lasts. The kernel drops the ``flock`` when
the owner dies however it dies, so on the same host a lock file without a ``flock`` is stale
and is taken over (with a message naming the dead owner). A lock written by a process on
another host (a shared filesystem) cannot be checked from here: it is refused, naming the
host, and the user removes the file once that job is gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from stm_lab.errors import RunFolderError

LOCK_FILE = "run.lock"
REPLACED = "replaced"  # <run>/replaced/<when>-<identity>/: a previous run that was not continued


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """``with RunLock(folder):`` — exclusive use of ``folder`` by this process."""

    def __init__(self, folder: str | Path, what: str = "run") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.what = what
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _describe(self, holder: dict[str, Any]) -> str:
        if not holder:
            return "another process"
        since = f" since {holder['started']}" if holder.get("started") else ""
        return f"process {holder.get('pid')} on {holder.get('host')}{since}"

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise RunFolderError(f"{self.folder} is in use by {self._describe(self.holder())} "
                                     f"(lock file {self.path}); wait for it to end, or run elsewhere") from None
            # The file may have been removed by its previous owner between open and flock: then
            # this lock is on a file nobody else can see. Start again on the current one.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = self.holder()
        here = socket.gethostname()
        if holder.get("pid") is not None:
            if holder.get("host") != here:
                os.close(fd)
                raise RunFolderError(
                    f"{self.folder} is in use by {self._describe(holder)} (lock file {self.path}); "
                    f"if that job has ended, delete {self.path}")
            note = "ended" if not _alive(int(holder["pid"])) else "no longer holds it"
            print(f"stm_lab: taking over the stale lock of {self._describe(holder)} ({note}): {self.path}",
                  file=sys.stderr)
        record = {"pid": os.getpid(), "host": here, "started": datetime.now(timezone.utc).isoformat(),
                  "what": self.what, "command": " ".join(sys.argv)[:500]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the flock, so no one can take a lock on a file about to go.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def kept_aside(out_dir: Path, names: list[str], label: str) -> Path | None:
    """Move ``names`` (files or folders of ``out_dir`` that exist) into
    ``out_dir/replaced/<label>/`` and return that folder; None when there was nothing."""
    present = [n for n in names if (out_dir / n).exists()]
    if not present:
        return None
    target = out_dir / REPLACED / label
    n = 1
    while target.exists():
        n += 1
        target = out_dir / REPLACED / f"{label}-{n}"
    target.mkdir(parents=True)
    for name in present:
        os.replace(out_dir / name, target / name)
    return target


def stamp(iso: str | None) -> str:
    """A folder-safe time stamp from an ISO time (the previous run's start), or now."""
    try:
        when = datetime.fromisoformat(iso) if iso else datetime.now(timezone.utc)
    except ValueError:
        when = datetime.now(timezone.utc)
    return when.strftime("%Y-%m-%d_%H-%M-%S")


def writable_dir(path: Path) -> str | None:
    """None if ``path`` can be created (if need be) and written; otherwise why not, in a few words.
    Creates the folder, as the run would a moment later; leaves nothing else behind."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".stm_lab-write-test-{os.getpid()}-{time.monotonic_ns()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


__all__ = ["LOCK_FILE", "REPLACED", "RunLock", "kept_aside", "stamp", "writable_dir"]
