"""One build step: a composed config → the parts of a run, each section checked as it is built.

Building is validating. Every section is checked against the signature of what it builds
(:mod:`stm_lab.validation`) and then built, so a range check in a constructor is the same
``ConfigError`` as a wrong type. The cheap checks come first (top-level keys, task
parameters, cell, head, optimizer, callbacks, trainer); then the task's spec (which, for data
read from files, loads them — once) and the model. Nothing here trains or writes anything.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from stm_lab.config import check_root, conf_dir
from stm_lab.data import MemoryDataModule
from stm_lab.errors import ConfigError
from stm_lab.heads import Head
from stm_lab.model import InputEncoder, MemoryModel, Selection
from stm_lab.preflight import check_memory
from stm_lab.tasks import TASKS, Task, TaskSpec
from stm_lab.validation import (
    _optimizer_names,
    _scheduler_names,
    check_section,
    check_target,
    check_value,
    instantiate_checked,
    locate,
)

AUTO = "auto"  # `monitor: auto` / `mode: auto` in a callback: the task's headline on validation


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


# ------------------------------------------------------------------------------ data


def build_task(data: Mapping[str, Any]) -> Task:
    """The task named by ``data.task`` (a registered name or an import path), with the other
    task keys of the ``data`` section as its parameters; the data-module keys are checked too."""
    data = _plain(data)
    check_value("data.task", data.get("task"), str)
    cls = TASKS.get(data["task"])
    check_section("data", data, [(cls, ()), (MemoryDataModule, ("task", "seed", "cache_dir"))], {"task": str})
    module = set(inspect.signature(MemoryDataModule.__init__).parameters)
    return cls(**{k: v for k, v in data.items() if k != "task" and k not in module})


def build_datamodule(cfg: DictConfig, task: Task | None = None) -> MemoryDataModule:
    data = _plain(cfg.data)
    task = task or build_task(data)
    module = set(inspect.signature(MemoryDataModule.__init__).parameters) - {"self", "task", "seed", "cache_dir"}
    return MemoryDataModule(task, seed=cfg.seed, cache_dir=cfg.paths.get("cache_dir"),
                            **{k: v for k, v in data.items() if k in module})


# ----------------------------------------------------------------------------- model


def check_cell(cell: Mapping[str, Any]) -> type:
    target = locate("cell._target_", cell.get("_target_"), "a cell class, e.g. stm_lab.cells.LSTM")
    if not (inspect.isclass(target) and issubclass(target, nn.Module)):
        raise ConfigError("cell._target_", cell.get("_target_"), hint="not an nn.Module class")
    check_section("cell", cell, [(target, ("input_size",))], {"name": str | None})
    return target


def build_core(cell: Mapping[str, Any], input_size: int) -> nn.Module:
    """The recurrent core from the ``cell`` section, under the cell protocol
    (:mod:`stm_lab.cells.recurrent`): ``_target_`` is its class, the other keys its options."""
    cell = _plain(cell)
    check_cell(cell)
    core = instantiate_checked("cell", {k: v for k, v in cell.items() if k != "name"}, input_size=input_size)
    if not isinstance(getattr(core, "hidden_size", None), int):
        raise ConfigError("cell._target_", cell["_target_"], hint="a cell must have an integer hidden_size")
    return core


def resolve_head(head: Mapping[str, Any], spec: TaskSpec) -> dict[str, Any]:
    """``head=auto`` (``_target_: null``) is the task's own head, ``conf/head/<spec.default_head>.yaml``,
    with any options given on top."""
    head = dict(head)
    if head.get("_target_"):
        return head
    node = OmegaConf.to_container(OmegaConf.load(conf_dir() / "head" / f"{spec.default_head}.yaml"), resolve=True)
    return {**node, **{k: v for k, v in head.items() if k != "_target_"}}


def build_head(head: Mapping[str, Any], hidden_size: int, spec: TaskSpec,
               cell: Mapping[str, Any] | None = None) -> Head:
    """The head, given the core's ``hidden_size``, the task's ``spec`` and, if it asks for it
    (``needs_cell_config``), the run's ``cell`` section."""
    head = resolve_head(_plain(head), spec)
    target = locate("head._target_", head["_target_"], "a head class, e.g. stm_lab.heads.PerStepHead")
    if not (inspect.isclass(target) and issubclass(target, Head)):
        raise ConfigError("head._target_", head["_target_"], hint="not a subclass of stm_lab.heads.Head")
    options = {k: v for k, v in head.items() if k != "_target_"}
    supplied = {"hidden_size": hidden_size, "spec": spec}
    if target.needs_cell_config:
        supplied["cell_config"] = dict(_plain(cell) or {})
    check_section("head", options, [(target, tuple(supplied))])
    return target(**supplied, **options)


