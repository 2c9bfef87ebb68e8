"""A resumable, failure-tolerant Optuna search driven through a Hydra launcher (ask/tell).

One process (this one) owns the study: it asks a batch of trials, turns each into Hydra
overrides, hands the batch to the configured launcher (basic, joblib, submitit...), and tells
the study how each job ended. The jobs never talk to the storage, except the optional pruning
callback (``stm_lab.pruning``), which reports intermediate values for its own trial.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from stm_lab.errors import ConfigError, RunFolderError
from stm_lab.optuna_trial import PRUNED_AT, default_storage
from stm_lab.runfolder import RunLock
from stm_lab.summary import open_atomic

if TYPE_CHECKING:
    from hydra_plugins.stm_lab_optuna.sweeper import OptunaSweeper

log = logging.getLogger(__name__)

TRIALS_CSV = "trials.csv"
BEST_YAML = "best.yaml"
# Trial user attributes this sweeper writes.
OVERRIDES, JOB_DIR, REASON = "overrides", "job_dir", "fail_reason"
INTERRUPTED = "interrupted_trials"  # a study attribute: numbers of trials a killed session left
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class Dimension:
    """One searched key: its Optuna distribution and how to write it back as an override."""

    name: str             # the config key, e.g. optimizer.lr (the Optuna parameter name)
    key: str              # the key as the override writes it, e.g. +model.extra for an addition
    distribution: BaseDistribution

    def override(self, value: Any) -> str:
        return f"{self.key}={format_value(value)}"


def format_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back unchanged."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if any(c in text for c in " ,()[]{}'\"=:\\") or text == "":
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return text


def distribution_of(override: Override) -> BaseDistribution:
    sweep = override.value()
    key = override.key_or_group
    if isinstance(sweep, ChoiceSweep):
        choices = list(override.sweep_iterator())
        if any(isinstance(c, (list, dict)) for c in choices):
            raise ConfigError(key, override.input_line, "choice() of scalars (str, int, float, bool, null)")
        return CategoricalDistribution(choices)
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())
        if not values or sweep.step <= 0:
            raise ConfigError(key, override.input_line, hint="range(start, stop, step) needs start < stop and step > 0")
        if all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)):
            return IntDistribution(int(values[0]), int(values[-1]), step=int(sweep.step))
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(sweep.step))
    if isinstance(sweep, IntervalSweep):
        log_scale = "log" in sweep.tags
        if "int" in sweep.tags:
            return IntDistribution(int(sweep.start), int(sweep.end), log=log_scale)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    raise ConfigError(key, override.input_line, "choice(...), range(...), interval(...), tag(log, interval(...))")


def search_space(params: dict[str, Any], arguments: list[str]) -> tuple[list[str], list[Dimension]]:
    """Split the configured params and the command line into fixed overrides and searched keys.

    The command line wins over ``params`` for the same key, as everywhere else in Hydra.
    """
    parser = OverridesParser.create()
    lines = {k: f"{k}={v}" for k, v in params.items()}
    for override in parser.parse_overrides(arguments):
        lines[override.get_key_element().lstrip("+~")] = override.input_line
    fixed, dims = [], []
    for line in lines.values():
        override = parser.parse_override(line)
        if override.is_sweep_override():
            dims.append(Dimension(override.key_or_group, override.get_key_element(), distribution_of(override)))
        else:
            fixed.append(line)
    return fixed, dims


def grid_values(dim: Dimension) -> list[Any]:
    d = dim.distribution
    if isinstance(d, CategoricalDistribution):
        return list(d.choices)
    if isinstance(d, (IntDistribution, FloatDistribution)) and d.step is not None and not d.log:
        n = int(round((d.high - d.low) / d.step)) + 1
        values = [d.low + i * d.step for i in range(n)]
        return [int(v) for v in values] if isinstance(d, IntDistribution) else [round(v, 12) for v in values]
    raise ConfigError(f"hydra.sweeper.params.{dim.name}", repr(d),
                      "choice(...) or range(...)", "the grid sampler needs a finite set of values")


def is_grid(spec: Any) -> bool:
    if not spec or not spec.get("_target_"):
        return False
    from stm_lab.validation import locate

    cls = locate("hydra.sweeper.sampler._target_", spec["_target_"], "an optuna.samplers class")
    return isinstance(cls, type) and issubclass(cls, optuna.samplers.GridSampler)


def build_sampler(spec: Any, dims: list[Dimension]) -> optuna.samplers.BaseSampler:
    spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
    if not spec:
        return optuna.samplers.TPESampler()
    if is_grid(spec):
        # The grid is walked here, in order, each point enqueued with all its parameters, so a
        # resumed search knows exactly which points are left (GridSampler counts an interrupted
        # point as visited). Nothing is left to sample; the sampler only satisfies Optuna.
        return optuna.samplers.RandomSampler(seed=spec.get("seed"))
    return instantiate(spec)


def grid_points(dims: list[Dimension]) -> list[dict[str, Any]]:
    return [dict(zip([d.name for d in dims], values, strict=True))
            for values in itertools.product(*(grid_values(d) for d in dims))]


def point_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def enqueue_grid(study: optuna.Study, points: list[dict[str, Any]], k: int) -> None:
    """Queue the next k grid points that no trial has finished, is running or is queued for."""
    cut = interrupted(study)
    taken = {point_key(t.params if t.params else t.system_attrs.get("fixed_params", {}))
             for t in study.get_trials(deepcopy=False) if t.number not in cut}
    for point in [p for p in points if point_key(p) not in taken][:k]:
        study.enqueue_trial(point, skip_if_exists=False)


def space_signature(fixed: list[str], dims: list[Dimension], direction: str) -> str:
    """What defines a study: resuming it with something else would mix two searches."""
    return json.dumps({"direction": direction, "fixed": sorted(fixed),
                       "space": {d.name: repr(d.distribution) for d in sorted(dims, key=lambda d: d.name)}},
                      sort_keys=True)


def suggest(trial: optuna.Trial, dim: Dimension) -> Any:
    d = dim.distribution
    if isinstance(d, CategoricalDistribution):
        return trial.suggest_categorical(dim.name, d.choices)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(dim.name, d.low, d.high, step=d.step, log=d.log)
    assert isinstance(d, FloatDistribution)
    return trial.suggest_float(dim.name, d.low, d.high, step=d.step, log=d.log)


def interrupted(study: optuna.Study) -> set[int]:
    return set(study.user_attrs.get(INTERRUPTED, []))


def requeue_interrupted(study: optuna.Study, grid: bool) -> int:
    """Trials left RUNNING by a session that was killed are closed as FAIL, listed as interrupted
    (a study attribute) and asked again with the same parameters. This assumes one search
    process drives a study at a time, which is how this sweeper runs it."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if stale:
        study.set_user_attr(INTERRUPTED, sorted(interrupted(study) | {t.number for t in stale}))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
        if t.params and not grid:  # a grid search finds the point missing by itself
            study.enqueue_trial(t.params, skip_if_exists=False)
    return len(stale)


