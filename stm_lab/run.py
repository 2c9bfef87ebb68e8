"""compose → instantiate → fit → test → summary. ``python -m stm_lab`` calls :func:`main`."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from stm_lab.cells import RecurrentCore
from stm_lab.data import MODULE_KEYS, MemoryDataModule, build_task
from stm_lab.errors import ConfigError, DataError
from stm_lab.heads import build_head
from stm_lab.loggers import build_loggers, finish_wandb, log_config, wandb_run_info
from stm_lab.model import InputEncoder, MemoryModel
from stm_lab.summary import SUMMARY, git_commit, library_versions, write_json_atomic


def conf_dir() -> str:
    """The Hydra tree: inside the package in a wheel install, at the repository top in a checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "conf"
    return str(packaged if packaged.is_dir() else here.parent / "conf")


def build_model(cfg: DictConfig, datamodule: MemoryDataModule, config: dict[str, Any] | None = None) -> MemoryModel:
    spec = datamodule.spec
    encoder = InputEncoder(spec, cfg.get("embedding_dim"))
    cell = OmegaConf.to_container(cfg.cell, resolve=True)
    try:
        core = RecurrentCore(input_size=encoder.output_size, **cell)
    except TypeError as e:  # an unknown or missing key
        raise ConfigError("cell", cell, hint=str(e)) from e
    if cfg.get("compile"):
        # In place: the state dict keeps its keys, so checkpoints stay interchangeable.
        core.compile()
    head_cfg = dict(OmegaConf.to_container(cfg.head, resolve=True))
    head = build_head(head_cfg.pop("name"), core.hidden_size, spec, **head_cfg)
    optimizer = instantiate(cfg.optimizer)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    return MemoryModel(spec, encoder, core, head, optimizer, scheduler, config=config)


def build_datamodule(cfg: DictConfig) -> MemoryDataModule:
    data = OmegaConf.to_container(cfg.data, resolve=True)
    task = build_task(data)
    return MemoryDataModule(task, seed=cfg.seed, cache_dir=cfg.paths.get("cache_dir"),
                            **{k: data[k] for k in MODULE_KEYS if k != "task" and k in data})


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(metrics.items()) if getattr(v, "numel", lambda: 1)() == 1}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one job from a composed config and return its summary (also written to summary.json)."""
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = OmegaConf.to_container(cfg, resolve=True)

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    # Everything is built before training starts, so config and data errors cost nothing.
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    spec = datamodule.spec
    model = build_model(cfg, datamodule, config)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    loggers = build_loggers(cfg)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    log_config(loggers, config)

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics = _scalars(trainer.callback_metrics)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        for result in trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False):
            metrics.update(_scalars(result))
        summary = {
            "status": "completed",
            "task": cfg.data.task,
            "cell": cfg.cell.name,
            "seed": cfg.seed,
            "chance": spec.chance,
            "chance_note": spec.chance_note,
            "metrics": metrics,
            "started": started.isoformat(),
            "wall_time_s": round(time.perf_counter() - t0, 3),
            "output_dir": str(out_dir),
            "best_checkpoint": best or None,
            "wandb": wandb_run_info(loggers),
            "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
            "versions": library_versions(),
            "git_commit": git_commit(),
            "config": config,
        }
        write_json_atomic(out_dir / SUMMARY, summary)
    finally:
        finish_wandb()
    return summary


def print_report(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    m = summary["metrics"]
    table = Table(title=f"stm_lab · {summary['task']} · {summary['cell']} · seed {summary['seed']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ("test/acc", "test/recall", "test/acc_sequence", "test/mse", "val/acc_best", "val/mse_best"):
        if key in m:
            table.add_row(key, f"{m[key]:.4f}")
    table.add_row("chance", f"{summary['chance']:.4f}")
    table.add_row("run time", f"{summary['wall_time_s']:.1f} s")
    table.add_row("outputs", summary["output_dir"])
    Console().print(table)


@hydra.main(config_path=conf_dir(), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        summary = train(cfg)
    except (ConfigError, DataError) as e:
        print(f"stm_lab: {e}", file=sys.stderr)
        sys.exit(2)
    print_report(summary)
    metric = cfg.get("optimized_metric")
    return summary["metrics"].get(metric) if metric else None
