"""The project's own error types: what a user can fix gets a message, not a traceback."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(ValueError):
    """A config key or value is wrong. The message names the key, the value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str | Iterable[object] | None = None,
                 hint: str | None = None) -> None:
        self.key, self.value = key, value
        msg = f"config key '{key}' has a bad value {value!r}"
        if allowed is not None:
            if not isinstance(allowed, str):
                allowed = ", ".join(repr(a) if not isinstance(a, str) else a for a in allowed)
            msg += f"; allowed: {allowed}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class DataError(ValueError):
    """A data file is missing or malformed. The message names the file (and column)."""
