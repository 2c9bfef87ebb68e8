"""The SLURM launcher's signal plumbing, in process (no cluster; tests/test_slurm.py runs it on one)."""

from __future__ import annotations

import signal

from hydra_plugins.stm_lab_slurm.launcher import TimeLimitWarning


def test_time_limit_warning_goes_to_the_run_then_is_ignored_and_requeue_calls_submitit():
    stops, requeues = [], []
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR2)}
    # What the job has when the run starts: a SIGTERM handler (stm_lab's StopOnSignal while a
    # run is under way) and submitit's USR2 handler (checkpoint, scontrol requeue, exit).
    signal.signal(signal.SIGTERM, lambda signum, frame: stops.append(signum))
    signal.signal(signal.SIGUSR2, lambda signum, frame: requeues.append(signum))
    try:
        warning = TimeLimitWarning(signal.SIGUSR2)
        with warning:
            signal.raise_signal(signal.SIGUSR2)
        # The run's stop handler got the warning, under its own name; nothing requeued yet.
        assert stops == [signal.SIGUSR2] and warning.received and requeues == []
        # Once the run is over, a warning is ignored: a finished job is never requeued.
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
        signal.raise_signal(signal.SIGUSR2)
        assert stops == [signal.SIGUSR2] and requeues == []
        warning.requeue()  # what the launcher calls when the run stopped on the warning
        assert requeues == [signal.SIGUSR2]

        # Before (or without) a run, the SIGTERM handler may be submitit's, which only logs:
        # the warning is noted, nothing stops.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        late = TimeLimitWarning(signal.SIGUSR2)
        signal.signal(signal.SIGUSR2, lambda signum, frame: requeues.append(signum))
        with late:
            signal.raise_signal(signal.SIGUSR2)
        assert late.received and stops == [signal.SIGUSR2] and requeues == [signal.SIGUSR2]
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