def n_finished(study: optuna.Study) -> int:
    """Trials that count towards ``n_trials``: every finished one except those cut short."""
    cut = interrupted(study)
    return sum(1 for t in study.get_trials(deepcopy=False, states=FINISHED) if t.number not in cut)


def outcome(ret: JobReturn) -> tuple[TrialState, float | None, str | None]:
    """How a job ended: COMPLETE with its value, or FAIL with the reason (an exception in the job,
    no value, or a value that is not a finite number)."""
    if ret.status != JobStatus.COMPLETED:
        e = ret._return_value
        return TrialState.FAIL, None, f"{type(e).__name__}: {e}"
    value = ret._return_value
    if value is None:
        return TrialState.FAIL, None, "the job returned no value (is optimized_metric among the run's metrics?)"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return TrialState.FAIL, None, f"the job returned {value!r}, not a number"
    if not math.isfinite(value):
        return TrialState.FAIL, None, f"the objective is {value}"
    return TrialState.COMPLETE, value, None


def job_dir(ret: JobReturn) -> str | None:
    try:
        return str(ret.hydra_cfg.hydra.runtime.output_dir)
    except Exception:  # a job that failed before Hydra set it up
        return None


def run_search(sweeper: OptunaSweeper, arguments: list[str]) -> optuna.Study:
    opts, config = sweeper.options, sweeper.config
    assert config is not None and sweeper.launcher is not None
    metric = config.get("optimized_metric")
    if not metric:
        raise ConfigError("optimized_metric", metric, hint="the search needs the run metric to optimise, "
                          "e.g. optimized_metric=val/acc_best; an hparams_search=... preset sets it")
    metric, direction = resolve_objective(config, str(metric), str(opts.get("direction", "auto")))
    n_trials, n_jobs = int(opts.get("n_trials", 20)), int(opts.get("n_jobs", 1))
    if n_jobs < 1:
        raise ConfigError("hydra.sweeper.n_jobs", n_jobs, "an integer >= 1")

    fixed, dims = search_space(dict(opts.get("params") or {}), arguments)
    if not dims:
        raise ConfigError("hydra.sweeper.params", dict(opts.get("params") or {}),
                          hint="nothing to search: give at least one choice(), range() or interval()")
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    storage = opts.get("storage") or default_storage(sweep_dir)
    study_name = str(opts.get("study_name") or "stm_lab")
    # One search process per sweep folder: it alone asks, tells and closes stale trials.
    with RunLock(sweep_dir, what="search"):
        check_storage(sweep_dir, storage, study_name)
        keep_copy(storage)
        return _search(sweeper, sweep_dir, storage, study_name, fixed, dims, metric, direction, n_trials, n_jobs)


