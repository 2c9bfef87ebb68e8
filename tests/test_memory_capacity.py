"""Memory capacity: the r^2 metric, the ridge readout, and Jaeger's bounds (MC <= N; a delay
line of N units reaches N)."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from stm_lab import api
from stm_lab.build import build_datamodule, build_head, build_model
from stm_lab.metrics import LagR2, MemoryCapacity, PositiveRecall
from stm_lab.run import train

MC_TINY = ["data=memory_capacity", "data.max_delay=16", "data.washout=16", "data.length=80",
           "data.n_train=200", "data.n_val=20", "data.n_test=100", "data.batch_size=50",
           "logger=none", "callbacks.progress_bar=null", "trainer.accelerator=cpu"]


def test_lag_r2_is_squared_correlation_under_any_batch_split():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(300, 3, generator=g)
    p = torch.stack([2 * y[:, 0] + 1, y[:, 1] + torch.randn(300, generator=g), torch.ones(300)], 1)
    expected = [1.0, float(np.corrcoef(y[:, 1], p[:, 1])[0, 1] ** 2), 0.0]  # constant readout: 0
    for chunks in (1, 7, 300):
        r2, mc = LagR2(3), MemoryCapacity(3)
        for yi, pi in zip(y.chunk(chunks), p.chunk(chunks), strict=True):
            r2.update(pi, yi)
            mc.update(pi, yi)
        assert r2.compute().tolist() == pytest.approx(expected, abs=1e-5)
        assert float(mc.compute()) == pytest.approx(sum(expected), abs=1e-5)


def test_positive_recall_is_the_hit_rate():
    target = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    pred = torch.tensor([1, 1, 1, 0, 1, 0, 0, 0])
    m = PositiveRecall()
    for t, p in zip(target.chunk(3), pred.chunk(3), strict=True):
        m.update(torch.nn.functional.one_hot(p, 2).float(), t)
    assert float(m.compute()) == 0.75


def _ridge_mc(states_train, y_train, states_test, y_test, k_max):
    spec = api.task("memory_capacity", max_delay=k_max, washout=k_max, length=k_max + 1).spec
    head = build_head({"_target_": "stm_lab.heads.RidgeHead", "alpha": 1e-8}, states_train.shape[1], spec)
    head.fit([(states_train, y_train)])
    r2 = LagR2(k_max)
    r2.update(head.proj(states_test), y_test)
    return r2.compute()


def _delay_line(u: torch.Tensor, n: int, first: int) -> tuple[torch.Tensor, torch.Tensor]:
    """States x_i(t) = u(t - first - i), i = 0..n-1, and targets u(t-k), k=1..2n, for t >= 2n+1."""
    k_max = 2 * n
    t = torch.arange(k_max + 1, len(u))
    states = torch.stack([u[t - first - i] for i in range(n)], 1)
    targets = torch.stack([u[t - k] for k in range(1, k_max + 1)], 1)
    return states, targets


@pytest.mark.parametrize("n", [5, 12])
def test_a_delay_line_of_n_units_reaches_mc_n(n):
    g = torch.Generator().manual_seed(n)
    u_train, u_test = (torch.rand(4000, generator=g) * 1.6 - 0.8 for _ in range(2))
    # Units holding u(t-1) .. u(t-n): every one of them is memory of the past.
    r2 = _ridge_mc(*_delay_line(u_train, n, 1), *_delay_line(u_test, n, 1), 2 * n)
    assert r2[:n].min() > 0.999 and r2[n:].max() < 0.01
    assert float(r2.sum()) == pytest.approx(n, abs=0.05)
    # Units holding u(t) .. u(t-n+1): one unit is spent on the present, MC = n - 1.
    r2 = _ridge_mc(*_delay_line(u_train, n, 0), *_delay_line(u_test, n, 0), 2 * n)
    assert float(r2.sum()) == pytest.approx(n - 1, abs=0.05)


def test_shift_register_rnn_through_the_pipeline(make_cfg):
    """A relu RNN wired as a shift register is a linear delay line (its state stays positive):
    the ridge head, the model and the logged test/r2_lag_k recover MC = N - 1 (unit 1 holds u(t))."""
    N = 8
    cfg = make_cfg(*MC_TINY, "head=ridge", "trainer.max_epochs=0", "cell=rnn", "cell.nonlinearity=relu",
                   f"cell.hidden_size={N}", tiny=False)
    dm = build_datamodule(cfg)
    model = build_model(cfg, dm.spec)
    rnn = model.core.rnn
    with torch.no_grad():
        for p in rnn.parameters():
            p.zero_()
        rnn.weight_ih_l0[0, 0] = 1.0
        rnn.bias_ih_l0[0] = 1.0  # u + 1 > 0: relu is the identity
        rnn.weight_hh_l0[1:, :-1] = torch.eye(N - 1)  # unit i+1 takes unit i's last value
    trainer = pl.Trainer(max_epochs=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    m = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert model.curves["test/r2_lag"][:N - 1] == pytest.approx([1.0] * (N - 1), abs=1e-3)
    assert m["test/mc"] == pytest.approx(N - 1, abs=0.05)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_mc_never_exceeds_the_state_units(make_cfg, cell):
    """Random frozen networks (Jaeger's setting, through train()): 0 < MC <= N. For the LSTM the
    readout sees h only, so the bound is N, not 2N."""
    N = 6
    summary = train(make_cfg(*MC_TINY, "head=ridge", "trainer.max_epochs=0", f"cell={cell}",
                             f"cell.hidden_size={N}", tiny=False))
    m = summary["metrics"]
    assert summary["status"] == "completed" and summary["chance"]["mc"] == 0.0
    curve = summary["curves"]["test/r2_lag"]
    assert len(curve) == 16
    assert sum(curve) == pytest.approx(m["test/mc"], abs=1e-4)
    assert 0.5 < m["test/mc"] <= N
    assert curve[0] > curve[-1]  # memory fades with the delay
