"""Config validation: every section is checked against the signature of what it builds.

One mechanism for all of them (:mod:`stm_lab.build` applies it as it builds each part). A section's keys must be parameters of the class or
function it configures (a task dataclass, the data module, the recurrent core, a head,
or any ``_target_``), and each value must match that parameter's type annotation
(``int``, ``float``, ``bool``, ``str``, ``Literal[...]``, ``X | None``, lists, tuples).
A new task, head or optimizer is covered by declaring its parameters with type hints;
nothing here needs to change. Value ranges (``delay >= 1``) stay with the component,
which raises :class:`~stm_lab.errors.ConfigError` from its constructor; the build step
constructs the cheap components first, so every config error surfaces before any training
step runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from stm_lab.errors import ConfigError

# Keys Hydra's instantiate reads itself; never parameters of the target.
_HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


# ----------------------------------------------------------------------------- types


def _origin(hint: Any) -> Any:
    return typing.get_origin(hint)


def type_ok(value: Any, hint: Any) -> bool:
    """Whether a config value (already converted to plain Python) fits a type annotation."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = _origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(hint)
        # ``float | Tensor``: a config value can only be the plain member, so judge by that one.
        judged = [h for h in members if _judgeable(h)] or members
        return any(type_ok(value, h) for h in judged)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple or hint is tuple:
        if not isinstance(value, list | tuple):
            return False
        args = typing.get_args(hint)
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(type_ok(v, args[0]) for v in value)
        return len(args) == len(value) and all(type_ok(v, a) for v, a in zip(value, args, strict=True))
    if origin in (list, Sequence) or hint in (list, Sequence):
        args = typing.get_args(hint)
        return isinstance(value, list | tuple) and all(type_ok(v, args[0]) for v in value) if args \
            else isinstance(value, list | tuple)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, dict)
    if hint is Path:
        return isinstance(value, str | Path)
    # A class a config value cannot be (a tensor, a module...): the component decides.
    return True


def _judgeable(hint: Any) -> bool:
    """Whether a config value can be of this type (plain values, literals, containers)."""
    if hint in (bool, int, float, str, list, tuple, dict, Path, type(None), Any):
        return True
    return _origin(hint) is not None


def describe(hint: Any) -> str:
    """A type annotation in the words of an error message."""
    if hint is None or hint is type(None):
        return "null"
    origin = _origin(hint)
    if origin in (typing.Union, types.UnionType):
        literals = [a for h in typing.get_args(hint) if _origin(h) is typing.Literal for a in typing.get_args(h)]
        others = [describe(h) for h in typing.get_args(hint)
                  if _origin(h) is not typing.Literal and _judgeable(h)]
        parts = ([", ".join(dict.fromkeys(map(str, literals)))] if literals else []) + others
        return " or ".join(dict.fromkeys(parts))
    if origin is typing.Literal:
        return ", ".join(map(str, typing.get_args(hint)))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             list: "a list", tuple: "a list", dict: "a mapping", Path: "a path"}
    if hint in names:
        return names[hint]
    if origin in names:
        return names[origin]
    return getattr(hint, "__name__", str(hint))


def literal_values(hint: Any) -> list[Any] | None:
    """The allowed values of a ``Literal`` annotation (also inside ``X | None``), else None."""
    if _origin(hint) is typing.Literal:
        return list(typing.get_args(hint))
    if _origin(hint) in (typing.Union, types.UnionType):
        found = [v for h in typing.get_args(hint) for v in (literal_values(h) or [])]
        return found or None
    return None


def check_value(key: str, value: Any, hint: Any) -> None:
    if not type_ok(value, hint):
        allowed = literal_values(hint)
        if allowed and not _accepts_non_literal(hint):  # a closed set: list it
            if type_ok(None, hint):
                allowed = [*allowed, "null"]
            raise ConfigError(key, value, list(dict.fromkeys(str(a) for a in allowed)))
        raise ConfigError(key, value, describe(hint))


def _accepts_non_literal(hint: Any) -> bool:
    if _origin(hint) in (typing.Union, types.UnionType):
        return any(_origin(h) is not typing.Literal and h is not type(None) for h in typing.get_args(hint))
    return False


# ------------------------------------------------------------------------ signatures


def parameters(target: Callable[..., Any], skip: Sequence[str] = ()) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """``(parameters by name, type hints, takes **kwargs)`` of a class's constructor or a function."""
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check against
        return {}, {}, True
    try:
        if dataclasses.is_dataclass(target):
            hints = typing.get_type_hints(target)
        else:
            hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # an annotation that does not resolve: check keys, not types
        hints = {}
    params = {n: p for n, p in sig.parameters.items() if n not in skip and n != "self"
              and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    return params, hints, var_kw


def check_section(section: str, values: Mapping[str, Any],
                  targets: Sequence[tuple[Callable[..., Any], Sequence[str]]],
                  extra: Mapping[str, Any] | None = None) -> None:
    """Each key of ``values`` must be a parameter of one of ``targets`` (``(target, skipped
    parameter names)``) or of ``extra`` (name → type); its value must fit the annotation;
    required parameters must be present."""
    accepted: dict[str, Any] = {}
    required: list[str] = []
    open_ended = False
    for target, skip in targets:
        params, hints, var_kw = parameters(target, skip)
        open_ended |= var_kw
        for name, p in params.items():
            accepted.setdefault(name, hints.get(name, p.annotation if not isinstance(p.annotation, str) else Any))
            if p.default is p.empty:
                required.append(name)
    for name, hint in (extra or {}).items():
        accepted.setdefault(name, hint)
    for key, value in values.items():
        if key in _HYDRA_KEYS:
            continue
        if key not in accepted:
            if open_ended:
                continue
            raise ConfigError(f"{section}.{key}", value, sorted(accepted), hint="unknown key")
        check_value(f"{section}.{key}", value, accepted[key])
    for name in required:
        if name not in values:
            raise ConfigError(f"{section}.{name}", None, describe(accepted[name]), hint="required key is missing")


def locate(key: str, path: Any, kinds: str = "") -> Callable[..., Any]:
    """The class or function a ``_target_`` names, or a ConfigError saying it does not exist."""
    if not isinstance(path, str):
        raise ConfigError(key, path, "a dotted import path such as torch.optim.Adam")
    module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(key, path, kinds or "a dotted import path", hint=f"cannot import it: {e}") from e


def instantiate_checked(key: str, node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, with a constructor's complaint about a value (Lightning's
    MisconfigurationException, a ValueError...) turned into a ConfigError naming ``key``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ or e
        if isinstance(cause, ConfigError):
            raise cause from None
        message = str(cause).strip().splitlines()
        value = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        raise ConfigError(key, value, hint=message[-1] if message else type(cause).__name__) from e


def check_target(section: str, node: Mapping[str, Any], skip: Sequence[str] = (), kinds: str = "") -> Callable[..., Any]:
    target = locate(f"{section}._target_", node.get("_target_"), kinds)
    check_section(section, node, [(target, skip)])
    return target


def _optimizer_names() -> str:
    import torch

    names = sorted(n for n, c in vars(torch.optim).items()
                   if inspect.isclass(c) and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer)
    return "torch.optim." + ", torch.optim.".join(names)


def _scheduler_names() -> str:
    import torch

    sched = torch.optim.lr_scheduler
    names = sorted(n for n, c in vars(sched).items()
                   if inspect.isclass(c) and issubclass(c, sched.LRScheduler | sched.ReduceLROnPlateau)
                   and n not in ("LRScheduler", "_LRScheduler"))
    return "a class of torch.optim.lr_scheduler: " + ", ".join(names)
