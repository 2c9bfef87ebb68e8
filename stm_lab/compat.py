"""Every touch of a library's private API, in one place, each with a test that fails when the
library changes under it (tests/test_compat.py). Versions tested: pyproject.toml's upper bounds.
"""

from __future__ import annotations

from typing import Any


def logger_will_write(trainer: Any) -> bool:
    """Whether Lightning's loggers write at this training step (``log_every_n_steps``).

    Lightning keeps this on its private logger connector; asking it lets the model hand the
    step loss to Lightning only on those steps (each ``self.log`` costs host time). Without
    the connector, log every step: correct, only slower.
    """
    connector = getattr(trainer, "_logger_connector", None)
    return True if connector is None else bool(connector.should_update_logs)


def request_stop(trainer: Any) -> None:
    """Ask Lightning's fit loop to stop at the next batch boundary, as its own SIGTERM handler
    does: the loop then raises ``SIGTERMException`` with consistent progress counters."""
    trainer._signal_connector.received_sigterm = True


def optuna_trial(study: Any, frozen: Any) -> Any:
    """A live ``optuna.Trial`` for a stored (frozen) trial, to report to and ask ``should_prune``.
    Optuna exposes no public way to reattach to a running trial from another process."""
    import optuna

    return optuna.trial.Trial(study, frozen._trial_id)
