"""Memory tasks: one file per task, each registered in :data:`TASKS` under its ``data.task`` name."""

from stm_lab.tasks import copy  # noqa: F401  (registers the task)
from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import Task, TaskSpec

__all__ = ["TASKS", "Task", "TaskSpec"]
