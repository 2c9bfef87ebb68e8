"""compare: reading summaries, aggregating over seeds, memory span, files, errors, the W&B path."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from stm_lab import compare

# Known accuracies per (cell, delay, seed): "a" stays above the threshold 0.5625 up to
# delay 10 for every seed; "b" up to 5 for seeds 0 and 1 and fails already at 5 for seed 2.
ACC = {
    ("a", 5): [1.0, 0.9, 0.95], ("a", 10): [0.8, 0.7, 0.9], ("a", 20): [0.3, 0.2, 0.6],
    ("b", 5): [0.7, 0.6, 0.5], ("b", 10): [0.2, 0.7, 0.2], ("b", 20): [0.1, 0.1, 0.2],
}


def _summary(cell: str, delay: int, seed: int, acc: float, status: str = "completed", task: str = "copy",
             chance: float = 0.125, floor: float | None = None) -> dict:
    return {
        "status": status, "task": task, "cell": cell, "seed": seed, "chance": {"acc": chance},
        "floor": {"acc": {"value": floor, "by": "majority"}} if floor is not None else {},
        "metrics": {"test/acc": acc, "test/mc": 1.4},
        "curves": {"test/acc_pos": [min(1.0, acc + 0.1), acc, max(0.0, acc - 0.1)], "test/r2_lag": [0.9, 0.5]},
        "config": {"seed": seed, "cell": {"name": cell, "hidden_size": 8},
                   "data": {"task": task, "delay": delay, "list_length": 3}},
    }


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    n = 0
    for (cell, delay), accs in ACC.items():
        for seed, acc in enumerate(accs):
            d = root / f"{n}" if n % 2 else root / "nested" / f"{n}"  # found at any depth
            d.mkdir(parents=True)
            (d / "summary.json").write_text(json.dumps(_summary(cell, delay, seed, acc)))
            n += 1
    failed = _summary("a", 40, 0, 0.99, status="failed")
    (root / "failed").mkdir()
    (root / "failed" / "summary.json").write_text(json.dumps(failed))
    return root


def test_aggregate_forgetting_curve(sweep):
    df = compare.load_runs([sweep])
    assert len(df) == 19
    done, skipped = compare.completed(df)
    assert skipped == {"failed": 1} and len(done) == 18
    agg = compare.aggregate(done, "test/acc", ["cell.name"], "data.delay")
    assert list(agg["data.delay"]) == [5, 10, 20, 5, 10, 20]
    row = agg[(agg["cell.name"] == "b") & (agg["data.delay"] == 10)].iloc[0]
    assert row["mean"] == pytest.approx(pd.Series(ACC[("b", 10)]).mean())
    assert row["std"] == pytest.approx(pd.Series(ACC[("b", 10)]).std())  # over seeds, ddof=1
    assert row["n"] == 3 and row["chance"] == 0.125
    # The 95% t-interval: mean ± t(0.975, 2) * std / sqrt(3), t = 4.3027
    half = 4.302653 * pd.Series(ACC[("b", 10)]).std() / 3 ** 0.5
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((row["mean"] - half, row["mean"] + half), rel=1e-5)


def test_memory_span_per_seed_mean_std(sweep):
    done, _ = compare.completed(compare.load_runs([sweep]))
    spans = compare.memory_span(done, "test/acc", "data.delay", ["cell.name"]).set_index("cell.name")
    assert spans.loc["a", "threshold"] == pytest.approx((0.125 + 1) / 2)
    # a: seeds reach 10, 10, 20 (seed 2 scores 0.6 > 0.5625 at 20: censored at the longest delay)
    assert spans.loc["a", "span_mean"] == pytest.approx(40 / 3)
    assert spans.loc["a", "span_std"] == pytest.approx(pd.Series([10, 10, 20]).std())
    assert spans.loc["a", "censored"] == 1
    # b: seed 0 passes 5 only (span 5), seed 1 passes 5 and 10 (span 10), seed 2 fails at 5 (span 0)
    assert spans.loc["b", "span_mean"] == pytest.approx(5.0)
    explicit = compare.memory_span(done, "test/acc", "data.delay", ["cell.name"], threshold=0.05)
    assert explicit.set_index("cell.name").loc["b", "span_mean"] == 20


def test_span_stops_at_first_failure():
    """A curve that dips and recovers has the span of the dip."""
    assert compare._span_of([5, 10, 20, 40], [0.9, 0.4, 0.9, 0.9], 0.5) == 5
    assert compare._span_of([40, 5, 20, 10], [0.9, 0.9, 0.9, 0.9], 0.5) == 40
    assert compare._span_of([5, 10], [0.3, 0.9], 0.5) == 0
    assert compare._span_of([0, 2, 4], [1.0, 0.9, 0.2], [math.nan, 0.6, 0.6]) == 2  # 0: nothing to measure


def test_cli_writes_table_csv_and_figures(sweep, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert compare.main([str(sweep), "--by", "cell", "--over", "delay", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "memory span" in printed and "1 failed" in printed and "0.125" in printed
    agg = pd.read_csv(out / "aggregate.csv")
    assert set(agg.columns) >= {"cell.name", "data.delay", "mean", "std", "n", "chance"}
    assert len(pd.read_csv(out / "runs.csv")) == 18  # completed only
    span = pd.read_csv(out / "span.csv")
    assert sorted(span["cell.name"]) == ["a", "b"]
    pairs = pd.read_csv(out / "comparisons.csv")
    assert set(pairs["verdict"]) <= {"a > b", "b > a", "not resolved"}
    for png in ("test_acc_vs_data_delay.png", "curves_test_acc_pos.png", "curves_test_r2_lag.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    pos = pd.read_csv(out / "curves_test_acc_pos.csv")
    first = pos[(pos["cell.name"] == "a") & (pos["data.delay"] == 5) & (pos["index"] == 1)].iloc[0]
    assert first["mean"] == pytest.approx((1.0 + 1.0 + 1.0) / 3)  # min(1, acc + 0.1)
    lag = pd.read_csv(out / "curves_test_r2_lag.csv")
    assert sorted(lag["index"].unique()) == [1, 2]


def test_cli_other_metric_and_dotted_keys(sweep, tmp_path):
    out = tmp_path / "mc"
    assert compare.main([str(sweep), "--by", "cell.name", "--over", "data.delay", "--metric", "test/mc",
                         "--out", str(out)]) == 0
    agg = pd.read_csv(out / "aggregate.csv")
    assert agg["mean"].to_numpy() == pytest.approx([1.4] * 6)
    assert agg["chance"].isna().all()  # no chance level for a capacity
    assert not (out / "span.csv").exists()  # and so no span without --threshold
    assert compare.main([str(sweep), "--metric", "test/mc", "--threshold", "1", "--out", str(out)]) == 0
    assert pd.read_csv(out / "span.csv")["span_mean"].eq(20).all()


@pytest.mark.parametrize("args,expected", [
    (["--by", "colour"], "config key '--by' has a bad value 'colour'; allowed: cell, delay, hidden_size"),
    (["--over", "data.nope"], "'--over' has a bad value 'data.nope'"),
    (["--metric", "test/accuracy"], "'--metric' has a bad value 'test/accuracy'; allowed: test/acc, test/mc"),
])
def test_unknown_keys_name_the_allowed_ones(sweep, args, expected, capsys):
    assert compare.main([str(sweep), "--no-files", *args]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert "Traceback" not in err


def test_empty_and_missing_dirs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert compare.main([str(tmp_path / "empty")]) == 2
    assert "no summary.json or eval.json below" in capsys.readouterr().err
    assert compare.main([str(tmp_path / "absent")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert compare.main([]) == 2


def test_only_failed_runs(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "summary.json").write_text(json.dumps(_summary("a", 5, 0, 0.5, status="failed")))
    assert compare.main([str(tmp_path)]) == 2
    assert "no completed runs to compare (1 failed)" in capsys.readouterr().err


class FakeApi:
    """Stands in for ``wandb.Api()``: the same ``runs(path, filters=)`` call and run attributes."""

    def __init__(self, runs):
        self._runs, self.calls = runs, []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        group = (filters or {}).get("group")
        return [r for r in self._runs if group is None or r.group == group]


def _wandb_run(i: int, s: dict, group: str = "sweep1", state: str = "finished"):
    summary = {**s["metrics"], "chance/acc": s["chance"]["acc"], "_step": 10, "_wandb": {"runtime": 3},
               "test/acc_pos_curve": {"_type": "table-file"}}
    return SimpleNamespace(id=f"run{i}", group=group, state=state, summary_metrics=summary, config=s["config"])


def test_wandb_api_path(tmp_path):
    runs = [_wandb_run(i, _summary(c, d, seed, acc)) for i, ((c, d), accs) in enumerate(ACC.items())
            for seed, acc in enumerate(accs)]
    runs.append(_wandb_run(99, _summary("a", 5, 0, 0.0), state="crashed"))
    runs.append(_wandb_run(100, _summary("a", 5, 0, 0.0), group="other"))
    api = FakeApi(runs)
    out = tmp_path / "w"
    assert compare.main(["--wandb", "me/stm_lab", "--group", "sweep1", "--out", str(out)], api=api) == 0
    assert api.calls == [("me/stm_lab", {"group": "sweep1"})]
    agg = pd.read_csv(out / "aggregate.csv")
    assert len(agg) == 6 and agg["n"].eq(3).all()  # the crashed run and the other group are left out
    assert (out / "span.csv").exists()
    df = compare.load_runs(wandb_path="me/stm_lab", api=api)
    assert set(df["status"]) == {"completed", "crashed"}
    assert "test/acc_pos_curve" not in df.columns  # a table reference is not a scalar metric
    with pytest.raises(compare.DataError, match="no runs in group 'none'"):
        compare.wandb_summaries("me/stm_lab", "none", api)


def _write(root: Path, runs: list[dict]) -> Path:
    for i, s in enumerate(runs):
        (root / str(i)).mkdir(parents=True)
        (root / str(i) / "summary.json").write_text(json.dumps(s))
    return root


def test_span_puts_each_value_against_its_own_floor_and_passes_over_a_perfect_one(tmp_path):
    """bAbI task 1: with 0 distractors the last-mentioned place answers every question (floor 1);
    with 2 or more it is near chance. Taking the highest floor for every value made the threshold
    1 and every span 0; each value is put against its own floor, and 0 distractors says nothing."""
    floors = {0: 1.0, 2: 0.18, 4: 0.18, 8: 0.17}
    accs = {("gru", 0): [1.0, 1.0], ("gru", 2): [0.99, 0.98], ("gru", 4): [0.35, 0.30], ("gru", 8): [0.17, 0.18],
            ("rnn", 0): [1.0, 1.0], ("rnn", 2): [0.3, 0.9], ("rnn", 4): [0.18, 0.2], ("rnn", 8): [0.17, 0.16]}
    runs = [_summary(c, d, seed, acc, task="babi", chance=1 / 6, floor=floors[d])
            for (c, d), values in accs.items() for seed, acc in enumerate(values)]
    df = compare.load_runs([_write(tmp_path / "babi", runs)])
    spans = compare.memory_span(df, "test/acc", "data.delay", ["cell.name"]).set_index("cell.name")
    assert spans.loc["gru", "span_mean"] == 2 and spans.loc["gru", "passed_over"] == "0"
    assert spans.loc["gru", "threshold"] == pytest.approx(0.59) and spans.loc["gru", "threshold_min"] == pytest.approx(0.585)
    seeds = compare.memory_span(df, "test/acc", "data.delay", ["cell.name"], per_seed=True)
    assert seeds[seeds["cell.name"] == "rnn"]["span"].tolist() == [0.0, 2.0]  # seed 0 fails at 2: span 0
    assert compare.compare(df, "test/acc", ["cell.name"], "data.delay", out=tmp_path / "out", quiet=True)["files"]


def test_span_threshold_uses_the_recorded_floor_not_a_guess_from_the_name(tmp_path):
    """n-back: the headline's chance is 0.5 but always answering "no match" already scores 0.667 in
    accuracy; the span threshold for test/acc is halfway from that floor to 1, as recorded."""
    runs = [_summary(c, d, seed, acc, task="nback", chance=0.5, floor=0.667)
            for (c, d), accs in {("gru", 2): [0.95, 0.9], ("gru", 4): [0.8, 0.82]}.items()
            for seed, acc in enumerate(accs)]
    df = compare.load_runs([_write(tmp_path / "nback", runs)])
    spans = compare.memory_span(df, "test/acc", "data.delay", ["cell.name"])
    assert spans.loc[0, "threshold"] == pytest.approx((0.667 + 1) / 2)
    assert spans.loc[0, "reference"] == "floor" and spans.loc[0, "span_mean"] == 2
    agg = compare.aggregate(df, "test/acc", ["cell.name"], "data.delay")
    assert agg["chance"].eq(0.5).all() and agg["floor"].eq(0.667).all() and agg["floor_by"].eq("majority").all()
    seeds = compare.memory_span(df, "test/acc", "data.delay", ["cell.name"], per_seed=True)
    assert seeds["margin"].to_numpy() == pytest.approx([0.95 - 0.8335, 0.9 - 0.8335])
    assert seeds["next_margin"].to_numpy() == pytest.approx([0.8 - 0.8335, 0.82 - 0.8335])


def test_tasks_are_never_averaged_together(tmp_path, capsys):
    runs = [_summary("lstm", 5, 0, 0.9), _summary("lstm", 5, 1, 0.8),
            _summary("lstm", 5, 0, 0.6, task="dms", chance=0.5), _summary("lstm", 5, 1, 0.7, task="dms", chance=0.5)]
    root = _write(tmp_path / "mixed", runs)
    result = compare.compare(compare.load_runs([root]), "test/acc", ["cell"], "delay", out=tmp_path / "o")
    agg = result["aggregate"].set_index("task")
    assert agg.loc["copy", "mean"] == pytest.approx(0.85) and agg.loc["copy", "chance"] == 0.125
    assert agg.loc["dms", "mean"] == pytest.approx(0.65) and agg.loc["dms", "chance"] == 0.5
    assert result["comparisons"].empty  # one cell per task: nothing to rank, and never across tasks


def test_a_corrupt_summary_is_skipped_and_named(sweep, tmp_path, capsys):
    bad = sweep / "broken" / "summary.json"
    bad.parent.mkdir()
    bad.write_text('{"status": "compl')
    assert compare.main([str(sweep), "--no-files"]) == 0
    captured = capsys.readouterr()
    assert f"skipped {bad}: not a readable summary" in captured.err
    assert "1 unreadable" in captured.out


def test_differences_inside_the_interval_are_not_resolved():
    diff, low, high = compare.difference_interval([0.80, 0.82, 0.84], [0.79, 0.83, 0.85])
    assert low < 0 < high and compare.verdict(diff, low, high, "a", "b") == "not resolved"
    diff, low, high = compare.difference_interval([0.90, 0.91, 0.92], [0.50, 0.52, 0.51])
    assert compare.verdict(diff, low, high, "a", "b") == "a > b" and low > 0
    assert compare.verdict(0.3, float("nan"), float("nan"), "a", "b") == "not resolved"  # one seed: no interval
    # Lower is better (an MSE): the lower one is named as the better, never "worse > better".
    assert compare.verdict(-0.16, -0.18, -0.15, "gru", "lstm", higher_is_better=False) == "gru < lstm (lower is better)"
    assert compare.verdict(0.16, 0.15, 0.18, "lstm", "gru", higher_is_better=False) == "gru < lstm (lower is better)"


def test_python_m_stm_lab_compare_dispatch(sweep, monkeypatch, capsys):
    from stm_lab import __main__ as entry

    monkeypatch.setattr(sys, "argv", ["stm-lab", "compare", str(sweep), "--no-files"])
    with pytest.raises(SystemExit) as exit_info:
        entry.main()
    assert exit_info.value.code == 0
    assert "test/acc: mean over seeds, 95% CI (18 completed runs)" in capsys.readouterr().out


def test_wandb_curve_is_a_line_plot_of_the_table():
    from stm_lab.loggers import log_wandb_curves

    logged = []
    run = SimpleNamespace(name="copy-lstm-seed0", log=logged.append)
    log_wandb_curves(run, {"test/acc_pos": [0.9, 0.5, 0.25], "test/r2_lag": [0.7]})
    (payload,) = logged
    chart = payload["test/acc_pos_curve"]
    assert chart.table.columns == ["serial position", "acc_pos"]
    assert chart.table.data == [[1, 0.9], [2, 0.5], [3, 0.25]]
    assert payload["test/r2_lag_curve"].table.columns == ["lag", "r2_lag"]
