"""compose → instantiate → fit → test → summary. ``python -m stm_lab`` calls :func:`main`."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from stm_lab.cells import RecurrentCore
from stm_lab.data import MODULE_KEYS, MemoryDataModule, build_task
from stm_lab.errors import ConfigError, DataError, DivergenceError
from stm_lab.guards import DivergenceGuard, StopOnSignal
from stm_lab.heads import build_head
from stm_lab.loggers import build_loggers, finish_wandb, log_config, log_curves, wandb_run_info
from stm_lab.metrics import metric_curves
from stm_lab.model import InputEncoder, MemoryModel
from stm_lab.resume import is_completed, previous_summary, resume_checkpoint
from stm_lab.summary import SUMMARY, TRACEBACK, git_commit, library_versions, write_json_atomic
from stm_lab.threads import apply_thread_policy
from stm_lab.validation import instantiate_checked, validate


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


def checkpoint_dir(cfg: DictConfig) -> Path:
    """Where checkpoints go: the ModelCheckpoint's folder, or ``<output_dir>/checkpoints``."""
    for node in (cfg.get("callbacks") or {}).values():
        if node and str(node.get("_target_", "")).endswith("ModelCheckpoint") and node.get("dirpath"):
            return Path(node.dirpath)
    return Path(cfg.paths.output_dir) / "checkpoints"


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one job from a composed config and return its summary (also written to summary.json).

    The summary's ``status`` is ``running`` from the moment training is set up, then
    ``completed``, ``failed`` (with ``reason``; a traceback in ``traceback.txt``) or
    ``interrupted`` (with the checkpoint to resume from). A config or data error is written
    as ``failed`` and raised. The same command in the same output folder resumes an
    interrupted run; with ``skip_completed=true`` it returns a completed run's summary.
    """
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    previous = previous_summary(out_dir)
    base = {
        "status": "running",
        "task": cfg.data.get("task"),
        "cell": cfg.cell.get("name"),
        "seed": cfg.get("seed"),
        "started": started.isoformat(),
        "output_dir": str(out_dir),
        "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "versions": library_versions(),
        "git_commit": git_commit(),
        "config": config,
    }

    def record(status: str, **fields: Any) -> dict[str, Any]:
        summary = {**base, "status": status, **fields, "wall_time_s": round(time.perf_counter() - t0, 3)}
        write_json_atomic(out_dir / SUMMARY, summary)
        return summary

    if cfg.get("skip_completed") and is_completed(previous, config):
        print(f"stm_lab: {out_dir} already completed; skipped (skip_completed=true)", file=sys.stderr)
        return previous
    try:
        validate(cfg)  # every config error, before any data or training
        base["threads"] = apply_thread_policy(cfg)  # CPU threads for this run, and why (stm_lab/threads.py)
        ckpt_path = resume_checkpoint(cfg.get("ckpt_path"), previous, config, checkpoint_dir(cfg))
    except (ConfigError, DataError) as e:  # a task may check its data file when it is built
        record("failed", reason=f"{'config' if isinstance(e, ConfigError) else 'data'} error: {e}")
        raise
    record("running", resumed_from=ckpt_path)

    stop = StopOnSignal(checkpoint_dir(cfg))
    trainer: pl.Trainer | None = None
    loggers: list = []
    exit_code = 1
    try:
        with stop:
            pl.seed_everything(cfg.seed, workers=True, verbose=False)
            datamodule = build_datamodule(cfg)
            spec = datamodule.spec
            model = build_model(cfg, datamodule, config)
            callbacks = [instantiate_checked(f"callbacks.{name}", c)
                         for name, c in (cfg.get("callbacks") or {}).items() if c and "_target_" in c]
            loggers = build_loggers(cfg)
            trainer = instantiate_checked("trainer", cfg.trainer, logger=loggers or False,
                                          callbacks=[*callbacks, DivergenceGuard(), stop])
            log_config(loggers, config)
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
            metrics = _scalars(trainer.callback_metrics)
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            for result in trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False):
                metrics.update(_scalars(result))
            # The serial-position curve (and any per-lag curve) as lists, beside the scalars.
            curves = metric_curves(metrics)
            log_curves(loggers, curves)
        summary = record("completed", chance=spec.chance, chance_metric=spec.headline,
                         chance_note=spec.chance_note, metrics=metrics,
                         curves={name: list(c.values()) for name, c in curves.items()},
                         best_checkpoint=best or None, resumed_from=ckpt_path,
                         wandb=wandb_run_info(loggers))
        exit_code = 0
    except (ConfigError, DataError) as e:
        record("failed", reason=f"{'config' if isinstance(e, ConfigError) else 'data'} error: {e}")
        raise
    except Exception as e:  # NaN loss or any failure during fit/test: record it, let a sweep go on
        trace = out_dir / TRACEBACK
        trace.write_text(traceback.format_exc())
        summary = record("failed", reason=f"{type(e).__name__}: {e}" if not isinstance(e, DivergenceError)
                         else str(e), traceback=str(trace), metrics=_partial(trainer),
                         last_checkpoint=_last_checkpoint(cfg), wandb=_wandb_info(loggers))
    except BaseException as e:  # SIGINT/SIGTERM: the state to resume from is saved
        if stop.signum is None and not isinstance(e, KeyboardInterrupt):
            record("failed", reason=f"{type(e).__name__}: {e}")
            raise
        name = signal.Signals(stop.signum or signal.SIGINT).name
        checkpoint = str(stop.checkpoint) if stop.checkpoint else _last_checkpoint(cfg)
        summary = record("interrupted", reason=f"received {name}", signal=stop.signum or int(signal.SIGINT),
                         last_checkpoint=checkpoint, metrics=_partial(trainer),
                         wandb=_wandb_info(loggers))
        exit_code = 128 + (stop.signum or int(signal.SIGINT))
    finally:
        finish_wandb(exit_code)
    return summary


def _wandb_info(loggers: list) -> dict[str, str] | None:
    """The W&B run, if one can be named: never a second error while recording the first."""
    try:
        return wandb_run_info(loggers)
    except Exception:
        return None


def _partial(trainer: pl.Trainer | None) -> dict[str, float]:
    return _scalars(trainer.callback_metrics) if trainer is not None else {}


def _last_checkpoint(cfg: DictConfig) -> str | None:
    last = checkpoint_dir(cfg) / "last.ckpt"
    return str(last) if last.exists() else None


def print_report(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    m = summary["metrics"]
    table = Table(title=f"stm_lab · {summary['task']} · {summary['cell']} · seed {summary['seed']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ("test/acc", "test/recall", "test/recall_pos", "test/acc_sequence", "test/mse", "test/mc",
                "val/acc_best", "val/recall_best", "val/mse_best", "val/mc_best"):
        if key in m:
            table.add_row(key, f"{m[key]:.4f}")
    table.add_row(f"chance ({summary['chance_metric']})", f"{summary['chance']:.4f}")
    table.add_row("run time", f"{summary['wall_time_s']:.1f} s")
    table.add_row("outputs", summary["output_dir"])
    Console().print(table)


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(cfg: DictConfig) -> float | None:
    """One job. Exit codes of a single run: 0 completed, 1 failed at run time, 2 config or data
    error, 128+signal interrupted. In a multirun a failed job (config and data errors included)
    returns NaN, so the other jobs and any sweeper go on; an interrupt stops the sweep."""
    metric = cfg.get("optimized_metric")
    try:
        summary = train(cfg)
    except (ConfigError, DataError) as e:
        print(f"stm_lab: {e}", file=sys.stderr)
        if in_multirun():
            return float("nan")
        sys.exit(2)
    if summary["status"] == "completed":
        print_report(summary)
        return summary["metrics"].get(metric, float("nan")) if metric else None
    where = summary.get("last_checkpoint") or "none saved"
    if summary["status"] == "interrupted":
        print(f"stm_lab: interrupted ({summary['reason']}); checkpoint: {where}. Run the same command "
              f"with hydra.run.dir={summary['output_dir']} to resume.", file=sys.stderr)
        sys.exit(summary["signal"] + 128)
    print(f"stm_lab: run failed: {summary['reason']}. Last good checkpoint: {where}. "
          f"Details: {summary.get('traceback')}", file=sys.stderr)
    if in_multirun():
        return float("nan")
    sys.exit(1)


@hydra.main(config_path=conf_dir(), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg)
