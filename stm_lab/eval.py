"""``python -m stm_lab.eval``: score a trained run under new conditions — its own test split again,
or the same model at other delays, list lengths, split sizes or data seeds.

    python -m stm_lab.eval run=outputs/runs/<dir>
    python -m stm_lab.eval run=outputs/runs/<dir> -m data.delay=5,10,20,40,80,160
    python -m stm_lab.eval run=outputs/multiruns/<sweep> -m data.delay=5,10,20   # every run x every delay

Each evaluation writes ``eval.json`` in its own folder (``outputs/evals/...``): the source run,
the conditions (train-time and test-time values side by side), the metrics and curves beside
their chance levels and floors, and a status; nothing is written into the source run's folder.
Overrides apply to the data only: a key that would change what the model reads or predicts
(the vocabulary, the number of classes) fails before evaluation, naming the key.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from stm_lab.api import LoadedRun, load_run
from stm_lab.baselines import baseline_scores, floors
from stm_lab.build import build_datamodule
from stm_lab.config import conf_dir
from stm_lab.errors import ConfigError, DataError
from stm_lab.loggers import finish_wandb, log_curves, log_references, wandb_run_info
from stm_lab.record import RunRecord, scalars
from stm_lab.summary import SUMMARY

EVAL = "eval.json"
SETTABLE = ("run", "checkpoint", "split", "seed", "wandb", "paths.log_dir")  # and data.<key>
# What a model reads and predicts: a data override may not change these.
INTERFACE = ("input_kind", "input_size", "output_kind", "output_size")


class EvalRecord(RunRecord):
    """The run record, written as eval.json in the evaluation's own folder."""

    record_file = EVAL


def check_interface(run: LoadedRun, spec: Any, changed: dict[str, Any]) -> None:
    trained = run.task.spec
    differ = [f for f in INTERFACE if getattr(spec, f) != getattr(trained, f)]
    if differ:
        keys = ", ".join(f"data.{k}" for k in changed) or "data"
        raise ConfigError(keys, changed, hint=(
            "the trained model cannot read or answer this data: " + "; ".join(
                f"{f} {getattr(trained, f)} → {getattr(spec, f)}" for f in differ)))


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """One evaluation: the run ``cfg.run`` on its data with ``cfg.data`` overriding keys."""
    out_dir = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path(cfg.paths.log_dir)
    run = load_run(cfg.run, str(cfg.checkpoint))
    source = run.config
    changed = OmegaConf.to_container(cfg.data, resolve=True) or {}
    unknown = sorted(set(changed) - set(source["data"]))
    if unknown:
        raise ConfigError(f"data.{unknown[0]}", changed[unknown[0]], sorted(source["data"]),
                          hint=f"not a key of the run's data config (task {source['data'].get('task')})")
    effective = OmegaConf.create(source)
    for key, value in changed.items():
        effective.data[key] = value
    if cfg.seed is not None:
        effective.seed = cfg.seed
    effective.paths.output_dir = str(out_dir)
    effective.paths.checkpoint_dir = str(out_dir / "checkpoints")  # never the source run's
    effective.skip_completed = False
    with EvalRecord(effective) as record:
        record.base.update(source={"run": str(run.path), "checkpoint": str(run.checkpoint),
                                   "wandb": (run.summary or {}).get("wandb")},
                           conditions={k: {"trained": source["data"][k], "tested": v} for k, v in changed.items()},
                           trained_data=source["data"], split=cfg.split)
        datamodule = build_datamodule(effective)
        spec = datamodule.spec
        check_interface(run, spec, changed)
        record.running()
        loggers = eval_loggers(cfg, run, out_dir, changed)
        record.attach(loggers=loggers)
        trainer = pl.Trainer(logger=loggers or False, accelerator=source["trainer"].get("accelerator", "auto"),
                             devices=1, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=[record.stop])
        record.attach(trainer=trainer)
        run.model.curves = {}
        loop = trainer.test if cfg.split == "test" else trainer.validate
        metrics: dict[str, float] = {}
        for result in loop(run.model, datamodule=datamodule, verbose=False):
            metrics.update(scalars(result))
        baselines = baseline_scores(datamodule)
        floor = floors(spec, baselines)
        log_curves(loggers, run.model.curves)
        log_references(loggers, dict(spec.chance), {k: v["value"] for k, v in floor.items()})
        record.complete(headline=spec.headline, chance=dict(spec.chance), chance_note=spec.chance_note,
                        baselines=baselines, floor=floor, metrics=metrics, curves=run.model.curves,
                        data=datamodule.report(), wandb=wandb_run_info(loggers))
    return record.summary


