"""The task registry: ``data.task`` names an entry here (or gives a task class's import path)."""

from __future__ import annotations

from collections.abc import Callable

from stm_lab.registry import Registry
from stm_lab.tasks.spec import Task


def _is_task(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, Task)


class TaskRegistry(Registry[type]):
    def register(self, name: str) -> Callable[[type], type]:
        """Register a task class under ``name`` and make that its ``name`` (which keys its cache)."""
        add = super().register(name)

        def named(cls: type) -> type:
            cls.name = name
            return add(cls)

        return named


TASKS = TaskRegistry("task", "data.task", check=_is_task)
