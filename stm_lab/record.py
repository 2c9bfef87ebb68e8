"""The run record: one context manager that owns a run's summary.json from the first line of the
run to the last, and maps how the run ended to its status.

    running → completed                      the body finished
            → failed      (reason)           a config or data error (re-raised: exit code 2), or any
                                             other exception (traceback.txt; the run returns)
            → interrupted (signal, checkpoint) SIGINT/SIGTERM: the state to resume from is saved

It also owns the stop-signal handlers (:class:`~stm_lab.guards.StopOnSignal`) for the whole run,
and closes the W&B run on the way out, whatever happened.
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
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from stm_lab.config import cell_name
from stm_lab.errors import ConfigError, DataError, DivergenceError
from stm_lab.guards import StopOnSignal
from stm_lab.loggers import finish_wandb, wandb_run_info
from stm_lab.resume import is_completed, previous_summary
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
        self.previous: dict[str, Any] | None = None
        self.base = {
            "status": "running",
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
        # Where the launcher starts one process per device (srun on SLURM, Lightning's `ddp`),
        # every rank runs the job: only global rank 0 writes the record and the loggers' runs.
        self.lead = rank_zero_only.rank == 0
        self.trainer: Any = None
        self.loggers: list = []
        self.summary: dict[str, Any] | None = None
        self.skipped = False
        self._fields: dict[str, Any] = {}
        self._completed: dict[str, Any] | None = None

    # ------------------------------------------------------------------ inside the run

    def completed_before(self) -> bool:
        """With ``skip_completed``, whether this folder already holds a completed run of this very
        config; then ``summary`` is that run's and nothing is written."""
        if self.skip_completed and is_completed(self.previous, self.config):
            print(f"stm_lab: {self.out_dir} already completed; skipped (skip_completed=true)", file=sys.stderr)
            self.summary, self.skipped = self.previous, True
            return True
        return False

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
        self.previous = previous_summary(self.out_dir) if self.record_file == SUMMARY else None
        self.stop.__enter__()
        return self

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
            finish_wandb(exit_code)

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