def _search(sweeper: OptunaSweeper, sweep_dir: Path, storage: str, study_name: str, fixed: list[str],
            dims: list[Dimension], metric: str, direction: str, n_trials: int, n_jobs: int) -> optuna.Study:
    opts = sweeper.options
    sampler = build_sampler(opts.get("sampler"), dims)
    pruner = instantiate(opts["pruner"]) if opts.get("pruner") else optuna.pruners.NopPruner()
    try:
        study = optuna.create_study(study_name=study_name, storage=storage, sampler=sampler,
                                    pruner=pruner, direction=direction, load_if_exists=True)
    except SQLAlchemyError as e:
        db = sqlite_file(storage)
        copy = f" (the copy kept at the last start: {BACKUP.format(db=db)})" if db is not None else ""
        raise RunFolderError(f"the search's storage {storage} cannot be read ({_first_line(e)}); restore "
                             f"it{copy}, or give the search a new hydra.sweep.dir") from None

    signature = space_signature(fixed, dims, direction)
    known = study.user_attrs.get("signature")
    if known is None:
        study.set_user_attr("signature", signature)
        study.set_user_attr("optimized_metric", str(metric))
    elif known != signature:
        raise ConfigError("hydra.sweeper.study_name", study_name, hint=(
            f"the study in {storage} was created with other fixed overrides, search space or direction "
            f"({known}); re-run the original command to resume it, or choose a new study_name"))
    grid = grid_points(dims) if is_grid(opts.get("sampler")) else None
    if grid is not None:
        n_trials = min(n_trials, len(grid))

    requeued = requeue_interrupted(study, grid is not None)
    done = n_finished(study)
    log.info(f"Optuna study '{study_name}' in {storage}: {done} trials finished"
             + (f", {requeued} interrupted trial(s) queued again" if requeued else "")
             + f", {max(n_trials - done, 0)} to run (n_trials={n_trials}, {n_jobs} at a time); "
             f"{direction} {metric}")
    log.info(f"Search space: {', '.join(f'{d.name}: {d.distribution}' for d in dims)}")

    while (remaining := n_trials - n_finished(study)) > 0:
        k = min(n_jobs, remaining)
        if grid is not None:
            enqueue_grid(study, grid, k)
        trials = [study.ask() for _ in range(k)]
        batch = []
        for trial in trials:
            params = {d.name: suggest(trial, d) for d in dims}
            overrides = [*fixed, *(d.override(params[d.name]) for d in dims)]
            trial.set_user_attr(OVERRIDES, overrides)
            batch.append(overrides)
        # Job numbers are trial numbers, so a job's folder is <sweep dir>/<trial number>.
        # They are consecutive here because one process asks; launch one by one otherwise.
        numbers = [t.number for t in trials]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            returns = launch(sweeper, study, trials, batch, numbers[0])
        else:
            returns = [r for t, o in zip(trials, batch, strict=True) for r in launch(sweeper, study, [t], [o], t.number)]
        for trial, ret in zip(trials, returns, strict=True):
            tell(study, trial, ret)
        write_results(study, sweep_dir, storage, metric)
    write_results(study, sweep_dir, storage, metric)
    return study


# ------------------------------------------------------------ the study's storage

BACKUP = "{db}.bak"  # a copy of the study's SQLite file, taken at each start of the search
SQLITE_HEADER = b"SQLite format 3\x00"


