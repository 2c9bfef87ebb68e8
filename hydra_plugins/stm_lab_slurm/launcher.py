"""hydra-submitit-launcher's SLURM launcher, with what a stm_lab run needs on a cluster.

1. **Time limit → checkpoint → requeue → resume.** submitit asks SLURM for a warning signal
   (``--signal=USR2@signal_delay_s``) before the time limit; its own handler requeues the job
   (``scontrol requeue``, at most ``max_num_timeout`` times) and exits on the spot. In the
   middle of training that exit leaves the run marked failed, so the requeued job started
   over from scratch. Here the warning stops the run the way SIGTERM does
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
3. **skip_completed=true skips before submitting.** A job whose folder already holds a completed
   run of the same config is not submitted at all (it would take an allocation only to find
   that out): re-running a sweep submits one array of the jobs that are missing, under their
   own job numbers. The config is resolved here, where the sweep is launched; one that
   resolves only inside the job (``${oc.env:X}`` with X from the setup lines) is submitted,
   and the job checks for itself (``stm_lab.run.train`` skips a completed run too).
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.stm_lab_optuna.sweeper import exit_as_failure

log = logging.getLogger(__name__)


class SlurmLauncher(SubmititSlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit the jobs as one array (each keeps its job number, hence its folder), less those
        that ``skip_completed=true`` finds completed; return every job's result, in order."""
        assert self.config is not None
        numbered = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
        done: dict[int, JobReturn] = {}
        if self.config.get("skip_completed"):
            done = {num: ret for num, o in numbered if (ret := self.completed(o, num)) is not None}
            if done:
                log.info(f"skip_completed: jobs {sorted(done)} already completed in their folders; "
                         f"not submitted")
        todo = [(num, o) for num, o in numbered if num not in done]
        results = dict(done)
        if todo:
            results.update(zip([num for num, _ in todo], self.submit(todo), strict=True))
        return [results[num] for num, _ in numbered]

    def submit(self, jobs: list[tuple[int, list[str]]]) -> list[JobReturn]:
        """One sbatch job array for these (job number, overrides); wait for all of them."""
        import submitit

        assert self.config is not None
        params = dict(self.params)
        folder = params.pop("submitit_folder")
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=folder,
                                         slurm_max_num_timeout=params.pop("max_num_timeout"))
        # Keys every submitit executor knows go as they are; the others are SLURM's own.
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in params.items()})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        for num, overrides in jobs:
            log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
        state = Singleton.get_state()
        array = executor.map_array(self, [o for _, o in jobs], ["hydra.sweep.dir"] * len(jobs),
                                   [num for num, _ in jobs], [f"job_id_for_{num}" for num, _ in jobs],
                                   [state] * len(jobs))
        return [job.results()[0] for job in array]

    def completed(self, overrides: list[str], num: int) -> JobReturn | None:
        """The job's result, if the sweep folder holds a completed run of the config it would run
        (found by the run's identity, as the job itself would: stm_lab.identity)."""
        from stm_lab.identity import find_completed, run_identity

        assert self.config is not None and self.hydra_context is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.num = num
        sweep_dir = Path(str(OmegaConf.select(cfg, "hydra.sweep.dir")))
        out_dir = sweep_dir / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        # The config as the job resolves it (Hydra's run_job): its folder, then the task part.
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = os.path.abspath(out_dir)
        before = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(cfg)
        try:
            task: DictConfig = copy.deepcopy(cfg)
            with read_write(task), open_dict(task):
                del task["hydra"]
            config = OmegaConf.to_container(task, resolve=True)
        except Exception as e:  # e.g. ${oc.env:X} with X set only inside the job (setup lines)
            log.debug(f"job {num}: its config does not resolve here ({e}); the job checks itself")
            return None
        finally:
            HydraConfig.instance().cfg = before
        found = find_completed(sweep_dir, run_identity(config), prefer=out_dir)
        if found is None:
            return None
        metric = task.get("optimized_metric")
        value = found[1].get("metrics", {}).get(metric, float("nan")) if metric else None
        return JobReturn(overrides=list(OmegaConf.to_container(cfg.hydra.overrides.task)), cfg=task,
                         hydra_cfg=cfg, working_dir=os.getcwd(), task_name=str(cfg.hydra.job.name),
                         status=JobStatus.COMPLETED, _return_value=value)

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
            try:
                warning.requeue()  # exits; SLURM starts the job again, and the run resumes
            except (submitit.core.utils.UncompletedJobError, subprocess.CalledProcessError) as e:
                # No requeue left (max_num_timeout) or none allowed: the run stays interrupted,
                # and this job is reported as such; the same sweep command resumes it.
                print(f"stm_lab: the job is not requeued: {e}", file=sys.stderr)
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
