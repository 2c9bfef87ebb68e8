"""The programmatic doors: compose a config as the command line would, build a task as the config
defines it, build a run's parts."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf
from torch import nn

from stm_lab.build import Parts, build, build_core, build_task
from stm_lab.config import compose, conf_dir
from stm_lab.tasks import Task


def task(name: str, **params: Any) -> Task:
    """The task ``name`` with the parameters of ``conf/data/<name>.yaml``, ``params`` overriding
    them: ``api.task("copy", delay=40)``."""
    data = OmegaConf.to_container(OmegaConf.load(conf_dir() / "data" / f"{name}.yaml"), resolve=True)
    return build_task({**data, **params})


def cell(name: str, input_size: int, **options: Any) -> nn.Module:
    """The cell ``name`` with the options of ``conf/cell/<name>.yaml``, ``options`` overriding them:
    ``api.cell("lstm", input_size=3, hidden_size=16)``."""
    node = OmegaConf.to_container(OmegaConf.load(conf_dir() / "cell" / f"{name}.yaml"), resolve=True)
    return build_core({**node, **options}, input_size)


__all__ = ["Parts", "build", "cell", "compose", "task"]
