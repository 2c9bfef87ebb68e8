"""The link between a run and its Optuna trial, shared by the ``stm_lab_optuna`` sweeper (in
hydra_plugins/) and the runs it launches. No torch or Lightning here: the sweeper imports it.

The sweeper asks and tells in its own process and makes each job's number (``hydra.job.num``)
its trial number; a run finds its trial from the Hydra config it runs under.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from stm_lab.compat import optuna_trial

SWEEPER = "hydra_plugins.stm_lab_optuna.sweeper.OptunaSweeper"
DB_NAME = "optuna.db"
PRUNED_AT = "pruned_at_step"  # trial attribute: the epoch at which the run stopped on advice


def default_storage(sweep_dir: str | Path) -> str:
    """Where a search keeps its study when no storage URL is configured."""
    return f"sqlite:///{(Path(sweep_dir) / DB_NAME).resolve()}"


def current_trial() -> Any | None:
    """The Optuna trial this run is, or None when it is not a job of an stm_lab_optuna search."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    sweeper = hc.get("sweeper") or {}
    if sweeper.get("_target_") != SWEEPER or hc.job.get("num") is None:
        return None
    import optuna

    storage = sweeper.get("storage") or default_storage(hc.sweep.dir)
    pruner = instantiate(sweeper.pruner) if sweeper.get("pruner") else None
    study = optuna.load_study(study_name=sweeper.study_name, storage=storage, pruner=pruner)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.number == int(hc.job.num):
            return optuna_trial(study, t)
    return None
