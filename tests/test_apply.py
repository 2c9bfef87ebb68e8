"""Applying a trained run: api.load_run, stm_lab.eval (new conditions), stm_lab.predict."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from test_cli import ENV

from stm_lab import api, compare
from stm_lab import predict as predict_cli
from stm_lab.errors import ConfigError, DataError
from stm_lab.eval import evaluate
from stm_lab.run import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny copy run, trained once for the module (the test TINY config, 2 epochs)."""
    from conftest import TINY

    out = tmp_path_factory.mktemp("trained") / "run"
    summary = train(compose_config([*TINY, "trainer.max_epochs=2", "cell.hidden_size=24", "optimizer.lr=0.01"], out))
    assert summary["status"] == "completed"
    return out



def _eval(tmp_path: Path, overrides) -> dict:
    from stm_lab.config import compose

    cfg = compose(["wandb=false", *overrides], tmp_path / "eval", config_name="eval")
    return evaluate(cfg)


def _files(run: Path) -> dict[str, float]:
    return {str(p.relative_to(run)): p.stat().st_mtime for p in run.rglob("*") if p.is_file()}


def test_load_run_rebuilds_the_trained_model(trained):
    run = api.load_run(trained)
    summary = json.loads((trained / "summary.json").read_text())
    assert run.checkpoint == Path(summary["best_checkpoint"]) and not run.model.training
    ckpt = torch.load(run.checkpoint, weights_only=False)
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][key]), key
    assert api.load_run(trained, "last").checkpoint.name == "last.ckpt"


def test_eval_on_its_own_test_split_reproduces_the_training_run_exactly(trained, tmp_path):
    before = _files(trained)
    result = _eval(tmp_path, [f"run={trained}"])
    summary = json.loads((trained / "summary.json").read_text())
    assert result["status"] == "completed"
    for key in ("test/acc", "test/recall", "test/acc_sequence", "test/loss"):
        assert result["metrics"][key] == summary["metrics"][key], key
    assert result["curves"]["test/acc_pos"] == summary["curves"]["test/acc_pos"]
    assert result["floor"] == summary["floor"] and result["chance"] == summary["chance"]
    assert (tmp_path / "eval" / "eval.json").is_file()
    assert _files(trained) == before  # nothing written into the source run's folder


def test_eval_at_a_new_delay_says_train_and_test_values_side_by_side(trained, tmp_path):
    result = _eval(tmp_path, [f"run={trained}", "+data.delay=40", "+data.n_test=32"])
    assert result["conditions"] == {"delay": {"trained": 3, "tested": 40}, "n_test": {"trained": 64, "tested": 32}}
    assert result["config"]["data"]["delay"] == 40 and result["trained_data"]["delay"] == 3
    assert result["data"]["sizes"]["test"] == 32 and result["status"] == "completed"


def test_eval_refuses_overrides_the_model_cannot_take(trained, tmp_path):
    with pytest.raises(ConfigError, match=r"data\.num_symbols.*output_size 4 → 6"):
        _eval(tmp_path, [f"run={trained}", "+data.num_symbols=6"])
    with pytest.raises(ConfigError, match=r"data\.dealy.*not a key of the run's data config"):
        _eval(tmp_path, [f"run={trained}", "+data.dealy=4"])


@pytest.mark.parametrize("case,message", [
    ("missing", "no such run folder"),
    ("no_checkpoint", "no best checkpoint"),
    ("corrupt", "not a readable checkpoint"),
])
def test_eval_bad_runs_name_the_file(trained, tmp_path, case, message):
    import shutil

    if case == "missing":
        run = tmp_path / "nope"
    else:
        run = tmp_path / "copy"
        shutil.copytree(trained, run)
        summary = json.loads((run / "summary.json").read_text())
        best = run / "checkpoints" / Path(summary["best_checkpoint"]).name
        summary["best_checkpoint"] = str(best)
        (run / "summary.json").write_text(json.dumps(summary))
        if case == "no_checkpoint":
            shutil.rmtree(run / "checkpoints")
        else:
            best.write_bytes(b"torn")
    with pytest.raises(DataError, match=message):
        _eval(tmp_path, [f"run={run}"])


def test_eval_cli_one_model_many_delays_then_compare(trained, tmp_path, capsys):
    """The issue's command, as a user types it: -m after run=, a sweep of 3 delays, then compare."""
    sweep = tmp_path / "evals"
    r = subprocess.run([sys.executable, "-m", "stm_lab.eval", f"run={trained}", "-m", "data.delay=3,10,30",
                        f"hydra.sweep.dir={sweep}", "wandb=false"], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    records = sorted(sweep.glob("*/eval.json"))
    assert len(records) == 3
    assert {json.loads(p.read_text())["conditions"]["delay"]["tested"] for p in records} == {3, 10, 30}
    assert compare.main([str(sweep), "--over", "delay", "--out", str(tmp_path / "cmp")]) == 0
    agg = __import__("pandas").read_csv(tmp_path / "cmp" / "aggregate.csv")
    assert sorted(agg["data.delay"]) == [3, 10, 30] and agg["trained"].eq(3).all()
    # A model key on eval is refused before anything runs, naming it; exit code 2.
    r = subprocess.run([sys.executable, "-m", "stm_lab.eval", f"run={trained}", "cell.hidden_size=8"],
                       env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "config key 'cell.hidden_size' cannot be set on an evaluation" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_predict_token_task_answers_at_the_scored_steps(trained):
    out = io.StringIO()
    line = json.dumps({"x": [1, 2, 3, 4, 0, 0, 5, 0, 0, 0, 0], "mask": [0] * 7 + [1] * 4})
    assert predict_cli.main([f"run={trained}"], stdin=io.StringIO(line + "\n"), stdout=out) == 0
    answer = json.loads(out.getvalue())
    assert len(answer["prediction"]) == 4 and all(1 <= s <= 4 for s in answer["prediction"])  # symbol tokens
    assert len(answer["probabilities"]) == 4


def test_predict_errors_are_one_line(trained, capsys):
    assert predict_cli.main([f"run={trained}", "--input", "[99]"]) == 2
    assert "token ids must be in [0, 6)" in capsys.readouterr().err
    assert predict_cli.main(["--input", "[1]"]) == 2
    assert "config key 'run'" in capsys.readouterr().err
