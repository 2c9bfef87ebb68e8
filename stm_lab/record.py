"""The run record: one context manager that owns a run's summary.json from the first line of the
run to the last, and maps how the run ended to its status.

    running → completed                      the body finished
            → failed      (reason)           a config or data error (re-raised: exit code 2), or any
                                             other exception (traceback.txt; the run returns)
            → interrupted (signal, checkpoint) SIGINT/SIGTERM: the state to resume from is saved

It also owns the stop-signal handlers (:class:`~stm_lab.guards.StopOnSignal`) for the whole run,
and closes the W&B run on the way out, whatever happened.

On the way in, before anything is written, it takes the folder's lock
(:class:`~stm_lab.runfolder.RunLock`) and decides what the folder's previous run means for
this one, by identity (:mod:`stm_lab.identity`):

    skip_completed, and a completed run of this identity   skipped
      here or anywhere in the sweep folder
    a completed run of another identity here                refused: RunFolderError, nothing written
    an interrupted/running run of this identity here        resumed from its newest readable checkpoint
    ckpt_path given                                         continued from it (checked in the run)
    any other previous run here                             started afresh; that run's files are
                                                            kept in replaced/<when>-<identity>/
                                                            (its W&B id with them: never reused)

See docs/reliability.md for every case and its test.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from stm_lab.config import cell_name
from stm_lab.errors import ConfigError, DataError, DivergenceError, RunFolderError
from stm_lab.guards import StopOnSignal
from stm_lab.identity import describe_diff, find_completed, identity_of, run_identity
from stm_lab.loggers import WANDB_ID, finish_wandb, wandb_run_info
from stm_lab.resume import RESUMABLE, newest_good_checkpoint, previous_summary
from stm_lab.runfolder import RunLock, kept_aside, stamp
from stm_lab.summary import SUMMARY, TRACEBACK, git_commit, library_versions, write_json_atomic


def scalars(metrics: Any) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(metrics.items()) if getattr(v, "numel", lambda: 1)() == 1}


class RunRecord:
    """``with RunRecord(cfg) as record:`` around a run. Inside, :meth:`running` marks the start of
    training, :meth:`attach` hands over the trainer and loggers (for partial metrics and the W&B
    run), :meth:`complete` gives what a completed run records. ``record.summary`` is the result."""

    record_file = SUMMARY  # the JSON file the record keeps, in the run's folder

    def __init__(self, cfg: DictConfig) -> None:
        self.t0 = time.perf_counter()
        self.out_dir = Path(cfg.paths.output_dir)
        self.checkpoint_dir = Path(cfg.paths.checkpoint_dir)
        self.config = OmegaConf.to_container(cfg, resolve=True)
        self.skip_completed = bool(cfg.get("skip_completed"))
        self.ckpt_path: str | None = cfg.get("ckpt_path")
        self.identity = run_identity(self.config)
        self.previous: dict[str, Any] | None = None
        self.resume_from: str | None = None  # the checkpoint fit starts from (None: a fresh start)
        self.search_root = self.out_dir
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            self.search_root = Path(HydraConfig.get().sweep.dir)
        # Where the launcher starts one process per device (srun on SLURM, Lightning's `ddp`),
        # every rank runs the job: only global rank 0 locks the folder, writes the record and the
        # loggers' runs; the other ranks share its folder.
        self.lead = rank_zero_only.rank == 0
        self.lock = RunLock(self.out_dir) if self.lead else None
        self.base = {
            "status": "running",
            "identity": self.identity,
            "task": cfg.data.get("task"),
            "cell": cell_name(cfg.cell),
            "seed": cfg.get("seed"),
            "started": datetime.now(timezone.utc).isoformat(),
            "output_dir": str(self.out_dir),
            "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "versions": library_versions(),
            "git_commit": git_commit(),
            "config": self.config,
        }
        self.stop = StopOnSignal(self.checkpoint_dir)
        self.trainer: Any = None
        self.loggers: list = []
        self.summary: dict[str, Any] | None = None
        self.skipped = False
        self._fields: dict[str, Any] = {}
        self._completed: dict[str, Any] | None = None

    # ------------------------------------------------------------------ inside the run

    def completed_before(self) -> bool:
        """With ``skip_completed``, whether a completed run of this very config exists (in this
        folder, or anywhere in the sweep folder); then ``summary`` is that run's and nothing is
        written."""
        return self.skipped

    def write(self, status: str, **fields: Any) -> dict[str, Any]:
        self._fields.update(fields)
        summary = {**self.base, "status": status, **self._fields,
                   "wall_time_s": round(time.perf_counter() - self.t0, 3)}
        if self.lead:
            write_json_atomic(self.out_dir / self.record_file, summary)
        self.summary = summary
        return summary

    def running(self, **fields: Any) -> None:
        self.write("running", **fields)

    def attach(self, trainer: Any = None, loggers: list | None = None) -> None:
        if trainer is not None:
            self.trainer = trainer
        if loggers is not None:
            self.loggers = loggers

    def complete(self, **fields: Any) -> None:
        self._completed = fields

    # ----------------------------------------------------------------------- the edges

    def __enter__(self) -> RunRecord:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.lock is not None:
            self.lock.acquire()
        try:
            self.previous = previous_summary(self.out_dir) if self.record_file == SUMMARY else None
            self._settle_previous()
        except BaseException:
            self._release()
            raise
        self.stop.__enter__()
        return self

    def _settle_previous(self) -> None:
        """Skip, refuse, resume or start afresh (see the module's docstring); only moves files."""
        if self.skip_completed:
            found = find_completed(self.search_root, self.identity, prefer=self.out_dir)
            if found is not None:
                where = "" if found[0] == self.out_dir else f" in {found[0]}"
                print(f"stm_lab: {self.out_dir} already completed{where}; skipped (skip_completed=true)",
                      file=sys.stderr)
                self.summary, self.skipped = found[1], True
                return
        prev = self.previous
        if prev is None:
            return
        prev_identity = identity_of(prev)
        same = prev_identity == self.identity
        if self.ckpt_path is not None:
            # Resumed explicitly (checked in the run, against the model): the checkpoints stay
            # where they are; the previous record is kept if completed or of another config, and
            # its W&B run with it if of another config.
            if not same or prev.get("status") == "completed":
                self._keep_previous([SUMMARY, TRACEBACK] + ([] if same else [WANDB_ID]))
            return
        if not same and prev.get("status") == "completed":
            raise RunFolderError(
                f"{self.out_dir} holds a completed run of another config (identity {prev_identity}; "
                f"{describe_diff(prev.get('config') or {}, self.config)}); this job ({self.identity}) "
                "needs its own folder: another hydra.run.dir or hydra.sweep.dir, or move that run away")
        if same and prev.get("status") in RESUMABLE:
            good, broken = newest_good_checkpoint(self.checkpoint_dir, set_aside=self.lead)
            for path, why in broken if self.lead else ():
                print(f"stm_lab: {path.with_suffix('')} is {why}; kept as {path.name}, not resumed from",
                      file=sys.stderr)
            if good is not None:
                print(f"stm_lab: resuming the {prev['status']} run from {good}", file=sys.stderr)
                self.resume_from = str(good)
                return
            print(f"stm_lab: no readable checkpoint of the {prev['status']} run in {self.checkpoint_dir}; "
                  "starting afresh", file=sys.stderr)
        elif not same:
            print(f"stm_lab: {self.out_dir} holds a {prev.get('status')} run of another config "
                  f"({describe_diff(prev.get('config') or {}, self.config)}); starting afresh", file=sys.stderr)
        self._keep_previous([SUMMARY, TRACEBACK, WANDB_ID, self._checkpoints_name(), "csv"])

    def _checkpoints_name(self) -> str:
        try:
            return str(self.checkpoint_dir.relative_to(self.out_dir))
        except ValueError:  # checkpoints outside the run folder: not this folder's to move
            return "checkpoints"

    def _keep_previous(self, names: list[str]) -> None:
        """Move the previous run's files aside, unless its summary is all there is and it did not
        complete (a config error, say): then there is nothing to keep and it is overwritten."""
        if not self.lead:
            # Another DDP rank: the lead (global rank 0) settles the folder. This rank may even
            # read the lead's fresh "running" record; moving it would take the lead's W&B id.
            return
        prev = self.previous or {}
        if prev.get("status") != "completed" and not any((self.out_dir / n).exists() for n in names if n != SUMMARY):
            return
        label = f"{stamp(prev.get('started'))}-{(identity_of(prev) or 'unknown')[:8]}"
        kept = kept_aside(self.out_dir, names, label)
        if kept is not None:
            print(f"stm_lab: the previous {prev.get('status', '')} run of {self.out_dir} is kept in {kept}",
                  file=sys.stderr)

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        exit_code = 1
        try:
            self.stop.__exit__(exc_type, exc, tb)
            if self.skipped:
                return False
            if exc is None:
                self.write("completed", **(self._completed or {}))
                exit_code = 0
                return False
            if isinstance(exc, ConfigError | DataError):
                kind = "config" if isinstance(exc, ConfigError) else "data"
                self.write("failed", reason=f"{kind} error: {exc}")
                return False  # the caller reports it: exit code 2, or NaN in a multirun
            if isinstance(exc, Exception):  # NaN loss or any failure during fit/test
                trace = self.out_dir / TRACEBACK
                if self.lead:
                    trace.write_text("".join(traceback.format_exception(exc_type, exc, tb)))
                reason = str(exc) if isinstance(exc, DivergenceError) else f"{type(exc).__name__}: {exc}"
                self.write("failed", reason=reason, traceback=str(trace), metrics=self._partial(),
                           last_checkpoint=self._last_checkpoint(), wandb=self._wandb())
                return True  # recorded; a sweep goes on
            if self.stop.signum is None and not isinstance(exc, KeyboardInterrupt):
                self.write("failed", reason=f"{type(exc).__name__}: {exc}")
                return False  # SystemExit and the like go on up
            signum = self.stop.signum or int(signal.SIGINT)
            checkpoint = str(self.stop.checkpoint) if self.stop.checkpoint else self._last_checkpoint()
            self.write("interrupted", reason=f"received {signal.Signals(signum).name}", signal=signum,
                       last_checkpoint=checkpoint, metrics=self._partial(), wandb=self._wandb())
            exit_code = 128 + signum
            return True
        finally:
            try:
                finish_wandb(exit_code)
            finally:
                self._release()

    def _partial(self) -> dict[str, float]:
        return scalars(self.trainer.callback_metrics) if self.trainer is not None else {}

    def _last_checkpoint(self) -> str | None:
        last = self.checkpoint_dir / "last.ckpt"
        return str(last) if last.exists() else None

    def _wandb(self) -> dict[str, str] | None:
        """The W&B run, if one can be named: never a second error while recording the first."""
        try:
            return wandb_run_info(self.loggers)
        except Exception:
            return None
