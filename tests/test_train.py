"""Real training runs, in process, on the composed config."""

from pathlib import Path

import pytest
import torch

from stm_lab.build import build_datamodule
from stm_lab.errors import ConfigError
from stm_lab.run import train
from stm_lab.summary import read_summary


def test_summary_is_complete(make_cfg):
    cfg = make_cfg()
    summary = train(cfg)
    on_disk = read_summary(cfg.paths.output_dir)
    assert on_disk["status"] == "completed" == summary["status"]
    assert on_disk["chance"] == {"acc": 0.25, "recall": 0.25, "acc_pos": 0.25, "acc_sequence": 0.25 ** 4}
    assert on_disk["headline"] == "acc" and on_disk["monitor"] == "val/acc"
    m = on_disk["metrics"]
    for key in ("test/acc", "test/recall", "val/acc_best", "val/acc", "train/loss_epoch", "test/acc_sequence"):
        assert key in m, key
    assert not [k for k in m if "_pos" in k]  # a curve is a list, never flattened names
    assert 0.0 <= m["test/acc"] <= 1.0
    # The serial-position curve, as a list in position order.
    assert len(on_disk["curves"]["test/acc_pos"]) == 4
    assert all(0.0 <= v <= 1.0 for v in on_disk["curves"]["test/acc_pos"])
    # Every floor is at least the chance level, and names what set it.
    for name, floor in on_disk["floor"].items():
        assert floor["value"] >= on_disk["chance"][name] and floor["by"] in {"chance", *on_disk["baselines"]}
    assert {"majority", "current_input"} <= set(on_disk["baselines"])
    assert on_disk["config"]["cell"]["name"] == "lstm"
    assert on_disk["config"]["data"]["delay"] == 3
    assert on_disk["wall_time_s"] > 0
    assert "torch" in on_disk["versions"] and "lightning" in on_disk["versions"]
    assert on_disk["best_checkpoint"].endswith(".ckpt")
    ckpt = torch.load(on_disk["best_checkpoint"], weights_only=False)
    assert ckpt["stm_lab_config"]["data"]["delay"] == 3  # the checkpoint reproduces the run
    assert not list(Path(cfg.paths.output_dir).glob(".summary*"))  # no temp file left behind


def test_same_seed_same_result(make_cfg):
    a = train(make_cfg("seed=5", subdir="a"))["metrics"]
    b = train(make_cfg("seed=5", subdir="b"))["metrics"]
    c = train(make_cfg("seed=6", subdir="c"))["metrics"]
    for key in ("test/acc", "test/loss", "val/loss", "train/loss_epoch"):
        assert a[key] == b[key], key
    assert a["test/loss"] != c["test/loss"]


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_csv_logger_receives_metrics(make_cfg, cell):
    cfg = make_cfg(f"cell={cell}", "logger=csv")
    train(cfg)
    rows = (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").read_text()
    assert "val/acc" in rows and "test/recall" in rows
    hparams = (Path(cfg.paths.output_dir) / "csv" / "hparams.yaml").read_text()
    assert f"name: {cell}" in hparams


def test_scored_steps_only(make_cfg):
    """The loss sees only the recall window: changing targets elsewhere changes nothing."""
    cfg = make_cfg()
    dm = build_datamodule(cfg)
    dm.setup()
    batch = dm.tensors("train")
    assert (batch["y"][~batch["mask"]] == -100).all()
    assert batch["mask"].sum(1).eq(4).all()


@pytest.mark.slow
def test_lstm_learns_copy(make_cfg):
    """The one test that proves learning: far above the 1/8 chance level on the recall window, on
    test lists never seen in training (8^4 lists: the rule, not a memorised set)."""
    cfg = make_cfg("data.num_symbols=8", "data.n_train=2000", "data.batch_size=32", "cell.hidden_size=48",
                   "optimizer.lr=0.01", "trainer.max_epochs=6")
    summary = train(cfg)
    m = summary["metrics"]
    assert m["test/acc"] > 0.8, m
    assert summary["data"]["overlap_with_train"] == {"val": 0.0, "test": 0.0}


@pytest.mark.parametrize("override,key", [
    ("cell.hidden_size=-4", "cell.hidden_size"),
    ("data.n_train=0", "data.n_train"),
    ("head=sequence", "head"),
    ("+data.dealy=3", "data.dealy"),
    ("+cell.hiden_size=4", "hiden_size"),
    ("compile=maybe", "compile"),
])
def test_config_errors_before_training(make_cfg, override, key):
    cfg = make_cfg(override)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()
