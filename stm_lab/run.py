"""One run: build → fit → test, inside its run record. ``python -m stm_lab`` calls :func:`main`."""

from __future__ import annotations

import sys
from typing import Any

import hydra
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from stm_lab.baselines import baseline_scores, floors
from stm_lab.build import build
from stm_lab.config import check_root, conf_dir
from stm_lab.errors import ConfigError, DataError, RunFolderError
from stm_lab.guards import DivergenceGuard
from stm_lab.loggers import build_loggers, log_config, log_curves, log_references, wandb_run_info
from stm_lab.record import RunRecord, scalars
from stm_lab.resume import check_fits, explicit_checkpoint
from stm_lab.threads import apply_thread_policy
from stm_lab.validation import locate


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one job from a composed config and return its summary (also written to summary.json).

    The same command in the same output folder resumes an interrupted run; with
    ``skip_completed=true`` it returns a completed run's summary. A config or data error is
    recorded and raised; any other failure is recorded (status ``failed``) and returned.
    """
    with RunRecord(cfg) as record:
        if record.completed_before():
            return record.summary
        check_root(cfg)  # the seed itself is checked before anything is seeded with it
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        parts = build(cfg, callbacks=[*always_guarded(cfg), record.stop], config=record.config)
        ckpt_path = record.resume_from
        if cfg.get("ckpt_path") is not None:  # explicit: readable, and fits this model
            ckpt_path = explicit_checkpoint(str(cfg.ckpt_path), record.checkpoint_dir)
            check_fits(ckpt_path, parts.model, record.config)
        # CPU threads for this run, and why (stm_lab/threads.py); after the config is checked.
        record.running(resumed_from=ckpt_path, threads=apply_thread_policy(cfg))
        spec, model, trainer, datamodule = parts.spec, parts.model, parts.trainer, parts.datamodule
        record.attach(trainer=trainer)
        loggers = build_loggers(cfg) if record.lead else []  # one W&B run, from rank 0
        record.attach(loggers=loggers)
        trainer.loggers = loggers
        log_config(loggers, record.config, spec)

        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics = scalars(trainer.callback_metrics)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        metrics.update(validation_after_resume(trainer, model, datamodule, metrics, best or ckpt_path))
        for result in trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False):
            metrics.update(scalars(result))
        baselines = baseline_scores(datamodule)
        floor = floors(spec, baselines)
        log_curves(loggers, model.curves)
        log_references(loggers, dict(spec.chance), {k: v["value"] for k, v in floor.items()})
        record.complete(
            headline=spec.headline, monitor=model.selection.monitor, chance=dict(spec.chance),
            chance_note=spec.chance_note, baselines=baselines, floor=floor, metrics=metrics,
            curves=model.curves, data=datamodule.report(), best_checkpoint=best or None, resumed_from=ckpt_path,
            wandb=wandb_run_info(loggers))
    return record.summary


def always_guarded(cfg: DictConfig) -> list[DivergenceGuard]:
    """A guard against NaN/Inf losses and weights, unless the config already has a divergence
    guard (``callbacks.divergence``, which also watches for a finite loss that explodes): the
    non-finite checks are never left out, even with ``callbacks=...`` of one's own."""
    for node in (cfg.get("callbacks") or {}).values():
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        if target and isinstance(cls := locate("callbacks._target_", target), type) and issubclass(cls, DivergenceGuard):
            return []
    return [DivergenceGuard(max_loss_ratio=None, patience=1, reference="auto")]  # non-finite only


def validation_after_resume(trainer: pl.Trainer, model: Any, datamodule: Any, metrics: dict[str, float],
                            ckpt_path: str | None) -> dict[str, float]:
    """What a resumed run measured on validation, over all its epochs.

    A run resumed with nothing left to train (killed after its last checkpoint) validates no
    epoch in this session: its best checkpoint is validated now, so its summary and a sweeper
    still get ``val/<headline>_best``. A run resumed mid-way restarts the running best at the
    resume; the best value the checkpoint callback carried across the interruption counts too.
    """
    best_key, found = model.selection.best, {}
    if best_key not in metrics and not trainer.sanity_checking:
        for result in trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False):
            found.update(scalars(result))
    callback = trainer.checkpoint_callback
    score = getattr(callback, "best_model_score", None)
    if score is not None and getattr(callback, "monitor", None) == model.selection.monitor:
        current = found.get(best_key, metrics.get(best_key))
        better = max if model.selection.mode == "max" else min
        found[best_key] = float(score) if current is None else better(float(score), current)
    return found


def print_report(summary: dict[str, Any]) -> None:
    """The end-of-run table: every test metric beside its chance level and its floor."""
    from rich.console import Console
    from rich.table import Table

    m, chance, floor = summary["metrics"], summary.get("chance", {}), summary.get("floor", {})
    table = Table(title=f"stm_lab · {summary['task']} · {summary['cell']} · seed {summary['seed']}")
    for column in ("measure", "value", "chance", "floor (memoryless)"):
        table.add_column(column, justify="left" if column == "measure" else "right")

    def fmt(x: Any) -> str:
        if x is None:
            return ""
        return f"{x:.4f}" if x == 0 or abs(x) >= 1e-3 else f"{x:.2e}"

    names = [k.split("/", 1)[1] for k in m if k.startswith("test/") and k != "test/loss"]
    headline = summary.get("headline")
    for name in sorted(names, key=lambda n: (n != headline, n)):
        f = floor.get(name) or {}
        table.add_row(f"test/{name}", fmt(m[f"test/{name}"]), fmt(chance.get(name)),
                      f"{fmt(f.get('value'))} ({f['by']})" if f else "")
    best = f"{summary.get('monitor')}_best"
    if best in m:
        table.add_row(best, fmt(m[best]), "", "")
    table.add_row("run time", f"{summary['wall_time_s']:.1f} s", "", "")
    table.add_row("outputs", summary["output_dir"], "", "")
    Console().print(table)


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def objective(cfg: DictConfig, summary: dict[str, Any]) -> float | None:
    """The value ``main`` returns to a sweeper: ``optimized_metric`` (``auto``: the best validation
    value of the task's headline metric)."""
    metric = cfg.get("optimized_metric")
    if not metric:
        return None
    if metric == "auto":
        metric = f"{summary.get('monitor')}_best"
    return summary["metrics"].get(metric, float("nan"))


def run_job(cfg: DictConfig) -> float | None:
    """One job. Exit codes of a single run: 0 completed, 1 failed at run time, 2 config or data
    error or a run folder that cannot be used (locked, or holding another config's completed
    run), 128+signal interrupted. In a multirun a failed job (config and data errors included)
    returns NaN, so the other jobs and any sweeper go on; an interrupt stops the sweep."""
    try:
        summary = train(cfg)
    except (ConfigError, DataError, RunFolderError) as e:
        print(f"stm_lab: {e}", file=sys.stderr)
        if in_multirun():
            return float("nan")
        sys.exit(2)
    if summary["status"] == "completed":
        print_report(summary)
        return objective(cfg, summary)
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


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


__all__ = ["main", "print_report", "run_job", "train"]
