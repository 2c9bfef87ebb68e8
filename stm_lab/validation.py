"""Config validation: every section is checked against the signature of what it builds.

One mechanism for all of them. A section's keys must be parameters of the class or
function it configures (a task dataclass, the data module, the recurrent core, a head,
or any ``_target_``), and each value must match that parameter's type annotation
(``int``, ``float``, ``bool``, ``str``, ``Literal[...]``, ``X | None``, lists, tuples).
A new task, head or optimizer is covered by declaring its parameters with type hints;
nothing here needs to change. Value ranges (``delay >= 1``) stay with the component,
which raises :class:`~stm_lab.errors.ConfigError` from its constructor; :func:`validate`
builds those cheap components too, so every config error surfaces before any data is
generated or any training step runs.
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

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from stm_lab.errors import ConfigError

# Keys Hydra's instantiate reads itself; never parameters of the target.
_HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}

# Top-level scalar keys and their types. A key added on the command line with ``+key=...``
# must be one of these (or a config group); keys defined in YAML files are always accepted.
ROOT_KEYS: dict[str, Any] = {
    "seed": int,
    "tags": list,
    "embedding_dim": int | None,
    "ckpt_path": str | None,
    "skip_completed": bool,
    "optimized_metric": str | None,
}

# The parameters filled in by the code, not by the config, for each built thing.
TRAINER_SKIP = ("logger", "callbacks")


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
        raise ConfigError(key, OmegaConf.to_container(node, resolve=True),
                          hint=message[-1] if message else type(cause).__name__) from e


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


# ---------------------------------------------------------------------------- checks


def check_root(cfg: DictConfig) -> None:
    """Top-level scalars have their types; a ``+key`` added on the command line must be known."""
    root = {k: cfg[k] for k in ROOT_KEYS if k in cfg}
    for key, value in OmegaConf.to_container(OmegaConf.create(root), resolve=True).items():
        check_value(key, value, ROOT_KEYS[key])
    if not HydraConfig.initialized():
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from stm_lab.run import conf_dir

    groups = {p.name for p in Path(conf_dir()).iterdir() if p.is_dir()}
    overrides = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    for o in overrides:
        key = o.key_or_group
        if o.is_add() and "." not in key and key not in groups and key not in ROOT_KEYS and "/" not in key:
            raise ConfigError(key, o.value(), sorted({*ROOT_KEYS, *cfg} - {key}),
                              hint="unknown top-level key")


def check_data(data: Mapping[str, Any]) -> None:
    from stm_lab.data import MODULE_KEYS, MemoryDataModule
    from stm_lab.tasks import TASKS

    check_value("data.task", data.get("task"), str)
    task_cls = TASKS.get(data["task"])
    extra = {k: Any for k in MODULE_KEYS}  # module keys declared by name only are accepted too
    check_section("data", data, [(task_cls, ()), (MemoryDataModule, ("task", "seed", "cache_dir"))], extra)


def check_cell(cell: Mapping[str, Any]) -> None:
    from stm_lab.cells import CELLS, RecurrentCore

    check_value("cell.name", cell.get("name"), str)
    CELLS.get(cell["name"])
    check_section("cell", cell, [(RecurrentCore, ("input_size",))])


def check_head(head: Mapping[str, Any], default_head: str) -> None:
    from stm_lab.heads import HEADS

    check_value("head.name", head.get("name"), str)
    name = default_head if head["name"] == "auto" else head["name"]
    if name not in HEADS:
        raise ConfigError("head.name", head["name"], ["auto", *HEADS.names()])
    check_section("head", head, [(HEADS.get(name), ("hidden_size", "spec"))], {"name": str})


def check_optimizer(cfg: DictConfig) -> None:
    """The optimizer (and scheduler) must exist, take these keys, and accept their values:
    each is built once on a dummy parameter, so ``lr=-1`` fails here and not at step one."""
    import torch
    from hydra.utils import instantiate

    opt = OmegaConf.to_container(cfg.optimizer, resolve=True)
    check_target("optimizer", opt, skip=("params",), kinds=_optimizer_names())
    dummy = [torch.nn.Parameter(torch.zeros(1))]
    try:
        optimizer = instantiate(cfg.optimizer)(params=dummy)
    except (TypeError, ValueError) as e:
        raise ConfigError("optimizer", opt, hint=f"{opt['_target_']}: {e}") from e
    if cfg.get("scheduler"):
        sched = OmegaConf.to_container(cfg.scheduler, resolve=True)
        check_target("scheduler", sched, skip=("optimizer",), kinds=_scheduler_names())
        try:
            instantiate(cfg.scheduler)(optimizer=optimizer)
        except (TypeError, ValueError) as e:
            raise ConfigError("scheduler", sched, hint=f"{sched['_target_']}: {e}") from e


def check_instantiables(cfg: DictConfig) -> None:
    """The trainer, loggers and callbacks: every ``_target_`` node against its signature."""
    check_target("trainer", OmegaConf.to_container(cfg.trainer, resolve=True), skip=TRAINER_SKIP)
    for group in ("logger", "callbacks"):
        for name, node in (cfg.get(group) or {}).items():
            if isinstance(node, DictConfig) and "_target_" in node:
                check_target(f"{group}.{name}", OmegaConf.to_container(node, resolve=True))


def validate(cfg: DictConfig) -> None:
    """Check the whole config before anything is generated or trained. Raises ConfigError."""
    from stm_lab.cells import RecurrentCore
    from stm_lab.data.module import build_task
    from stm_lab.heads import build_head
    from stm_lab.model import InputEncoder

    check_root(cfg)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    check_data(data)
    task = build_task(data)  # the task's own range checks (__post_init__)
    spec = task.spec
    cell = OmegaConf.to_container(cfg.cell, resolve=True)
    check_cell(cell)
    head = OmegaConf.to_container(cfg.head, resolve=True)
    check_head(head, spec.default_head)
    embedding_dim = cfg.get("embedding_dim")
    if embedding_dim is not None and embedding_dim < 1:
        raise ConfigError("embedding_dim", embedding_dim, "null or an integer >= 1")
    # The model's parts are small: building them runs their own checks (sizes, head vs task).
    encoder = InputEncoder(spec, embedding_dim)
    core = RecurrentCore(input_size=encoder.output_size, **cell)
    head_params = {k: v for k, v in head.items() if k != "name"}
    build_head(head["name"], core.hidden_size, spec, **head_params)
    check_optimizer(cfg)
    check_instantiables(cfg)
