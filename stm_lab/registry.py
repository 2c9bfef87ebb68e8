"""One way to register a named thing (tasks, heads): a decorator on a dict."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from stm_lab.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → class. ``key`` is the config key users set to pick an entry (for error messages)."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind, self.key = kind, key
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ConfigError(self.key, name, sorted(self._entries))
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
