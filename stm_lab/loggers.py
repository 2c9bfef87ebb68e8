"""Experiment loggers from config, with a W&B group per sweep and tags per cell and task."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, open_dict

from stm_lab.config import cell_name
from stm_lab.metrics import METRICS, metric_of
from stm_lab.summary import write_text_atomic
from stm_lab.tasks.spec import TaskSpec
from stm_lab.validation import locate


def sweep_group() -> str | None:
    """In a multirun, the sweep directory's name: every job of one sweep shares it (and a resumed
    sweep in the same directory keeps it). None for a single run."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None


WANDB_ID = "wandb_id"  # beside summary.json: the W&B run id this folder's run logs to


def wandb_run_id(out_dir: Path) -> str:
    """The id stored in ``out_dir``, or a new one, stored there (by this job only: its own folder)."""
    path = out_dir / WANDB_ID
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:12]  # W&B ids: letters and digits
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, run_id + "\n")
    return run_id


def build_loggers(cfg: DictConfig) -> list[Logger]:
    loggers = []
    for name, lg_cfg in (cfg.get("logger") or {}).items():
        if not isinstance(lg_cfg, DictConfig) or "_target_" not in lg_cfg:
            continue
        if issubclass(locate(f"logger.{name}._target_", lg_cfg._target_), WandbLogger):
            lg_cfg = lg_cfg.copy()
            cell = cell_name(cfg.cell)
            # The cell and task tags come from here only: an experiment's own tags add to them.
            tags = list(dict.fromkeys([cell, cfg.data.task, *cfg.get("tags", [])]))
            with open_dict(lg_cfg):
                lg_cfg.group = lg_cfg.get("group") or sweep_group()
                lg_cfg.tags = tags
                lg_cfg.name = lg_cfg.get("name") or f"{cfg.data.task}-{cell}-seed{cfg.seed}"
                # One W&B run per output folder: a resumed job continues the same run.
                lg_cfg.id = lg_cfg.get("id") or wandb_run_id(Path(cfg.paths.output_dir))
                lg_cfg.resume = "allow"
        loggers.append(instantiate(lg_cfg))
    return loggers


def log_config(loggers: list[Logger], config: dict[str, Any], spec: TaskSpec) -> None:
    """The whole resolved config, nested, so dashboards can group by e.g. ``cell.name``; for W&B,
    each validation metric's summary is its best value (in its own direction), not its last."""
    for lg in loggers:
        lg.log_hyperparams(config)
        if isinstance(lg, WandbLogger):
            run = lg.experiment
            run.define_metric("val/loss", summary="min")
            for name in spec.metrics:
                d = METRICS.get(name)
                if not d.curve:
                    run.define_metric(f"val/{name}", summary=d.mode)
                    run.define_metric(f"val/{name}_best", summary=d.mode)


def log_references(loggers: list[Logger], chance: dict[str, float], floor: dict[str, float]) -> None:
    """Each metric's chance level and memoryless floor, into the W&B run's summary (beside the
    metric they bound: ``chance/acc``, ``floor/acc``); other loggers get them in summary.json."""
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.experiment.summary.update({**{f"chance/{k}": v for k, v in chance.items()},
                                          **{f"floor/{k}": v for k, v in floor.items()}})


def log_curves(loggers: list[Logger], curves: dict[str, list[float]]) -> None:
    """Per-run curves (serial-position accuracy, r² per lag) as W&B tables with a line plot,
    so each run's curve shows in the dashboard (other loggers already have the scalars)."""
    for lg in loggers:
        if isinstance(lg, WandbLogger) and curves:
            log_wandb_curves(lg.experiment, curves)


def log_wandb_curves(run: Any, curves: dict[str, list[float]]) -> None:
    """Each curve as a table (x from 1) and its line plot; the x axis is the metric's own."""
    import wandb

    payload = {}
    for name, curve in curves.items():
        d = metric_of(name)
        axis = d.curve if d is not None and d.curve else "index"
        value = name.split("/", 1)[-1]
        table = wandb.Table(columns=[axis, value], data=[[i, v] for i, v in enumerate(curve, start=1)])
        payload[f"{name}_curve"] = wandb.plot.line(table, axis, value, title=f"{name} ({run.name})")
    run.log(payload)


def wandb_run_info(loggers: list[Logger]) -> dict[str, str] | None:
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            run = lg.experiment
            return {"id": run.id, "dir": str(Path(run.dir).parent), "group": run.group or "",
                    "mode": run.settings.mode}
    return None


def finish_wandb(exit_code: int = 0) -> None:
    """Close the W&B run, so the next job of a multirun starts its own.

    A failure to close it is reported, not raised: the run's outcome is already recorded. It
    happens when a scheduler stops a job (``scancel``, pre-emption): its SIGTERM reaches every
    process of the job, W&B's service process too, and the connection to it is gone."""
    import wandb

    if wandb.run is not None:
        try:
            wandb.finish(exit_code=exit_code)
        except Exception as e:
            print(f"stm_lab: the W&B run was not closed cleanly ({type(e).__name__}: {e}); "
                  "its offline files hold what was logged before", file=sys.stderr)
