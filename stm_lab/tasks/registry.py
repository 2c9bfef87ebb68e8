"""The task registry: ``data.task`` names an entry here."""

from stm_lab.registry import Registry

TASKS: Registry = Registry("task", "data.task")
