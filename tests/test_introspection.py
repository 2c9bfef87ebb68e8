"""Gate statistics, the callback that logs them, and training on the reference path."""

from pathlib import Path

import pytest
import torch

from stm_lab import api
from stm_lab.build import build_datamodule, build_model
from stm_lab.cells import Internals
from stm_lab.errors import ConfigError
from stm_lab.introspection import GateStatistics, gate_statistics
from stm_lab.run import train


def test_gate_statistics_by_hand():
    B, T, H = 2, 4, 3
    gates = torch.full((1, B, T, 4, H), 0.5)
    gates[..., 1, :] = 0.99  # forget gate: saturated everywhere
    gates[:, :, 1:3, 1, :] = 0.6  # ... except during the delay (steps 1, 2)
    hidden = torch.zeros(1, B, T, H)
    hidden[:, :, 1:3] = 2.0 / 3 ** 0.5  # norm 2 during the delay, 0 elsewhere
    internals = Internals("lstm", hidden=hidden, cell=hidden.clone(), gates=gates)
    delay = torch.zeros(B, T, dtype=torch.bool)
    delay[:, 1:3] = True
    s = gate_statistics(internals, delay, saturation=0.05)
    assert s["gate_forget_mean"] == pytest.approx((0.99 * 2 + 0.6 * 2) / 4)
    assert s["gate_forget_mean_delay"] == pytest.approx(0.6)
    # i, f, o are the sigmoid gates: only f is saturated, on half the steps.
    assert s["gate_saturated_frac"] == pytest.approx(1 / 3 * 0.5)
    assert s["h_norm_delay"] == pytest.approx(2.0)
    assert s["h_norm"] == pytest.approx(1.0)
    assert s["c_norm_delay"] == pytest.approx(2.0)
    assert "gate_forget_mean_delay" not in gate_statistics(internals, None)


def test_copy_delay_mask_is_the_blanks_before_the_delimiter():
    task = api.task("copy", delay=4, list_length=3, num_symbols=5)
    data = task.generate(2, __import__("numpy").random.default_rng(0))
    x, mask = torch.from_numpy(data["x"]), torch.from_numpy(data["mask"])
    delay = task.delay_mask(x, mask)
    assert delay.shape == mask.shape and delay.dtype == torch.bool
    assert delay[0].nonzero().flatten().tolist() == [3, 4, 5]  # the T-1 = 3 blanks
    assert (x[delay] == 0).all() and not (delay & mask).any()
    assert (x[:, 6] == task.delimiter).all()  # the step right after the delay is the cue


def test_callback_config_errors():
    with pytest.raises(ConfigError, match="every_n_epochs"):
        GateStatistics(every_n_epochs=0, max_sequences=8, saturation=0.05, prefix="val/")


def test_callback_logs_every_n_epochs_and_paths_share_checkpoints(make_cfg):
    """Train on the fast path with the callback on; the checkpoint loads into a reference model."""
    cfg = make_cfg("callbacks=gate_stats", "callbacks.gate_stats.every_n_epochs=2",
                   "callbacks.progress_bar=null", "logger=csv", "trainer.max_epochs=2")
    summary = train(cfg)
    lines = (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    logged = [r for r in rows if r["val/gate_forget_mean"]]
    assert [r["epoch"] for r in logged] == ["1"]  # every 2nd epoch: only the second
    for key in ("val/gate_saturated_frac", "val/h_norm_delay", "val/c_norm_delay"):
        assert logged[0][key], key
    assert 0 < summary["metrics"]["val/gate_forget_mean"] < 1

    ckpt = torch.load(summary["best_checkpoint"], weights_only=False)
    ref_cfg = make_cfg("cell.impl=reference", subdir="ref")
    dm = build_datamodule(ref_cfg)
    dm.setup()
    fast_model, ref_model = build_model(cfg, dm.spec), build_model(ref_cfg, dm.spec)
    fast_model.load_state_dict(ckpt["state_dict"])
    ref_model.load_state_dict(ckpt["state_dict"])  # strict: the same keys
    batch = dm.tensors("val")
    with torch.no_grad():
        torch.testing.assert_close(ref_model.eval()(batch).preds, fast_model.eval()(batch).preds, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", ["gru"])
def test_training_on_the_reference_path_matches_the_fast_path(make_cfg, cell):
    """Same seed, same initial weights, same data: the two paths train to the same numbers."""
    fast = train(make_cfg(f"cell={cell}", subdir="fast"))["metrics"]
    ref = train(make_cfg(f"cell={cell}", "cell.impl=reference", subdir="ref"))["metrics"]
    for key in ("train/loss_epoch", "val/loss", "test/loss"):
        assert ref[key] == pytest.approx(fast[key], rel=1e-4), key
