"""The sweeper's config node, registered as ``hydra/sweeper=stm_lab_optuna``."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaSweeperConf:
    # Sampler and pruner are config groups: hydra/sweeper/sampler=random, hydra/sweeper/pruner=median.
    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": "nop"}])

    _target_: str = "hydra_plugins.stm_lab_optuna.sweeper.OptunaSweeper"
    # The sweeper builds sampler and pruner itself (a grid sampler needs the search space).
    _recursive_: bool = False

    # The study's name in the storage; the same name (and storage) resumes the same search.
    study_name: str = "stm_lab"
    # An SQLAlchemy URL (sqlite:///path.db, postgresql://...). null: sqlite:///<sweep dir>/optuna.db
    storage: Any = None
    # maximize | minimize | auto: the direction of the job's return value (the run's
    # `optimized_metric`); auto follows that metric's definition (stm_lab.metrics)
    direction: str = "auto"
    # Trials the study should hold when the search ends, counting those of earlier sessions
    # (complete, pruned and failed; a trial cut short by an interruption is run again).
    n_trials: int = 20
    # Trials asked at once and handed to the launcher as one batch: with hydra/launcher=joblib
    # (hydra.launcher.n_jobs) or a cluster launcher they run in parallel.
    n_jobs: int = 1
    # Any optuna.samplers class and its arguments; presets in the hydra/sweeper/sampler group:
    # tpe, random, grid (the grid is built from the search space, which must then be finite).
    sampler: Any = None
    # Any optuna.pruners class; presets in hydra/sweeper/pruner: nop (none), median, hyperband.
    # The runs report intermediate values through the stm_lab.pruning.OptunaPruning callback,
    # which the hparams_search presets add (callbacks.optuna_pruning).
    pruner: Any = None
    # The search space, in Hydra's sweep syntax: choice(a, b, ...), range(start, stop, step)
    # (stop excluded), interval(low, high), tag(log, interval(low, high)). A plain value is a
    # fixed override. Sweep overrides given on the command line join the space.
    params: dict[str, Any] = field(default_factory=dict)


SAMPLERS = {
    "tpe": {"_target_": "optuna.samplers.TPESampler", "seed": 0, "n_startup_trials": 10},
    "random": {"_target_": "optuna.samplers.RandomSampler", "seed": 0},
    "grid": {"_target_": "optuna.samplers.GridSampler", "seed": 0},
}
PRUNERS = {
    "nop": {"_target_": "optuna.pruners.NopPruner"},
    # A trial stops when its intermediate value is worse than the median of earlier trials at
    # the same epoch; never before 5 trials have finished or before epoch 2.
    "median": {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 5, "n_warmup_steps": 2},
    "hyperband": {"_target_": "optuna.pruners.HyperbandPruner", "min_resource": 1},
}

cs = ConfigStore.instance()
cs.store(group="hydra/sweeper", name="stm_lab_optuna", node=OptunaSweeperConf, provider="stm_lab")
for name, node in SAMPLERS.items():
    cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider="stm_lab")
for name, node in PRUNERS.items():
    cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider="stm_lab")