def check_optimizer(cfg: DictConfig) -> None:
    """The optimizer (and scheduler) must exist, take these keys, and accept their values:
    each is built once on a dummy parameter, so ``lr=-1`` fails here and not at step one."""
    opt = _plain(cfg.optimizer)
    check_target("optimizer", opt, skip=("params",), kinds=_optimizer_names())
    dummy = [nn.Parameter(torch.zeros(1))]
    try:
        optimizer = instantiate(cfg.optimizer)(params=dummy)
    except (TypeError, ValueError) as e:
        raise ConfigError("optimizer", opt, hint=f"{opt['_target_']}: {e}") from e
    if cfg.get("scheduler"):
        sched = _plain(cfg.scheduler)
        check_target("scheduler", sched, skip=("optimizer",), kinds=_scheduler_names())
        try:
            instantiate(cfg.scheduler)(optimizer=optimizer)
        except (TypeError, ValueError) as e:
            raise ConfigError("scheduler", sched, hint=f"{sched['_target_']}: {e}") from e


def build_model(cfg: DictConfig, spec: TaskSpec, config: dict[str, Any] | None = None,
                artifacts: dict[str, Any] | None = None) -> MemoryModel:
    encoder = InputEncoder(spec, cfg.get("embedding_dim"))
    core = build_core(cfg.cell, encoder.output_size)
    if cfg.get("compile"):
        # In place: the state dict keeps its keys, so checkpoints stay interchangeable.
        core.compile()
    head = build_head(cfg.head, core.hidden_size, spec, cfg.cell)
    # Resolved first: a factory called later (configure_optimizers) has no root to resolve
    # interpolations such as ${trainer.max_epochs} against.
    scheduler = instantiate(_plain(cfg.scheduler)) if cfg.get("scheduler") else None
    return MemoryModel(spec, encoder, core, head, instantiate(_plain(cfg.optimizer)), scheduler, config=config,
                       artifacts=artifacts)


# ------------------------------------------------------------------------- training


def _with_monitor(node: Mapping[str, Any], selection: Selection | None) -> dict[str, Any]:
    node = dict(node)
    if selection is not None:
        if node.get("monitor") == AUTO:
            node["monitor"] = selection.monitor
        if node.get("mode") == AUTO:
            node["mode"] = selection.mode
    return node


def build_callbacks(cfg: DictConfig, selection: Selection | None) -> list[pl.Callback]:
    callbacks = []
    for name, node in (_plain(cfg.get("callbacks")) or {}).items():
        if not node or "_target_" not in node:
            continue
        node = _with_monitor(node, selection)
        check_target(f"callbacks.{name}", node)
        callback = instantiate_checked(f"callbacks.{name}", node)
        if not isinstance(callback, pl.Callback):
            raise ConfigError(f"callbacks.{name}._target_", node["_target_"], hint="not a Lightning Callback")
        callbacks.append(callback)
    return callbacks


def check_trainer(cfg: DictConfig) -> None:
    trainer = _plain(cfg.trainer)
    check_target("trainer", trainer, skip=("logger", "callbacks"))
    # Lightning reads max_epochs=-1 as "no limit": only with another bound does a run end.
    epochs = trainer.get("max_epochs")
    bounded = trainer.get("max_steps") not in (None, -1) or trainer.get("max_time") is not None \
        or bool(trainer.get("fast_dev_run"))
    if isinstance(epochs, int) and (epochs < -1 or (epochs == -1 and not bounded)):
        raise ConfigError("trainer.max_epochs", epochs, "an integer >= 0 (-1, no limit, only with "
                          "trainer.max_steps or trainer.max_time set)")


def build_trainer(cfg: DictConfig, callbacks: Sequence[pl.Callback]) -> pl.Trainer:
    """The Trainer, built without loggers: the run attaches them (``trainer.loggers = ...``) once
    its record knows which W&B run to continue."""
    check_trainer(cfg)
    return instantiate_checked("trainer", cfg.trainer, logger=False, callbacks=list(callbacks))


def check_loggers(cfg: DictConfig) -> None:
    for name, node in (_plain(cfg.get("logger")) or {}).items():
        if isinstance(node, dict) and "_target_" in node:
            check_target(f"logger.{name}", node)


# ---------------------------------------------------------------------------- the run


@dataclass
class Parts:
    """Everything a run trains and tests with, built and checked."""

    task: Task
    datamodule: MemoryDataModule
    model: MemoryModel
    trainer: pl.Trainer

    @property
    def spec(self) -> TaskSpec:
        return self.datamodule.spec


def build(cfg: DictConfig, callbacks: Sequence[pl.Callback] = (), config: dict[str, Any] | None = None) -> Parts:
    """Check and build every part of a run from its config; raises ConfigError (or DataError, for
    a data file) before anything trains. ``callbacks`` join the configured ones."""
    check_root(cfg)
    task = build_task(cfg.data)
    datamodule = build_datamodule(cfg, task)
    check_cell(_plain(cfg.cell))
    check_optimizer(cfg)
    check_trainer(cfg)
    check_loggers(cfg)
    spec = task.spec  # data read from files is loaded here, once
    check_memory(cfg, task, spec)  # sizes that cannot fit: refused before any data or weight exists
    model = build_model(cfg, spec, config, task.artifacts())
    trainer = build_trainer(cfg, [*build_callbacks(cfg, model.selection), *callbacks])
    return Parts(task, datamodule, model, trainer)
