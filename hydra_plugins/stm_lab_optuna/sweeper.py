"""The Hydra plugin class; the search itself is in ``_search`` (imported only when it runs)."""

from __future__ import annotations

import functools
import sys
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    def __init__(self, **options: Any) -> None:
        self.options = options
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, config=config,
            task_function=functools.partial(exit_as_failure, task_function))

    def sweep(self, arguments: list[str]) -> Any:
        """Run the search. Under Hydra's command line (after :meth:`setup`), a config error or a
        sweep folder that cannot be used ends the command with one line and exit code 2, as a
        single run's config error does; called directly, the error is raised."""
        from hydra_plugins.stm_lab_optuna._search import run_search
        from stm_lab.errors import ConfigError, RunFolderError

        try:
            return run_search(self, arguments)
        except (ConfigError, RunFolderError) as e:
            if self.hydra_context is None:
                raise
            print(f"stm_lab: {e}", file=sys.stderr)
            sys.exit(2)


class JobExited(RuntimeError):
    """A job called sys.exit (stm_lab does on a config error, code 2)."""


def exit_as_failure(task_function: TaskFunction, cfg: DictConfig) -> Any:
    """Run one job; turn its sys.exit into an exception, so Hydra records that job as failed
    instead of the exit ending the launcher's process (and with it the search). A module-level
    function: joblib and submitit pickle it to their workers."""
    try:
        return task_function(cfg)
    except SystemExit as e:
        raise JobExited(f"the run exited with code {e.code}") from e
