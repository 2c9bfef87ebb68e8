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


class DivergenceError(RuntimeError):
    """The loss or the weights stopped being finite: the run cannot go on from this state."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived (Ctrl-C, a pre-empted cluster job). Like KeyboardInterrupt,
    it is not an ``Exception``, so no ``except Exception`` swallows it on the way out."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        super().__init__(f"received {signal.Signals(signum).name}")


class RunFolderError(ValueError):
    """A run's or a search's folder cannot be used as it is: another live process holds it, it
    holds a completed run of another config, or a search's study cannot be read. Raised before
    anything is written there (exit code 2; NaN for one job of a multirun). The message names
    the folder or file and what to do."""
