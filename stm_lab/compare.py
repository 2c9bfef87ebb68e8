"""Compare runs: read their summaries (local dirs or the W&B API), aggregate over seeds, print, plot.

``python -m stm_lab.compare PATH... [--by cell] [--over data.delay] [--metric test/acc]``
(also ``stm-lab compare ...`` and ``python -m stm_lab compare ...``) reads every
``summary.json`` below the given directories and writes, to ``--out``:

- ``runs.csv``: one row per run (flattened config, metrics, status);
- ``aggregate.csv``: the metric per ``--by`` group and ``--over`` value, mean ± std over seeds,
  beside the chance level: the forgetting curve;
- ``span.csv``: the memory span per group, mean ± std over seeds (see :func:`memory_span`);
- ``<metric>_vs_<over>.png``: the forgetting curves with error bars;
- ``curves_<name>.png``: per-run curves such as the serial-position accuracy
  (``test/acc_pos_i``) or the r² per delay (``test/r2_lag_k``), averaged over seeds.

The same functions are the Python API (``load_runs``, ``aggregate``, ``memory_span``, ...)
used by the notebooks.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stm_lab.errors import ConfigError, DataError
from stm_lab.metrics import CURVE_RE
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


# ---------------------------------------------------------------- reading runs

def find_summaries(paths: Iterable[str | Path]) -> list[Path]:
    """Every summary.json at or below each path (a run dir, a sweep dir, or a summary file)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise DataError(f"{p}: no such file or directory")
        if p.is_file():
            found.append(p)
            continue
        hits = sorted(p.rglob(SUMMARY))
        if not hits:
            raise DataError(f"{p}: no {SUMMARY} below this directory (is it a run or sweep dir?)")
        found.extend(hits)
    return found