def sqlite_file(storage: str) -> Path | None:
    """The database file of a ``sqlite:///path`` storage URL; None for any other storage."""
    prefix = "sqlite:///"
    return Path(storage[len(prefix):]) if storage.startswith(prefix) and len(storage) > len(prefix) else None


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    return f"{type(getattr(e, 'orig', None) or e).__name__}: {text[0][:160] if text else ''}"


def existing_trials(sweep_dir: Path) -> list[str]:
    """What a search already left in this folder: trials.csv, best.yaml, trial folders."""
    found = [name for name in (TRIALS_CSV, BEST_YAML) if (sweep_dir / name).exists()]
    folders = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()] if sweep_dir.is_dir() else []
    if folders:
        found.append(f"{len(folders)} trial folder{'s' if len(folders) > 1 else ''}")
    return found


def check_storage(sweep_dir: Path, storage: str, study_name: str) -> None:
    """Refuse to start a search that would silently start over: an unreadable database, or
    trials in the folder that the database does not know. Reads only; writes nothing."""
    db = sqlite_file(storage)
    trials = existing_trials(sweep_dir)
    if db is not None:
        backup = Path(BACKUP.format(db=db))
        restore = (f"restore the copy kept at the last start (cp {backup} {db})" if backup.exists()
                   else f"restore it (no copy {backup.name} was found)")
        if db.exists():
            problem = None
            if db.stat().st_size == 0:
                problem = "empty (0 bytes)"
            else:
                with open(db, "rb") as f:
                    if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                        problem = "not an SQLite database (its header is wrong)"
            if problem:
                raise RunFolderError(f"{db} is {problem}, so the search in {sweep_dir} cannot be resumed: {restore}, "
                                     f"or move {db.name} away to start a new search (its trials.csv and trial "
                                     f"folders would then be rewritten: better a new hydra.sweep.dir)")
        elif trials:
            raise RunFolderError(f"{sweep_dir} holds {', '.join(trials)} but no {db.name}: starting would "
                                 f"overwrite them. {restore[0].upper()}{restore[1:]}, or give the search a "
                                 "new hydra.sweep.dir")
    if not trials:
        return
    try:
        names = optuna.study.get_all_study_names(storage=storage)
    except (SQLAlchemyError, ValueError, RuntimeError) as e:
        raise RunFolderError(f"the search's storage {storage} cannot be read ({_first_line(e)}); "
                             "restore it, or give the search a new hydra.sweep.dir") from None
    if study_name not in names:
        where = db if db is not None else storage
        raise RunFolderError(
            f"{sweep_dir} holds {', '.join(trials)} but {where} has no study '{study_name}' "
            f"(it has: {', '.join(names) or 'none'}): to resume that search, set hydra.sweeper.study_name "
            "to its name (or restore the database); to start another, give it a new hydra.sweep.dir")


def keep_copy(storage: str) -> None:
    """``optuna.db.bak``: a consistent copy of the study as it was when this search started
    (SQLite's online backup; written aside, then renamed). Other storages keep their own."""
    db = sqlite_file(storage)
    if db is None or not db.exists():
        return
    import sqlite3

    backup = Path(BACKUP.format(db=db))
    fd, tmp = tempfile.mkstemp(dir=db.parent, prefix=f".{backup.name}.", suffix=".tmp")
    os.close(fd)
    try:
        src, dst = sqlite3.connect(db), sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        os.replace(tmp, backup)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def resolve_objective(config: Any, metric: str, direction: str) -> tuple[str, str]:
    """``optimized_metric: auto`` is the best validation value of the task's headline metric;
    ``direction: auto`` follows the metric's own definition (maximize accuracy, minimize MSE)."""
    if direction not in ("maximize", "minimize", "auto"):
        raise ConfigError("hydra.sweeper.direction", direction, ["auto", "maximize", "minimize"])
    if metric == "auto":
        from stm_lab.build import build_task

        metric = f"val/{build_task(config.data).spec.headline}_best"
    if direction == "auto":
        from stm_lab.metrics import metric_of

        d = metric_of(metric)
        if d is None:
            raise ConfigError("hydra.sweeper.direction", direction, ["maximize", "minimize"],
                              hint=f"{metric} is not a declared metric, so its direction is unknown")
        direction = "maximize" if d.higher_is_better else "minimize"
    return metric, direction


