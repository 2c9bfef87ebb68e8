"""One way to name an extensible thing (a task, a metric): a registered short name, or the
import path of an object in the user's own package (``mypkg.tasks.MyTask``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from stm_lab.errors import ConfigError

T = TypeVar("T")


def import_object(path: str) -> object:
    """The object at ``package.module.attr``; ImportError/AttributeError if there is none."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ImportError(f"{path!r} is not a dotted import path")
    return getattr(importlib.import_module(module_name), attr)


class Registry(Generic[T]):
    """Name → object. ``key`` is the config key users set to pick an entry (for error messages).

    :meth:`get` also accepts a dotted import path, so an entry defined outside stm_lab is used
    without registering it first (``check`` decides whether the imported object qualifies).
    """

    def __init__(self, kind: str, key: str, check: Callable[[object], bool] | None = None) -> None:
        self.kind, self.key, self._check = kind, key, check
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        if isinstance(name, str) and "." in name:
            try:
                obj = import_object(name)
            except (ImportError, AttributeError) as e:
                raise ConfigError(self.key, name, self.names(), hint=f"cannot import it: {e}") from e
            if self._check is not None and not self._check(obj):
                raise ConfigError(self.key, name, hint=f"{name} is not a {self.kind}")
            return obj  # type: ignore[return-value]
        raise ConfigError(self.key, name, [*self.names(), f"or the import path of a {self.kind}"])

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register a throwaway task clean up with this)."""
        self._entries.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