def eval_loggers(cfg: DictConfig, run: LoadedRun, out_dir: Path, changed: dict[str, Any]) -> list:
    """A W&B run with job_type=eval, in the source run's group (so train and eval runs of one
    sweep stay together), named after the source run and the conditions."""
    if not cfg.wandb:
        return []
    from lightning.pytorch.loggers import WandbLogger

    source = run.config.get("logger", {}).get("wandb", {}) or {}
    wandb_info = (run.summary or {}).get("wandb") or {}
    group = wandb_info.get("group") or run.path.parent.name
    conditions = "-".join(f"{k}{v}" for k, v in changed.items()) or "same"
    return [WandbLogger(project=source.get("project", "stm_lab"), entity=source.get("entity"),
                        save_dir=str(out_dir), mode=source.get("mode", "offline"), group=group, job_type="eval",
                        name=f"eval-{run.path.name}-{conditions}", config={"source": str(run.path),
                                                                           "conditions": changed, **run.config})]


def expand_runs(argv: list[str]) -> list[str]:
    """In a multirun, ``run=<sweep folder>`` becomes every run folder below it."""
    if not any(a in ("-m", "--multirun") for a in argv):
        return argv
    out = []
    for arg in argv:
        if arg.startswith("run=") and "," not in arg:
            path = Path(arg[4:])
            if path.is_dir() and not (path / SUMMARY).exists():
                runs = sorted(str(p.parent) for p in path.rglob(SUMMARY) if (p.parent / "checkpoints").is_dir())
                if runs:
                    arg = "run=" + ",".join(runs)
        out.append(arg)
    return out


def check_arguments(argv: list[str]) -> list[str]:
    """``data.<key>=...`` joins the (empty) data node; anything that is not an evaluation setting
    — a model or trainer key — is refused before Hydra composes anything. ``-m`` may stand
    anywhere (``run=DIR -m data.delay=5,10``): it is moved to the front, where Hydra reads it."""
    flags = [a for a in argv if a in ("-m", "--multirun")]
    out = flags[:1]
    for arg in (a for a in argv if a not in ("-m", "--multirun")):
        if arg.startswith("-") or "=" not in arg:
            out.append(arg)
            continue
        key = arg.split("=", 1)[0].lstrip("+~")
        if key.startswith("data."):
            out.append(arg if arg.startswith("+") else "+" + arg)
        elif key in SETTABLE or key.startswith("hydra.") or key.startswith("hydra/"):
            out.append(arg)
        else:
            print(f"stm_lab eval: config key '{key}' cannot be set on an evaluation: it would change the "
                  f"trained model, not the data; allowed: {', '.join(SETTABLE)}, data.<key>", file=sys.stderr)
            sys.exit(2)
    return out


@hydra.main(config_path=str(conf_dir()), config_name="eval", version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    try:
        summary = evaluate(cfg)
    except (ConfigError, DataError) as e:
        print(f"stm_lab eval: {e}", file=sys.stderr)
        finish_wandb(1)
        if HydraConfig.get().mode.name == "MULTIRUN":
            return float("nan")
        sys.exit(2)
    if summary["status"] != "completed":
        print(f"stm_lab eval: {summary['status']}: {summary.get('reason')}", file=sys.stderr)
        sys.exit(1)
    from stm_lab.run import print_report

    print_report({**summary, "task": summary["task"], "cell": summary["cell"], "seed": summary["seed"]})
    return summary["metrics"].get(f"test/{summary['headline']}")


def main() -> None:
    sys.argv = [sys.argv[0], *check_arguments(expand_runs(sys.argv[1:]))]
    _main()


if __name__ == "__main__":
    main()