# Each trial's folder is its number (whatever hydra.sweep.subdir says for grid sweeps): the runs
# find their trial by job number, and trials.csv points at <sweep dir>/<number>.
TRIAL_SUBDIR = "hydra.sweep.subdir=${hydra.job.num}"


def launch(sweeper: OptunaSweeper, study: optuna.Study, trials: list[optuna.Trial],
           batch: list[list[str]], first_job: int) -> list[JobReturn]:
    try:
        return list(sweeper.launcher.launch([[*b, TRIAL_SUBDIR] for b in batch], initial_job_idx=first_job))
    except SystemExit as e:
        # Jobs' exits are turned into exceptions (sweeper.exit_as_failure); one that still
        # reaches here ended a launcher: the whole batch is lost, the search goes on.
        failed = JobReturn(status=JobStatus.FAILED, _return_value=e)
        log.error(f"A job of trials {[t.number for t in trials]} exited with code {e.code}")
        return [failed] * len(trials)
    except HydraException:
        # The overrides do not compose: every trial would fail the same way. Close the batch
        # (so a re-run does not take it for interrupted) and stop.
        for t in trials:
            t.set_user_attr(REASON, "the overrides do not compose")
            study.tell(t, state=TrialState.FAIL)
        raise


def tell(study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> None:
    state, value, reason = outcome(ret)
    if (where := job_dir(ret)) is not None:
        trial.set_user_attr(JOB_DIR, where)
    # Read from the storage: the job wrote it there, the Trial object's own copy is stale.
    stored = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
    pruned_at = stored.user_attrs.get(PRUNED_AT)
    if pruned_at is not None:
        # The run stopped early on the pruner's advice; whatever it returned is not comparable.
        study.tell(trial, state=TrialState.PRUNED)
        log.info(f"Trial {trial.number} pruned at step {pruned_at}")
        return
    if state == TrialState.COMPLETE:
        study.tell(trial, value)
        log.info(f"Trial {trial.number} finished: {value:.6g}  {trial.params}")
    else:
        trial.set_user_attr(REASON, reason)
        study.tell(trial, state=TrialState.FAIL)
        log.warning(f"Trial {trial.number} failed ({reason}); the search goes on")


def _write_atomic(path: Path, write: Any) -> None:
    with open_atomic(path, newline="") as f:
        write(f)


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    trials: list[FrozenTrial] = study.get_trials(deepcopy=False)
    cut = interrupted(study)
    names = sorted({k for t in trials for k in t.params})
    rows = []
    for t in trials:
        duration = t.duration.total_seconds() if t.duration is not None else None
        rows.append({
            "number": t.number,
            "state": "INTERRUPTED" if t.number in cut else t.state.name,
            "value": t.value,
            **{f"params.{k}": t.params.get(k) for k in names},
            "duration_s": round(duration, 3) if duration is not None else None,
            "started": t.datetime_start.isoformat() if t.datetime_start else None,
            "job_dir": t.user_attrs.get(JOB_DIR),
            "fail_reason": t.user_attrs.get(REASON),
        })
    return rows


def write_results(study: optuna.Study, sweep_dir: Path, storage: str, metric: str) -> None:
    """trials.csv (one row per trial, every state) and best.yaml, rewritten after every batch so
    an interrupted search still leaves them current."""
    rows = trial_rows(study)
    if rows:
        def write_csv(f: Any) -> None:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

        _write_atomic(sweep_dir / TRIALS_CSV, write_csv)
    counts = {s.name.lower(): sum(r["state"] == s.name for r in rows) for s in FINISHED}
    counts["interrupted"] = sum(r["state"] == "INTERRUPTED" for r in rows)
    best: dict[str, Any] = {"study_name": study.study_name, "storage": storage,
                            "optimized_metric": metric, "direction": study.direction.name.lower(),
                            "trials": counts}
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if complete:
        t = study.best_trial
        best.update(best_trial=t.number, best_value=t.value, best_params=dict(t.params),
                    best_overrides=list(t.user_attrs.get(OVERRIDES, [])),
                    best_job_dir=t.user_attrs.get(JOB_DIR))
    else:
        best.update(best_trial=None, best_value=None, best_params=None)
    _write_atomic(sweep_dir / BEST_YAML, lambda f: f.write(OmegaConf.to_yaml(OmegaConf.create(best))))
