"""Compare runs: read their summaries (local dirs or the W&B API), aggregate over seeds with
confidence intervals, print, plot.

``python -m stm_lab.compare PATH... [--by cell] [--over data.delay] [--metric test/acc]``
(also ``stm-lab compare ...`` and ``python -m stm_lab compare ...``) reads every
``summary.json`` below the given directories and writes, to ``--out``:

- ``runs.csv``: one row per run (flattened config, metrics, chance levels, floors, status);
- ``aggregate.csv``: the metric per group (``--by``, and the task: tasks are never mixed) and
  ``--over`` value — mean, std, a 95% t-interval over seeds — beside the metric's chance level
  and memoryless floor as each run recorded them: the forgetting curve;
- ``span.csv`` and ``span_seeds.csv``: the memory span per group (mean, interval) and per seed,
  with each seed's margin to the threshold (see :func:`memory_span`);
- ``comparisons.csv``: every pair of groups at each ``--over`` value, with the 95% interval of the
  difference; a pair whose interval contains 0 is "not resolved", never ranked;
- ``<metric>_vs_<over>.png`` and ``curves_<name>.{csv,png}``: the forgetting curves, and per-run
  curves (serial-position accuracy, r² per lag) averaged over seeds.

The same functions are the Python API (``load_runs``, ``aggregate``, ``memory_span``, ...)
used by the notebooks.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stm_lab.errors import ConfigError, DataError
from stm_lab.metrics import metric_of
from stm_lab.runfolder import REPLACED
from stm_lab.summary import SUMMARY

# Short names a user can type for the usual sweep axes.
SHORT_KEYS = {
    "cell": "cell.name",
    "task": "data.task",
    "delay": "data.delay",
    "list_length": "data.list_length",
    "hidden_size": "cell.hidden_size",
    "num_layers": "cell.num_layers",
    "lr": "optimizer.lr",
}
COMPLETED = "completed"
UNREADABLE = "unreadable"
LEVEL = 0.95  # confidence level of every interval
METRIC_PREFIXES = ("train/", "val/", "test/")


# ---------------------------------------------------------------- reading runs

EVAL = "eval.json"  # stm_lab.eval's record: read like a summary, with the training conditions beside it


def find_summaries(paths: Iterable[str | Path]) -> list[Path]:
    """Every summary.json (and eval.json) at or below each path (a run, sweep or evaluation
    folder, or one such file)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise DataError(f"{p}: no such file or directory")
        if p.is_file():
            found.append(p)
            continue
        # Not the runs a fresh start kept aside in <run>/replaced/ (stm_lab.record): superseded.
        hits = sorted(h for h in [*p.rglob(SUMMARY), *p.rglob(EVAL)] if REPLACED not in h.relative_to(p).parts[:-1])
        if not hits:
            raise DataError(f"{p}: no {SUMMARY} or {EVAL} below this directory (is it a run, sweep or eval dir?)")
        found.extend(hits)
    return found