def read_summaries(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    out = []
    for f in find_summaries(paths):
        try:
            with open(f) as fh:
                s = json.load(fh)
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{f}: not a readable summary ({e})") from e
        if not isinstance(s, dict):
            raise DataError(f"{f}: not a summary (expected a JSON object)")
        s.setdefault("source", str(f))
        out.append(s)
    return out


def wandb_summaries(path: str, group: str | None = None, api: Any = None) -> list[dict[str, Any]]:
    """The runs of ``ENTITY/PROJECT`` (optionally one ``group``) from the W&B public API, as summaries.

    ``api`` defaults to ``wandb.Api()``; anything with the same ``runs(path, filters=)`` method works.
    """
    if api is None:
        import wandb

        api = wandb.Api()
    filters = {"group": group} if group else None
    out = []
    for run in api.runs(path, filters=filters):
        metrics = {k: v for k, v in dict(run.summary_metrics).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith("_")}
        config = dict(run.config)
        state = getattr(run, "state", "")
        out.append({
            # W&B says "finished"; a run only counts when its test metrics were logged too.
            "status": COMPLETED if state == "finished" else (state or "unknown"),
            "task": (config.get("data") or {}).get("task"),
            "cell": (config.get("cell") or {}).get("name"),
            "seed": config.get("seed"),
            "chance": metrics.get("test/chance"),
            "metrics": metrics,
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
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)  # a hashable cell, so it can still group
        else:
            out[key] = v
    return out


def runs_frame(summaries: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: the flattened config (``cell.name``, ``data.delay``, ...), every metric
    (``test/acc``, ...), and ``status``, ``chance``, ``seed``, ``source``."""
    rows = []
    for s in summaries:
        row = _flatten(s.get("config") or {})
        row.update({k: v for k, v in (s.get("metrics") or {}).items()})
        row["status"] = s.get("status", "unknown")
        row["chance"] = s.get("chance", np.nan)
        row["seed"] = s.get("seed", row.get("seed"))
        row["source"] = s.get("source", "")
        rows.append(row)
    return pd.DataFrame(rows)


def load_runs(paths: Iterable[str | Path] = (), wandb_path: str | None = None,
              group: str | None = None, api: Any = None) -> pd.DataFrame:
    """All runs from local dirs, or from W&B when ``wandb_path`` is given, as :func:`runs_frame`."""
    summaries = wandb_summaries(wandb_path, group, api) if wandb_path else read_summaries(paths)
    return runs_frame(summaries)


# ---------------------------------------------------------------- keys

def resolve_key(df: pd.DataFrame, key: str, what: str = "key") -> str:
    """A column of ``df`` for a dotted config key, a metric name, or a short name (``cell``, ``delay``)."""
    if key in df.columns:
        return key
    if key in SHORT_KEYS and SHORT_KEYS[key] in df.columns:
        return SHORT_KEYS[key]
    tail = [c for c in df.columns if c.split(".")[-1] == key]
    if len(tail) == 1:
        return tail[0]
    config_keys = sorted(c for c in df.columns if "." in c and "/" not in c)
    metric_keys = sorted(c for c in df.columns if "/" in c)
    if what == "metric":
        allowed = metric_keys
    else:
        allowed = sorted(k for k, v in SHORT_KEYS.items() if v in df.columns) + config_keys + ["seed"]
    hint = f"ambiguous: {', '.join(tail)}" if len(tail) > 1 else "not found in any run"
    raise ConfigError(f"--{what}", key, allowed, hint=hint)


def completed(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The completed runs, and a count of the others by status."""
    done = df[df["status"] == COMPLETED]
    others = df.loc[df["status"] != COMPLETED, "status"].value_counts().to_dict()
    return done, {str(k): int(v) for k, v in others.items()}


# ---------------------------------------------------------------- across-run measures

def _group_keys(by: Sequence[str], over: str | None) -> list[str]:
    return [*by, *([over] if over else [])]


def aggregate(df: pd.DataFrame, metric: str, by: Sequence[str] = (), over: str | None = None) -> pd.DataFrame:
    """``metric`` per ``by`` group and ``over`` value: mean, std (over seeds), n, and chance.

    With ``over`` the rows are the forgetting curve (metric vs delay, list length, ...).
    """
    keys = _group_keys(by, over)
    data = df.dropna(subset=[metric])
    if not keys:
        data = data.assign(_all="all")
        keys = ["_all"]
    g = data.groupby(keys, dropna=False)
    out = g[metric].agg(mean="mean", std="std", n="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    chance = g["chance"].mean().to_numpy()
    out["chance"] = [metric_chance(metric, c) for c in chance]
    return out.sort_values(keys).reset_index(drop=True)


def default_threshold(chance: float) -> float:
    """Halfway between chance and perfect."""
    return (chance + 1.0) / 2.0


def metric_chance(metric: str, run_chance: float) -> float | None:
    """The chance level of ``metric``: the run's own for accuracy and recall, 0 for an r²,
    unknown (None) for anything else (e.g. MSE, memory capacity: give ``--threshold``)."""
    name = metric.split("/")[-1]
    if name.startswith(("acc", "recall")):
        return None if pd.isna(run_chance) else float(run_chance)
    if name.startswith("r2"):
        return 0.0
    return None


def _span_of(xs: np.ndarray, ys: np.ndarray, threshold: float) -> float:
    """The longest x such that y stays above ``threshold`` at x and every shorter x; 0 if none."""
    span = 0.0
    for x, y in sorted(zip(xs, ys, strict=True)):
        if not y > threshold:
            break
        span = float(x)
    return span


def memory_span(df: pd.DataFrame, metric: str, over: str, by: Sequence[str] = (),
                threshold: float | None = None) -> pd.DataFrame:
    """Memory span per ``by`` group, mean ± std over seeds.

    For each group and seed, the span is the longest ``over`` value (delay or list length)
    at which ``metric`` stays above the threshold at that value and at every shorter one;
    0 means it fails already at the shortest value tested. ``threshold`` defaults to halfway
    between chance (read from the runs' summaries; 0 for an r²) and 1. ``censored`` counts seeds that
    pass at the longest value tested: their true span is at least that long.
    """
    data = df.dropna(subset=[metric, over])
    rows = []
    for key, gdf in data.groupby(list(by), dropna=False) if by else [((), data)]:
        key = key if isinstance(key, tuple) else (key,)
        spans, censored = [], 0
        chance = metric_chance(metric, gdf["chance"].mean())
        if threshold is None and chance is None:
            raise ConfigError("--threshold", None, "a number",
                              hint=f"{metric} has no chance level to put the memory-span threshold by")
        thr = default_threshold(chance) if threshold is None else threshold
        longest = float(gdf[over].max())
        for _, sdf in gdf.groupby("seed", dropna=False):
            curve = sdf.groupby(over)[metric].mean()
            s = _span_of(curve.index.to_numpy(dtype=float), curve.to_numpy(dtype=float), thr)
            spans.append(s)
            censored += s == longest
        rows.append({**dict(zip(by, key, strict=True)), "span_mean": float(np.mean(spans)),
                     "span_std": float(np.std(spans, ddof=1)) if len(spans) > 1 else 0.0,
                     "seeds": len(spans), "censored": censored, "threshold": thr, "chance": chance,
                     "longest_tested": longest})
    return pd.DataFrame(rows)


def curve_families(df: pd.DataFrame) -> dict[str, list[tuple[int, str]]]:
    """Per-run curves present in ``df``: ``{"test/acc_pos": [(1, "test/acc_pos_1"), ...], ...}``."""
    fams: dict[str, list[tuple[int, str]]] = {}
    for c in df.columns:
        m = CURVE_RE.match(str(c))
        if m:
            fams.setdefault(m["name"], []).append((int(m["i"]), c))
    return {k: sorted(v) for k, v in sorted(fams.items())}


def curve_table(df: pd.DataFrame, family: list[tuple[int, str]], by: Sequence[str] = (),
                over: str | None = None) -> pd.DataFrame:
    """A per-run curve (serial position, r² per lag) in long form, mean ± std over seeds."""
    keys = _group_keys(by, over)
    long = df.melt(id_vars=[*keys, "seed"], value_vars=[c for _, c in family], var_name="metric",
                   value_name="value").dropna(subset=["value"])
    index = {c: i for i, c in family}
    long["index"] = long["metric"].map(index)
    out = long.groupby([*keys, "index"], dropna=False)["value"].agg(mean="mean", std="std", n="count")
    out = out.reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


# ---------------------------------------------------------------- output

def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_")


def _label(key: tuple[Any, ...] | Any, by: Sequence[str]) -> str:
    key = key if isinstance(key, tuple) else (key,)
    # The keys are in the legend's title; the label holds only the values.
    return ", ".join(str(v) for v in key) or "all"


def plot_metric(agg: pd.DataFrame, metric: str, by: Sequence[str], over: str, path: Path,
                spans: pd.DataFrame | None = None) -> Path:
    """Metric vs the ``over`` axis, one line per group with std error bars, chance dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    groups = agg.groupby(list(by), dropna=False) if by else [((), agg)]
    for key, g in groups:
        ax.errorbar(g[over], g["mean"], yerr=g["std"], marker="o", capsize=3, label=_label(key, by))
    chance = agg["chance"].dropna()
    if len(chance):
        ax.axhline(float(chance.mean()), color="grey", ls="--", lw=1, label="chance")
    if spans is not None and len(spans) and "threshold" in spans:
        ax.axhline(float(spans["threshold"].mean()), color="grey", ls=":", lw=1, label="span threshold")
    numeric = pd.api.types.is_numeric_dtype(agg[over])
    if numeric and (agg[over] > 0).all() and agg[over].max() / max(agg[over].min(), 1e-12) >= 8:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(agg[over].unique()))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel(over)
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    ax.legend(title=", ".join(by) or None, fontsize=8, title_fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(curves: pd.DataFrame, name: str, by: Sequence[str], over: str | None, path: Path) -> Path:
    """One panel per ``over`` value (or one panel), a line per group: e.g. the serial-position curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted(curves[over].unique()) if over else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 1, 3.4), sharey=True, squeeze=False)
    for ax, p in zip(axes[0], panels, strict=True):
        sub = curves if p is None else curves[curves[over] == p]
        groups = sub.groupby(list(by), dropna=False) if by else [((), sub)]
        for key, g in groups:
            ax.errorbar(g["index"], g["mean"], yerr=g["std"], marker="o", ms=3, capsize=2, label=_label(key, by))
        ax.set_title(f"{over} = {p}" if over else name, fontsize=9)
        ax.set_xlabel("serial position" if name.endswith("_pos") else "lag k")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(name)
    axes[0][-1].legend(title=", ".join(by) or None, fontsize=7, title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_tables(agg: pd.DataFrame, spans: pd.DataFrame | None, metric: str, by: Sequence[str],
                 over: str | None, skipped: dict[str, int], n_runs: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"{metric}: mean ± std over seeds ({n_runs} completed runs)")
    keys = _group_keys(by, over) or ["_all"]
    for k in keys:
        t.add_column(k)
    for c in ("mean ± std", "n", "chance"):
        t.add_column(c, justify="right")
    for _, r in agg.iterrows():
        t.add_row(*(str(r[k]) for k in keys), f"{r['mean']:.4f} ± {r['std']:.4f}", str(int(r["n"])),
                  "" if pd.isna(r["chance"]) else f"{r['chance']:.4f}")
    console.print(t)
    if spans is not None and len(spans):
        s = Table(title=f"memory span over {over} ({metric} > threshold)")
        for k in by:
            s.add_column(k)
        for c in ("span mean ± std", "seeds", "at longest tested", "threshold"):
            s.add_column(c, justify="right")
        for _, r in spans.iterrows():
            s.add_row(*(str(r[k]) for k in by), f"{r['span_mean']:.1f} ± {r['span_std']:.1f}",
                      str(r["seeds"]), f"{r['censored']} (≥ {r['longest_tested']:g})", f"{r['threshold']:.3f}")
        console.print(s)
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
    has_chance = metric_chance(metric, 0.0) is not None or threshold is not None
    spans = memory_span(done, metric, over, by, threshold) if numeric_over and has_chance else None
    families = curve_families(done)
    result: dict[str, Any] = {"runs": done, "aggregate": agg, "span": spans, "skipped": skipped,
                              "metric": metric, "by": by, "over": over, "files": []}
    if not quiet:
        print_tables(agg, spans, metric, by, over, skipped, len(done))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        files = [out / "runs.csv", out / "aggregate.csv"]
        done.to_csv(files[0], index=False)
        agg.to_csv(files[1], index=False)
        if spans is not None:
            spans.to_csv(out / "span.csv", index=False)
            files.append(out / "span.csv")
        if over is not None:
            files.append(plot_metric(agg, metric, by, over, out / f"{_slug(metric)}_vs_{_slug(over)}.png", spans))
        for name, fam in families.items():
            table = curve_table(done, fam, by, over)
            table.to_csv(out / f"curves_{_slug(name)}.csv", index=False)
            files += [out / f"curves_{_slug(name)}.csv",
                      plot_curves(table, name, by, over, out / f"curves_{_slug(name)}.png")]
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
        description="Aggregate run summaries over seeds; print a table; write CSV and figures.")
    p.add_argument("paths", nargs="*", help="run or sweep directories (searched recursively for summary.json)")
    p.add_argument("--by", nargs="+", default=["cell"],
                   help="group key(s): dotted config keys (cell.name) or short names (cell); default cell")
    p.add_argument("--over", default="data.delay",
                   help="x axis: a config key (data.delay, delay, data.list_length); 'none' for no axis")
    p.add_argument("--metric", default="test/acc", help="metric to aggregate (default test/acc)")
    p.add_argument("--threshold", type=float, default=None,
                   help="memory-span threshold (default: halfway between each group's chance and 1)")
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


__all__ = ["aggregate", "compare", "curve_families", "curve_table", "default_threshold", "load_runs",
           "memory_span", "read_summaries", "resolve_key", "runs_frame", "wandb_summaries"]
