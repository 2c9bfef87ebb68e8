"""docs/extending.md, executed: its files are written as they stand in the doc, and its commands
run (on smaller sizes). A task, a cell, a head and a metric from outside stm_lab train, are
reported beside their chance levels and floors, and are compared — with no edit to stm_lab."""

from __future__ import annotations

import itertools
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose_config

from stm_lab import compare
from stm_lab.build import build
from stm_lab.metrics import METRICS
from stm_lab.run import train

DOC = Path(__file__).parents[1] / "docs" / "extending.md"
FAST = ["data.n_train=256", "data.n_val=64", "data.n_test=64", "data.batch_size=32", "data.on_device=false",
        "cell.hidden_size=16", "trainer.max_epochs=2", "trainer.accelerator=cpu", "logger=none",
        "callbacks.progress_bar=null", "optimizer.lr=0.01"]


def doc_files() -> dict[str, str]:
    return dict(re.findall(r"```\w+ file=(\S+)\n(.*?)```", DOC.read_text(), flags=re.S))


def doc_commands() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[3:] for line in lines if line.startswith("python -m stm_lab ")]


@pytest.fixture
def mypkg(tmp_path, monkeypatch):
    for name, text in doc_files().items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in ("mypkg", "mypkg/conf"):
        (tmp_path / package / "__init__.py").touch()
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[module]
    METRICS.unregister("top2_acc")


def test_the_doc_has_the_four_recipes():
    assert set(doc_files()) == {"mypkg/tasks.py", "mypkg/metrics.py", "mypkg/cells.py", "mypkg/heads.py",
                                "mypkg/conf/data/first_symbol.yaml", "mypkg/conf/cell/leaky.yaml",
                                "mypkg/conf/head/mlp.yaml"}
    single, sweep = doc_commands()
    assert single[0] != "-m" and sweep[0] == "-m"


def test_own_task_cell_head_and_metric_train_and_are_reported(mypkg, tmp_path):
    single, _ = doc_commands()
    cfg = compose_config([*single, *FAST], tmp_path / "run")
    parts = build(cfg)  # the composed config builds the user's classes
    assert type(parts.task).__name__ == "FirstSymbolTask" and type(parts.model.core).__name__ == "LeakyRNN"
    assert type(parts.model.head).__name__ == "MLPHead"
    summary = train(cfg)
    assert summary["status"] == "completed", summary.get("reason")
    assert summary["cell"] == "leaky"
    m = summary["metrics"]
    assert {"test/acc", "test/recall", "test/top2_acc", "val/acc_best"} <= set(m)
    assert m["test/top2_acc"] >= m["test/acc"]  # top-2 can only be easier
    assert summary["chance"]["top2_acc"] == 2 / 8 and "top2_acc" in summary["floor"]
    assert {"majority", "current_input"} <= set(summary["baselines"])
    ckpt = torch.load(summary["best_checkpoint"], weights_only=False)
    assert ckpt["stm_lab_config"]["cell"]["_target_"] == "mypkg.cells.LeakyRNN"


def test_own_cell_is_swept_and_compared_with_a_built_in_one(mypkg, tmp_path, capsys):
    _, sweep_args = doc_commands()
    fixed = [a for a in sweep_args[1:] if "," not in a.split("=", 1)[1] or a.startswith("hydra.searchpath")]
    axes = [[f"{a.split('=', 1)[0]}={v}" for v in a.split("=", 1)[1].split(",")]
            for a in sweep_args[1:] if a not in fixed]
    jobs = list(itertools.product(*axes))
    assert len(jobs) == 12  # 2 cells x 2 delays x 3 seeds, as the doc's command
    sweep = tmp_path / "sweep"
    # Two delays and two seeds of each cell keep the test short; the command is the doc's.
    for i, job in enumerate(j for j in jobs if not j[-1].endswith("=2")):
        assert train(compose_config([*fixed, *job, *FAST, "trainer.max_epochs=1"], sweep / str(i)))["status"] == "completed"
    assert compare.main([str(sweep), "--by", "cell", "--over", "delay", "--no-files"]) == 0
    out = capsys.readouterr().out
    assert "leaky" in out and "gru" in out
    assert "pairwise differences of test/acc" in out  # leaky vs gru at each delay, with a verdict


def test_custom_cell_from_the_command_line_alone(mypkg, tmp_path):
    cfg = compose_config(["cell=custom", "cell._target_=mypkg.cells.LeakyRNN", "+cell.leak=0.5", *FAST],
                         tmp_path / "custom")
    parts = build(cfg)
    assert type(parts.model.core).__name__ == "LeakyRNN" and parts.model.core.leak == 0.5
    bad = compose_config(["cell=custom", "cell._target_=mypkg.cells.LeakyRNN", "+cell.leak=2", *FAST],
                         tmp_path / "bad")
    with pytest.raises(Exception, match=r"config key 'cell.leak' has a bad value 2"):
        build(bad)
