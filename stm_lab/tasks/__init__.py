"""Memory tasks: one file per task, each registered in :data:`TASKS` under its ``data.task`` name."""

# Importing a task module registers it.
from stm_lab.tasks import (  # noqa: F401
    adding,
    associative_recall,
    babi,
    compression,
    copy,
    dms,
    fuzzy_recall,
    in_context_recall,
    memorization,
    memory_capacity,
    mqar,
    nback,
    pairs,
    scan,
    selective_copy,
    seq_digits,
    serial_recall,
    text,
)
from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import Task, TaskSpec

__all__ = ["TASKS", "Task", "TaskSpec"]