def read_summaries(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The summaries below ``paths``. One that cannot be read is reported (naming the file) and
    counted as ``unreadable``; it never stops the comparison."""
    out = []
    for f in find_summaries(paths):
        try:
            with open(f) as fh:
                s = json.load(fh)
            if not isinstance(s, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            print(f"stm_lab compare: skipped {f}: not a readable summary ({e})", file=sys.stderr)
            out.append({"status": UNREADABLE, "source": str(f)})
            continue
        s.setdefault("source", str(f))
        out.append(s)
    return out


def wandb_summaries(path: str, group: str | None = None, api: Any = None) -> list[dict[str, Any]]:
    """The runs of ``ENTITY/PROJECT`` (optionally one ``group``) from the W&B public API, as summaries.

    Chance levels and floors come from the run summary's ``chance/<metric>`` and ``floor/<metric>``
    keys (stm_lab writes them there). ``api`` defaults to ``wandb.Api()``; anything with the same
    ``runs(path, filters=)`` method works.
    """
    if api is None:
        import wandb

        api = wandb.Api()
    filters = {"group": group} if group else None
    out = []
    for run in api.runs(path, filters=filters):
        values = {k: v for k, v in dict(run.summary_metrics).items()
                  if isinstance(v, int | float) and not isinstance(v, bool) and not k.startswith("_")}
        config = dict(run.config)
        state = getattr(run, "state", "")
        out.append({
            # W&B says "finished"; a run only counts when its test metrics were logged too.
            "status": COMPLETED if state == "finished" else (state or "unknown"),
            "task": (config.get("data") or {}).get("task"),
            "cell": (config.get("cell") or {}).get("name"),
            "seed": config.get("seed"),
            "chance": {k.split("/", 1)[1]: v for k, v in values.items() if k.startswith("chance/")},
            "floor": {k.split("/", 1)[1]: {"value": v, "by": "recorded"} for k, v in values.items()
                      if k.startswith("floor/")},
            "metrics": {k: v for k, v in values.items() if k.startswith(METRIC_PREFIXES)},
            "config": config,
            "source": f"wandb:{path}/{run.id}",
        })
    if not out:
        raise DataError(f"wandb:{path}: no runs" + (f" in group {group!r}" if group else ""))
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list | tuple):
            out[key] = json.dumps(v)  # a hashable cell, so it can still group
        else:
            out[key] = v
    return out


def references(summary: dict[str, Any]) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """A summary's chance levels and floors, per metric name (``acc``, ``mse``...)."""
    chance = summary.get("chance")
    if not isinstance(chance, dict):  # a summary written before chance levels were per metric
        chance = {} if chance is None else {summary.get("chance_metric") or "acc": chance}
    return chance, summary.get("floor") or {}


def runs_frame(summaries: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: the flattened config (``cell.name``, ``data.delay``, ...), every scalar
    metric (``test/acc``, ...), ``chance/<metric>``, ``floor/<metric>`` and ``floor_by/<metric>``,
    ``status``, ``task``, ``seed``, ``source``, and ``curves`` (a dict of lists)."""
    rows = []
    for s in summaries:
        row = _flatten(s.get("config") or {})
        row.update({k: v for k, v in (s.get("metrics") or {}).items() if isinstance(v, int | float)})
        chance, floor = references(s)
        row.update({f"chance/{k}": v for k, v in chance.items()})
        row.update({f"floor/{k}": f.get("value") for k, f in floor.items()})
        row.update({f"floor_by/{k}": f.get("by") for k, f in floor.items()})
        row["status"] = s.get("status", "unknown")
        row["task"] = s.get("task", row.get("data.task"))
        row["seed"] = s.get("seed", row.get("seed"))
        row["source"] = s.get("source", "")
        row["curves"] = s.get("curves") or {}
        # An evaluation: its config is the run's with the data overrides applied; the values the
        # model was trained with sit beside them as trained.data.<key>.
        row["kind"] = "eval" if "trained_data" in s else "run"
        row.update({f"trained.data.{k}": v for k, v in (s.get("trained_data") or {}).items()
                    if not isinstance(v, dict | list)})
        rows.append(row)
    return pd.DataFrame(rows)


def load_runs(paths: Iterable[str | Path] = (), wandb_path: str | None = None,
              group: str | None = None, api: Any = None) -> pd.DataFrame:
    """All runs from local dirs, or from W&B when ``wandb_path`` is given, as :func:`runs_frame`."""
    summaries = wandb_summaries(wandb_path, group, api) if wandb_path else read_summaries(paths)
    return runs_frame(summaries)


# ---------------------------------------------------------------- keys

def metric_columns(df: pd.DataFrame) -> list[str]:
    return sorted(c for c in df.columns if str(c).startswith(METRIC_PREFIXES))


def resolve_key(df: pd.DataFrame, key: str, what: str = "key") -> str:
    """A column of ``df`` for a dotted config key, a metric name, or a short name (``cell``, ``delay``)."""
    if key in df.columns and (what != "metric" or key in metric_columns(df)):
        return key
    if key in SHORT_KEYS and SHORT_KEYS[key] in df.columns:
        return SHORT_KEYS[key]
    tail = [c for c in df.columns if "/" not in str(c) and str(c).split(".")[-1] == key]
    if len(tail) == 1 and what != "metric":
        return tail[0]
    if what == "metric":
        allowed = metric_columns(df)
    else:
        config_keys = sorted(c for c in df.columns if "." in str(c) and "/" not in str(c))
        allowed = sorted(k for k, v in SHORT_KEYS.items() if v in df.columns) + config_keys + ["seed"]
    hint = f"ambiguous: {', '.join(tail)}" if len(tail) > 1 else "not found in any run"
    raise ConfigError(f"--{what}", key, allowed, hint=hint)


def completed(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The completed runs, and a count of the others by status."""
    done = df[df["status"] == COMPLETED]
    others = df.loc[df["status"] != COMPLETED, "status"].value_counts().to_dict()
    return done, {str(k): int(v) for k, v in others.items()}


def metric_name(metric: str) -> str:
    """``test/acc`` → ``acc``; ``val/acc_best`` → ``acc``: the name chance levels are kept under."""
    d = metric_of(metric)
    return d.name if d is not None else metric.split("/")[-1]


# ---------------------------------------------------------------- statistics

def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """The two-sided t-interval of the mean; (nan, nan) with fewer than two values."""
    from scipy import stats

    x = np.asarray([v for v in values if not pd.isna(v)], dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def difference_interval(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Mean of ``a`` minus mean of ``b`` with Welch's t-interval (unequal variances)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, dof) * se
    return diff, diff - half, diff + half


def verdict(diff: float, low: float, high: float, a: str, b: str, higher_is_better: bool = True) -> str:
    """``a > b``, ``b > a`` or ``not resolved`` (the interval contains 0, or there is none). For
    a metric where lower is better (an MSE) the better one is named first, ``b < a (lower is
    better)``, so a verdict never reads as if the worse model won."""
    if pd.isna(low) or pd.isna(high) or low <= 0 <= high:
        return "not resolved"
    high_side, low_side = (a, b) if diff > 0 else (b, a)
    return f"{high_side} > {low_side}" if higher_is_better else f"{low_side} < {high_side} (lower is better)"


# ---------------------------------------------------------------- across-run measures

def _group_keys(by: Sequence[str], over: str | None) -> list[str]:
    return [*by, *([over] if over else [])]


def with_task(df: pd.DataFrame, by: Sequence[str]) -> list[str]:
    """``by``, with the task in front when the runs hold more than one: tasks are never averaged
    together (their chance levels and metrics mean different things)."""
    if "task" in df.columns and df["task"].nunique(dropna=True) > 1 and "task" not in by and "data.task" not in by:
        return ["task", *by]
    return list(by)


def _reference(g: pd.DataFrame, column: str) -> float:
    if column not in g.columns:
        return math.nan
    values = g[column].dropna()
    return float(values.mean()) if len(values) else math.nan


def aggregate(df: pd.DataFrame, metric: str, by: Sequence[str] = (), over: str | None = None,
              level: float = LEVEL) -> pd.DataFrame:
    """``metric`` per group and ``over`` value: mean, std and a ``level`` t-interval over seeds (n),
    and the metric's chance level and floor as the runs recorded them (``floor_by``: which
    baseline sets it). With ``over`` the rows are the forgetting curve."""
    by = with_task(df, by)
    keys = _group_keys(by, over)
    data = df.dropna(subset=[metric])
    if not keys:
        data = data.assign(_all="all")
        keys = ["_all"]
    name = metric_name(metric)
    rows = []
    for key, g in data.groupby(keys, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        values = g[metric].astype(float)
        low, high = t_interval(values, level)
        by_col = f"floor_by/{name}"
        row = {**dict(zip(keys, key, strict=True)), "mean": values.mean(),
               "std": values.std(ddof=1) if len(values) > 1 else 0.0, "n": len(values),
               "ci_low": low, "ci_high": high, "chance": _reference(g, f"chance/{name}"),
               "floor": _reference(g, f"floor/{name}"),
               "floor_by": g[by_col].mode().iloc[0] if by_col in g and g[by_col].notna().any() else None}
        if over and f"trained.{over}" in g and g[f"trained.{over}"].notna().any():
            row["trained"] = g[f"trained.{over}"].dropna().iloc[0]  # the training value, for the figure
        rows.append(row)
    return pd.DataFrame(rows).sort_values(keys).reset_index(drop=True)


def default_threshold(reference: float) -> float:
    """Halfway between the reference (the floor, else the chance level) and perfect."""
    return (reference + 1.0) / 2.0


def _span_of(xs: Sequence[float], ys: Sequence[float], thresholds: float | Sequence[float]) -> float:
    """The longest x such that y stays above its threshold (one for all, or one per x) at x and
    every shorter x; 0 if none. An x whose threshold is NaN (nothing to measure there, see
    :func:`memory_span`) is passed over: it neither extends nor ends the span."""
    if isinstance(thresholds, int | float):
        thresholds = [float(thresholds)] * len(xs)
    span = 0.0
    for x, y, thr in sorted(zip(xs, ys, thresholds, strict=True)):
        if math.isnan(thr):
            continue
        if not y > thr:
            break
        span = float(x)
    return span


def span_reference(g: pd.DataFrame, metric: str) -> tuple[float | None, str]:
    """What a span threshold is put against: the highest floor the runs recorded for the metric
    (a predictor that cannot remember already scores it), else its chance level, else 0 for r²."""
    name = metric_name(metric)
    d = metric_of(metric)
    if d is not None and not d.higher_is_better:
        return None, ""
    floor = g[f"floor/{name}"].dropna() if f"floor/{name}" in g else pd.Series(dtype=float)
    if len(floor):
        return float(floor.max()), "floor"
    chance = g[f"chance/{name}"].dropna() if f"chance/{name}" in g else pd.Series(dtype=float)
    if len(chance):
        return float(chance.max()), "chance"
    if name.startswith("r2"):
        return 0.0, "chance"
    return None, ""


def span_references(g: pd.DataFrame, metric: str, over: str) -> tuple[dict[float, float], str]:
    """:func:`span_reference` at each ``over`` value: the floor can move with the condition (with
    no distractor, bAbI's last-mentioned place answers every question; with 8 it is at chance),
    so each value is put against what a memoryless predictor scores there."""
    refs = {float(x): span_reference(gx, metric) for x, gx in g.groupby(over)}
    sources = {source for _, source in refs.values() if source}
    source = "floor" if "floor" in sources else next(iter(sources), "")
    return {x: ref for x, (ref, _) in refs.items() if ref is not None}, source


def memory_span(df: pd.DataFrame, metric: str, over: str, by: Sequence[str] = (),
                threshold: float | None = None, level: float = LEVEL,
                per_seed: bool = False) -> pd.DataFrame:
    """Memory span per group: mean, std and a ``level`` t-interval over seeds.

    For each group and seed, the span is the longest ``over`` value (delay or list length) at
    which ``metric`` stays above the threshold at that value and at every shorter one; 0 means
    it fails already at the shortest value tested. ``threshold`` defaults, at each value, to
    halfway between the reference there — the highest floor recorded at that value, else the
    chance level — and 1 (``threshold`` and ``threshold_min`` give its range over the values).
    A value where the reference is already 1 (a memoryless predictor is perfect there) says
    nothing about memory: it is listed in ``passed_over`` and neither extends nor ends the span.
    ``censored`` counts seeds that pass at the longest value tested (their true span is at least
    that long).

    With ``per_seed``, one row per group and seed instead: the span, ``margin`` (the metric minus
    the threshold at the span: how safely it passed) and ``next_margin`` (the same at the next
    value tested: how clearly it failed there).
    """
    by = with_task(df, by)
    data = df.dropna(subset=[metric, over])
    rows, seed_rows = [], []
    for key, gdf in data.groupby(list(by), dropna=False) if by else [((), data)]:
        key = key if isinstance(key, tuple) else (key,)
        values = sorted(float(x) for x in gdf[over].unique())
        if threshold is None:
            refs, source = span_references(gdf, metric, over)
            if not refs:
                raise ConfigError("--threshold", None, "a number",
                                  hint=f"{metric} has no chance level or floor to put the memory-span threshold by")
            thr_at = {x: default_threshold(refs[x]) if x in refs and refs[x] < 1.0 else math.nan for x in values}
        else:
            refs, source = {}, "given"
            thr_at = dict.fromkeys(values, float(threshold))
        measured = [t for t in thr_at.values() if not math.isnan(t)]
        passed_over = [x for x, t in thr_at.items() if math.isnan(t)]
        longest = values[-1]
        spans, censored = [], 0
        for seed, sdf in gdf.groupby("seed", dropna=False):
            curve = sdf.groupby(over)[metric].mean().sort_index()
            xs, ys = curve.index.to_numpy(dtype=float), curve.to_numpy(dtype=float)
            thrs = [thr_at[float(x)] for x in xs]
            span = _span_of(xs, ys, thrs)
            spans.append(span)
            censored += span == longest
            at = np.flatnonzero(xs == span)
            nxt = [i for i in np.flatnonzero(xs > span) if not math.isnan(thrs[i])]
            seed_rows.append({**dict(zip(by, key, strict=True)), "seed": seed, "span": span,
                              "margin": float(ys[at[0]] - thrs[at[0]]) if len(at) else math.nan,
                              "next_margin": float(ys[nxt[0]] - thrs[nxt[0]]) if nxt else math.nan,
                              "threshold": thrs[at[0]] if len(at) else (thrs[nxt[0]] if nxt else math.nan)})
        low, high = t_interval(spans, level)
        informative = [refs[x] for x in values if x in refs and not math.isnan(thr_at[x])]
        rows.append({**dict(zip(by, key, strict=True)), "span_mean": float(np.mean(spans)),
                     "span_std": float(np.std(spans, ddof=1)) if len(spans) > 1 else 0.0,
                     "ci_low": low, "ci_high": high, "seeds": len(spans), "censored": censored,
                     "threshold": max(measured, default=math.nan),
                     "threshold_min": min(measured, default=math.nan), "reference": source,
                     "reference_value": max(informative, default=math.nan),
                     "passed_over": " ".join(f"{x:g}" for x in passed_over),
                     "longest_tested": longest})
    return pd.DataFrame(seed_rows if per_seed else rows)


def comparisons(df: pd.DataFrame, metric: str, by: Sequence[str], over: str | None = None,
                level: float = LEVEL) -> pd.DataFrame:
    """Every pair of ``by`` groups (at each ``over`` value): the difference of means with its
    ``level`` Welch interval, and a verdict — ``not resolved`` when the interval contains 0."""
    by = with_task(df, by)
    if not by:
        return pd.DataFrame()
    data = df.dropna(subset=[metric])
    d = metric_of(metric)
    higher_is_better = d is None or d.higher_is_better
    blocks = data.groupby(over, dropna=False) if over else [(None, data)]
    rows = []
    for at, block in blocks:
        groups = {k if isinstance(k, tuple) else (k,): g[metric].astype(float).to_numpy()
                  for k, g in block.groupby(list(by), dropna=False)}
        names = sorted(groups, key=str)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if "task" in by and a[by.index("task")] != b[by.index("task")]:
                    continue  # never rank one task against another
                diff, low, high = difference_interval(groups[a], groups[b], level)
                la, lb = ", ".join(map(str, a)), ", ".join(map(str, b))
                rows.append({**({over: at} if over else {}), "a": la, "b": lb, "mean_a": groups[a].mean(),
                             "mean_b": groups[b].mean(), "diff": diff, "ci_low": low, "ci_high": high,
                             "verdict": verdict(diff, low, high, la, lb, higher_is_better)})
    return pd.DataFrame(rows)


def curve_families(df: pd.DataFrame) -> list[str]:
    """The names of the per-run curves present (``test/acc_pos``, ``test/r2_lag``...)."""
    if "curves" not in df.columns:
        return []
    return sorted({name for c in df["curves"] if isinstance(c, dict) for name in c})


def curve_table(df: pd.DataFrame, name: str, by: Sequence[str] = (), over: str | None = None,
                level: float = LEVEL) -> pd.DataFrame:
    """A per-run curve (serial position, r² per lag) in long form — ``index`` from 1 — with mean,
    std and a ``level`` t-interval over seeds."""
    by = with_task(df, by)
    keys = _group_keys(by, over)
    rows = []
    for _, run in df.iterrows():
        curve = run["curves"].get(name) if isinstance(run.get("curves"), dict) else None
        for i, v in enumerate(curve or [], start=1):
            rows.append({**{k: run[k] for k in keys}, "seed": run["seed"], "index": i, "value": v})
    long = pd.DataFrame(rows)
    if long.empty:
        return long
    out = []
    for key, g in long.groupby([*keys, "index"], dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        low, high = t_interval(g["value"], level)
        out.append({**dict(zip([*keys, "index"], key, strict=True)), "mean": g["value"].mean(),
                    "std": g["value"].std(ddof=1) if len(g) > 1 else 0.0, "n": len(g),
                    "ci_low": low, "ci_high": high})
    return pd.DataFrame(out)


# ---------------------------------------------------------------- output

def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_")


def _label(key: tuple[Any, ...] | Any) -> str:
    key = key if isinstance(key, tuple) else (key,)
    # The keys are in the legend's title; the label holds only the values.
    return ", ".join(str(v) for v in key) or "all"


def _yerr(g: pd.DataFrame) -> np.ndarray | None:
    """Asymmetric error bars from the interval columns (none where there is no interval)."""
    low = (g["mean"] - g["ci_low"]).to_numpy(dtype=float)
    high = (g["ci_high"] - g["mean"]).to_numpy(dtype=float)
    return np.nan_to_num(np.vstack([low, high]))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return matplotlib, plt


def plot_metric(agg: pd.DataFrame, metric: str, by: Sequence[str], over: str, path: Path,
                spans: pd.DataFrame | None = None) -> Path:
    """Metric vs the ``over`` axis: one line per group with its interval over seeds; the memoryless
    floor dashed, the chance level dotted, the span threshold dash-dotted."""
    matplotlib, plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = agg.groupby(list(by), dropna=False) if by else [((), agg)]
    for key, g in groups:
        ax.errorbar(g[over], g["mean"], yerr=_yerr(g), marker="o", capsize=3, label=_label(key))
    numeric = pd.api.types.is_numeric_dtype(agg[over])
    for column, style, label in (("floor", "--", "memoryless floor"), ("chance", ":", "chance")):
        values = agg.groupby(over)[column].max().dropna()
        if values.nunique() > 1 and numeric:  # it moves with the condition: drawn along the axis
            ax.plot(values.index, values.to_numpy(), color="grey", ls=style, lw=1, label=label)
        elif len(values):
            ax.axhline(float(values.max()), color="grey", ls=style, lw=1, label=label)
    if spans is not None and len(spans) and spans["threshold"].notna().any():
        if np.allclose(spans["threshold"], spans["threshold_min"], equal_nan=True):
            ax.axhline(float(spans["threshold"].mean()), color="tab:red", ls="-.", lw=0.8, label="span threshold")
        elif numeric and spans["reference"].iloc[0] == "floor":  # halfway from each value's floor to 1
            floor = agg.groupby(over)["floor"].max().dropna()
            floor = floor[floor < 1.0]
            ax.plot(floor.index, [default_threshold(f) for f in floor], color="tab:red", ls="-.", lw=0.8,
                    label="span threshold")
    trained = agg.get("trained")
    if trained is not None:  # evaluations: where each model was trained, on the same axis
        for i, value in enumerate(sorted(trained.dropna().unique())):
            ax.axvline(float(value), color="grey", ls=(0, (1, 3)), lw=1, label="trained at" if i == 0 else None)
    if numeric and (agg[over] > 0).all() and agg[over].max() / max(agg[over].min(), 1e-12) >= 8:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(agg[over].unique()))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel(over)
    ax.set_ylabel(f"{metric} (mean, {LEVEL:.0%} CI over seeds)")
    ax.legend(title=", ".join(by) or None, fontsize=8, title_fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(curves: pd.DataFrame, name: str, by: Sequence[str], over: str | None, path: Path) -> Path:
    """One panel per ``over`` value (or one panel), a line per group: e.g. the serial-position curve."""
    _, plt = _plt()
    d = metric_of(name)
    panels = sorted(curves[over].unique()) if over else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 1, 3.4), sharey=True, squeeze=False)
    for ax, p in zip(axes[0], panels, strict=True):
        sub = curves if p is None else curves[curves[over] == p]
        groups = sub.groupby(list(by), dropna=False) if by else [((), sub)]
        for key, g in groups:
            ax.errorbar(g["index"], g["mean"], yerr=_yerr(g), marker="o", ms=3, capsize=2, label=_label(key))
        ax.set_title(f"{over} = {p}" if over else name, fontsize=9)
        ax.set_xlabel(d.curve if d is not None and d.curve else "index")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(name)
    axes[0][-1].legend(title=", ".join(by) or None, fontsize=7, title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(x: Any) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _interval(low: Any, high: Any) -> str:
    return "" if pd.isna(low) else f"[{low:.4f}, {high:.4f}]"


def _threshold_text(r: pd.Series, over: str | None) -> str:
    """The span threshold as the table shows it: one number, or its range when the floor moves
    with the ``over`` value, and the values passed over (a memoryless predictor is perfect there)."""
    if math.isnan(r["threshold"]):
        text = "none"
    elif math.isclose(r["threshold"], r["threshold_min"]):
        text = f"{r['threshold']:.3f}"
    else:
        text = f"{r['threshold_min']:.3f}–{r['threshold']:.3f}"
    if r["reference"] in ("floor", "chance"):
        text += f" (½ way from the {r['reference']} to 1"
        text += ")" if math.isclose(r["threshold"], r["threshold_min"]) else f" at each {over})"
    if r["passed_over"]:
        text += f"; passed over {over} {r['passed_over']} (floor at 1)"
    return text


def print_tables(agg: pd.DataFrame, spans: pd.DataFrame | None, pairs: pd.DataFrame, metric: str,
                 by: Sequence[str], over: str | None, skipped: dict[str, int], n_runs: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    t = Table(title=f"{metric}: mean over seeds, {LEVEL:.0%} CI ({n_runs} completed runs)")
    keys = [k for k in agg.columns if k not in ("mean", "std", "n", "ci_low", "ci_high", "chance", "floor", "floor_by",
                                              "trained")]
    for k in keys:
        t.add_column(k)
    for c in ("mean", f"{LEVEL:.0%} CI", "n", "chance", "floor (memoryless)"):
        t.add_column(c, justify="right")
    for _, r in agg.iterrows():
        floor = f"{_fmt(r['floor'])} ({r['floor_by']})" if not pd.isna(r["floor"]) else ""
        t.add_row(*(str(r[k]) for k in keys), _fmt(r["mean"]), _interval(r["ci_low"], r["ci_high"]),
                  str(int(r["n"])), _fmt(r["chance"]), floor)
    console.print(t)
    if spans is not None and len(spans):
        s = Table(title=f"memory span over {over} ({metric} > threshold at that value and every shorter one)")
        span_keys = [k for k in spans.columns if k not in ("span_mean", "span_std", "ci_low", "ci_high", "seeds",
                                                          "censored", "threshold", "threshold_min", "reference",
                                                          "reference_value", "passed_over", "longest_tested")]
        for k in span_keys:
            s.add_column(k)
        for c in ("span mean", f"{LEVEL:.0%} CI", "seeds", "at longest tested", "threshold"):
            s.add_column(c, justify="right")
        for _, r in spans.iterrows():
            s.add_row(*(str(r[k]) for k in span_keys), f"{r['span_mean']:.1f}", _interval(r["ci_low"], r["ci_high"]).replace(".0000", ""),
                      str(r["seeds"]), f"{r['censored']} (≥ {r['longest_tested']:g})", _threshold_text(r, over))
        console.print(s)
    if len(pairs):
        resolved = pairs[pairs["verdict"] != "not resolved"]
        c = Table(title=f"pairwise differences of {metric} ({LEVEL:.0%} Welch interval; "
                        f"{len(resolved)} of {len(pairs)} resolved)")
        cols = [k for k in pairs.columns if k not in ("mean_a", "mean_b", "diff", "ci_low", "ci_high", "verdict")]
        for k in cols:
            c.add_column(k)
        for k in ("difference a − b", f"{LEVEL:.0%} CI", "verdict"):
            c.add_column(k, justify="right")
        for _, r in pairs.iterrows():
            c.add_row(*(str(r[k]) for k in cols), f"{r['diff']:+.4f}", _interval(r["ci_low"], r["ci_high"]),
                      r["verdict"])
        console.print(c)
    if skipped:
        parts = ", ".join(f"{n} {status}" for status, n in sorted(skipped.items()))
        console.print(f"[yellow]not aggregated (status not completed): {parts}[/yellow]")


def compare(df: pd.DataFrame, metric: str = "test/acc", by: Sequence[str] = ("cell",),
            over: str | None = "data.delay", out: str | Path | None = None,
            threshold: float | None = None, quiet: bool = False) -> dict[str, Any]:
    """Aggregate, print and (with ``out``) write CSV and figures. Returns the frames and file paths."""
    if df.empty:
        raise DataError("no runs to compare")
    done, skipped = completed(df)
    if done.empty:
        parts = ", ".join(f"{n} {s}" for s, n in skipped.items())
        raise DataError(f"no completed runs to compare ({parts})")
    metric = resolve_key(done, metric, "metric")
    by = [resolve_key(done, b, "by") for b in by]
    over = resolve_key(done, over, "over") if over else None
    agg = aggregate(done, metric, by, over)
    numeric_over = over is not None and pd.api.types.is_numeric_dtype(done[over])
    d = metric_of(metric)
    can_span = threshold is not None or (d is not None and d.higher_is_better and
                                         span_reference(done, metric)[0] is not None)
    spans = memory_span(done, metric, over, by, threshold) if numeric_over and can_span else None
    seeds = memory_span(done, metric, over, by, threshold, per_seed=True) if spans is not None else None
    pairs = comparisons(done, metric, by, over)
    families = curve_families(done)
    shown_by = with_task(done, by)
    result: dict[str, Any] = {"runs": done, "aggregate": agg, "span": spans, "span_seeds": seeds,
                              "comparisons": pairs, "skipped": skipped, "metric": metric, "by": shown_by,
                              "over": over, "files": []}
    if not quiet:
        print_tables(agg, spans, pairs, metric, shown_by, over, skipped, len(done))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        files = [out / "runs.csv", out / "aggregate.csv"]
        done.drop(columns=["curves"], errors="ignore").to_csv(files[0], index=False)
        agg.to_csv(files[1], index=False)
        for frame, name in ((spans, "span.csv"), (seeds, "span_seeds.csv"), (pairs, "comparisons.csv")):
            if frame is not None and len(frame):
                frame.to_csv(out / name, index=False)
                files.append(out / name)
        if over is not None:
            files.append(plot_metric(agg, metric, shown_by, over, out / f"{_slug(metric)}_vs_{_slug(over)}.png", spans))
        for name in families:
            table = curve_table(done, name, by, over)
            if table.empty:
                continue
            table.to_csv(out / f"curves_{_slug(name)}.csv", index=False)
            files += [out / f"curves_{_slug(name)}.csv",
                      plot_curves(table, name, shown_by, over, out / f"curves_{_slug(name)}.png")]
        result["files"] = files
        if not quiet:
            print(f"wrote {', '.join(str(f) for f in files)}")
    return result


# ---------------------------------------------------------------- command line

def _split(values: list[str]) -> list[str]:
    return [v for item in values for v in item.split(",") if v]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stm-lab compare",
        description="Aggregate run summaries over seeds with confidence intervals; print tables; "
                    "write CSV and figures.")
    p.add_argument("paths", nargs="*", help="run or sweep directories (searched recursively for summary.json)")
    p.add_argument("--by", nargs="+", default=["cell"],
                   help="group key(s): dotted config keys (cell.name) or short names (cell); default cell")
    p.add_argument("--over", default="data.delay",
                   help="x axis: a config key (data.delay, delay, data.list_length); 'none' for no axis")
    p.add_argument("--metric", default="test/acc", help="metric to aggregate (default test/acc)")
    p.add_argument("--threshold", type=float, default=None,
                   help="memory-span threshold (default: halfway between each group's floor and 1)")
    p.add_argument("--out", default=None, help="folder for CSV and PNG (default: compare/ in the first path)")
    p.add_argument("--no-files", action="store_true", help="print only")
    p.add_argument("--wandb", metavar="ENTITY/PROJECT", default=None, help="read runs from the W&B API instead")
    p.add_argument("--group", default=None, help="with --wandb: only this W&B group (one sweep)")
    return p


def main(argv: Sequence[str] | None = None, api: Any = None) -> int:
    args = parser().parse_args(argv)
    if not args.paths and not args.wandb:
        print("stm_lab compare: give run or sweep directories, or --wandb ENTITY/PROJECT", file=sys.stderr)
        return 2
    over = None if str(args.over).lower() in ("none", "") else args.over
    out = None
    if not args.no_files:
        out = args.out or (Path(args.paths[0]) / "compare" if args.paths else Path("compare") / _slug(args.wandb))
    try:
        df = load_runs(args.paths, args.wandb, args.group, api)
        compare(df, args.metric, _split(args.by), over, out, args.threshold)
    except (ConfigError, DataError) as e:
        print(f"stm_lab compare: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["aggregate", "compare", "comparisons", "curve_families", "curve_table", "default_threshold",
           "difference_interval", "load_runs", "memory_span", "read_summaries", "resolve_key", "runs_frame",
           "t_interval", "wandb_summaries"]
