"""The programmatic doors: compose a config as the command line would, build a task or a cell as
the config defines it, build a run's parts, and load a trained run back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from stm_lab.build import Parts, build, build_core, build_datamodule, build_model, build_task
from stm_lab.config import compose, conf_dir
from stm_lab.data import MemoryDataModule
from stm_lab.errors import DataError
from stm_lab.model import MemoryModel
from stm_lab.resume import why_unreadable
from stm_lab.summary import SUMMARY
from stm_lab.tasks import Task

CONFIG_KEY, TASK_KEY = "stm_lab_config", "stm_lab_task"  # what every checkpoint carries


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


@dataclass
class LoadedRun:
    """A trained run, rebuilt through the same build step as training: its config (as stored in the
    checkpoint), its summary, its task (with what it learned from its data) and its model, with
    the checkpoint's weights, in eval mode."""

    path: Path
    checkpoint: Path
    config: dict[str, Any]
    summary: dict[str, Any] | None
    task: Task
    model: MemoryModel

    @property
    def cfg(self) -> DictConfig:
        return OmegaConf.create(self.config)

    def datamodule(self, **data: Any) -> MemoryDataModule:
        """The run's data module; ``data`` overrides keys of its ``data`` config (``delay=40``)."""
        cfg = self.cfg
        for key, value in data.items():
            cfg.data[key] = value
        return build_datamodule(cfg)


def find_checkpoint(run_dir: Path, checkpoint: str, summary: dict[str, Any] | None) -> Path:
    """``best`` (the run's best-on-validation checkpoint), ``last``, or a checkpoint file."""
    if checkpoint not in ("best", "last"):
        path = Path(checkpoint)
        if not path.is_file():
            raise DataError(f"{path}: no such checkpoint file (checkpoint=)")
        return path
    ckpt_dir = run_dir / "checkpoints"
    if checkpoint == "last":
        path = ckpt_dir / "last.ckpt"
    else:
        best = (summary or {}).get("best_checkpoint")
        path = Path(best) if best else None
        if path is None or not path.is_file():
            epochs = sorted(ckpt_dir.glob("epoch_*.ckpt"))
            path = epochs[-1] if len(epochs) == 1 else None
    if path is None or not path.is_file():
        raise DataError(f"{run_dir}: no {checkpoint} checkpoint in {ckpt_dir} (checkpoint=best|last|FILE)")
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents for applying the model (weights and stored config; no optimizer
    state needed), or a DataError naming the file and what is wrong with it."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file: say which, not how to unpickle it
        raise DataError(f"{path}: not a readable checkpoint: {why_unreadable(path, e)}") from None
    if not isinstance(ckpt, dict) or CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise DataError(f"{path}: not an stm_lab checkpoint (no stored config)")
    return ckpt


def load_run(path: str | Path, checkpoint: str = "best") -> LoadedRun:
    """Rebuild a trained run from its folder: ``load_run("outputs/runs/<dir>")`` (the best
    checkpoint) or ``load_run(dir, "last")``. Reads only; writes nothing into the folder."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run folder")
    summary = None
    if (run_dir / SUMMARY).is_file():
        try:
            summary = json.loads((run_dir / SUMMARY).read_text())
        except ValueError as e:
            raise DataError(f"{run_dir / SUMMARY}: not a readable summary ({e})") from e
    ckpt_path = find_checkpoint(run_dir, checkpoint, summary)
    ckpt = read_checkpoint(ckpt_path)
    config = ckpt[CONFIG_KEY]
    cfg = OmegaConf.create(config)
    the_task = build_task(cfg.data).restore(ckpt.get(TASK_KEY) or {})
    model = build_model(cfg, the_task.spec, config, the_task.artifacts() if ckpt.get(TASK_KEY) else None)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise DataError(f"{ckpt_path}: its weights do not fit the model its config builds "
                        f"({str(e).splitlines()[0]})") from e
    return LoadedRun(run_dir, ckpt_path, config, summary, the_task, model.eval())


__all__ = ["LoadedRun", "Parts", "build", "cell", "compose", "load_run", "task"]
