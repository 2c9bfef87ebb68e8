"""hydra-submitit-launcher's SLURM launcher, with two things a stm_lab run needs on a cluster.

1. **Time limit → checkpoint → requeue → resume.** submitit asks SLURM for a warning signal
   (``--signal=USR2@signal_delay_s``) before the time limit; its own handler requeues the job
   (``scontrol requeue``, at most ``max_num_timeout`` times) and exits on the spot, which in the
   middle of training loses the epoch under way and leaves the run marked failed, so the
   requeued job started over. Here the warning stops the run the way SIGTERM does
   (``stm_lab.guards.StopOnSignal``): at the next batch boundary, with ``last.ckpt`` saved and
   the summary marked ``interrupted``; only then is submitit's requeue called. The requeued
   job runs the same overrides in the same folder, where ``stm_lab.resume`` continues from
   ``last.ckpt`` (and the same W&B run). A run that completes despite the warning is not
   requeued; one that failed for another reason is reported, not retried.
2. **A job that exits is a failed job, not a lost one.** stm_lab exits with a code (2: config
   error, 128+signal: interrupted, e.g. 143 after ``scancel``). A ``SystemExit`` leaves
   submitit without a result file, so the launching process would learn of the job's end only
   from ``sacct`` (or never, on a cluster without accounting). Here the exit becomes an
   exception that Hydra records as this job's failure: the launcher collects the other jobs
   of the array, then reports it.
"""

from __future__ import annotations

import functools
import signal
from pathlib import Path
from types import FrameType
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)

from hydra_plugins.stm_lab_optuna.sweeper import exit_as_failure


class SlurmLauncher(SubmititSlurmLauncher):
    def __call__(self, sweep_overrides: list[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: dict[Any, Any]) -> JobReturn:
        # This runs inside the SLURM job, after submitit installed its signal handlers.
        import submitit

        warning = TimeLimitWarning(submitit.JobEnvironment._usr_sig())
        task_function = self.task_function
        self.task_function = functools.partial(exit_as_failure, task_function)
        try:
            with warning:
                ret = super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
        finally:
            # A requeue pickles this launcher again for the next start: as it came.
            self.task_function = task_function
        if warning.received and run_status(ret) in ("interrupted", "running"):
            warning.requeue()  # exits; SLURM starts the job again, and the run resumes
        return ret


def run_status(ret: JobReturn) -> str | None:
    """The status in the job's summary.json (None if there is none)."""
    from stm_lab.resume import previous_summary

    try:
        out_dir = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
    except Exception:  # the job failed before Hydra set up its folder
        return None
    return (previous_summary(out_dir) or {}).get("status")


class TimeLimitWarning:
    """Within the block, submitit's pre-timeout signal goes to the stm_lab run instead.

    ``received`` says whether it came; ``requeue()`` then hands it to submitit's own handler,
    which pickles the job's arguments for the next start, runs ``scontrol requeue`` and exits
    (or raises if ``max_num_timeout`` is used up).
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.received = False
        self._submitit: Any = None

    def __enter__(self) -> TimeLimitWarning:
        self._submitit = signal.signal(self.signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        # The run is over and its summary written: a warning now would only make submitit
        # requeue a finished job (the job ends well before the limit).
        signal.signal(self.signum, signal.SIG_IGN)

    def requeue(self) -> None:
        if callable(self._submitit):
            self._submitit(self.signum, None)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = True
        # Whoever handles SIGTERM now gets the warning: while a run is under way that is
        # stm_lab's StopOnSignal (through Lightning's own handler during training), which stops
        # at the next batch boundary with last.ckpt saved (at once before training), records
        # `interrupted` with this signal and exits. Before or after the run it is submitit's,
        # which only logs it: the run goes on, and if the limit stops it (SIGTERM, the same
        # clean stop), __call__ requeues it.
        stop = signal.getsignal(signal.SIGTERM)
        if callable(stop):
            stop(signum, frame)
