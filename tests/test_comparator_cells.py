"""The reference comparators: minGRU / minLSTM (parallel scan against the step-by-step
recurrence) and causal self-attention (causality, shapes), built from conf/cell/ as any cell is,
and trained through ``cell=`` on every head the tasks use."""

from __future__ import annotations

import pytest
import torch

from stm_lab import api
from stm_lab.cells.min_rnn import MinGRU, _MinLayer, log_space_scan
from stm_lab.errors import ConfigError

MIN_CELLS = ["mingru", "minlstm"]


def attention(input_size: int, hidden_size: int, **options) -> torch.nn.Module:
    return api.cell("attention", input_size=input_size, hidden_size=hidden_size, **options)


def _inputs(T: int, dtype=torch.float32, batch: int = 3, size: int = 5) -> torch.Tensor:
    return torch.randn(batch, T, size, generator=torch.Generator().manual_seed(T), dtype=dtype)


def _model(name, dtype, block="plain", layers=2, chunk_size=16, seed=0):
    torch.manual_seed(seed)
    return api.cell(name, input_size=5, hidden_size=12, num_layers=layers, block=block,
                    chunk_size=chunk_size).to(dtype)


def _preactivations(model, x):
    """Every layer's gate and candidate pre-activations on x (to check that both signs occur)."""
    out, h = [], x if model.block == "plain" else model.embed(x)
    for k, layer in enumerate(model.layers):
        inp = h if model.block == "plain" else model.norms[k](h)
        out.append(layer.proj(inp))
        h = layer(inp, None, "sequential")
        if model.block == "residual":
            h = inp + model.outs[k](h)
    return torch.cat([o.flatten() for o in out])


@pytest.mark.parametrize("name", MIN_CELLS)
@pytest.mark.parametrize("block", ["plain", "residual"])
@pytest.mark.parametrize("T", [37, 300])
def test_parallel_matches_sequential_float32(name, block, T):
    model = _model(name, torch.float32, block)
    x = _inputs(T)
    pre = _preactivations(model, x)
    assert (pre < -1).any() and (pre > 1).any()  # both branches of g and of the gates
    out_p, h_p = model(x)
    out_s, h_s = model.sequential(x)
    assert out_p.shape == (3, T, 12) and h_p.shape == (2, 3, 12)
    torch.testing.assert_close(out_p, out_s, atol=1e-5, rtol=0)
    torch.testing.assert_close(h_p, h_s, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", MIN_CELLS)
@pytest.mark.parametrize("block", ["plain", "residual"])
@pytest.mark.parametrize("chunk_size", [None, 16, 7])
@pytest.mark.parametrize("with_h0", [False, True])
def test_parallel_matches_sequential_float64(name, block, chunk_size, with_h0):
    model = _model(name, torch.float64, block, chunk_size=chunk_size)
    with torch.no_grad():  # larger weights: strongly saturated gates, candidates far below zero
        for p in model.parameters():
            p.mul_(3.0)
    x = _inputs(257, torch.float64)
    h0 = torch.rand(2, 3, 12, dtype=torch.float64) + 0.1 if with_h0 else None
    out_p, h_p = model(x, h0=h0)
    out_s, h_s = model.sequential(x, h0)
    assert (out_p - out_s).abs().max() < 1e-10 and (h_p - h_s).abs().max() < 1e-10
    # The gradients of both forms agree too (the parallel form is what trains).
    w = torch.randn_like(out_p)
    grads = []
    for out in (out_p, out_s):
        model.zero_grad()
        (out * w).sum().backward(retain_graph=True)
        grads.append([p.grad.clone() for p in model.parameters()])
    for gp, gs in zip(*grads, strict=True):
        assert (gp - gs).abs().max() < 1e-8 * max(1.0, gs.abs().max().item())
        assert torch.isfinite(gp).all()


def test_scan_edge_cases():
    """h0 = 0 and h0 > 0, one step, T shorter than a chunk, T a multiple of it."""
    torch.manual_seed(1)
    for T in (1, 5, 16, 33):
        log_a, log_b = -torch.rand(2, T, 4, dtype=torch.float64) * 3, torch.randn(2, T, 4, dtype=torch.float64)
        h0 = torch.rand(2, 4, dtype=torch.float64)
        for start in (None, h0):
            h, ref = torch.zeros(2, 4, dtype=torch.float64) if start is None else start, []
            for t in range(T):
                h = log_a[:, t].exp() * h + log_b[:, t].exp()
                ref.append(h)
            for chunk in (None, 4, 16):
                got = log_space_scan(log_a, log_b, start, chunk)
                assert (got - torch.stack(ref, 1)).abs().max() < 1e-12


def test_parallel_path_has_no_step_loop(monkeypatch):
    """The parallel form never calls the per-step equations (no Python loop over time)."""
    model = api.cell("mingru", input_size=3, hidden_size=8, num_layers=2)
    assert isinstance(model, MinGRU) and model.mode == "parallel"  # conf/cell/mingru.yaml
    monkeypatch.setattr(_MinLayer, "coefficients", lambda *a: (_ for _ in ()).throw(AssertionError("step loop")))
    model(torch.randn(2, 50, 3))
    with pytest.raises(AssertionError, match="step loop"):
        model.sequential(torch.randn(2, 50, 3))


def test_min_rnn_sizes_dropout_and_errors():
    plain = api.cell("mingru", input_size=5, hidden_size=12, num_layers=2)
    assert plain.hidden_size == 12
    assert sum(p.numel() for p in plain.parameters()) == 2 * 12 * (5 + 1) + 2 * 12 * (12 + 1)
    assert sum(p.numel() for p in api.cell("minlstm", input_size=5, hidden_size=12).parameters()) == 3 * 12 * (5 + 1)
    drop = api.cell("minlstm", input_size=5, hidden_size=12, num_layers=2, dropout=0.5)
    x = torch.randn(2, 9, 5)
    drop.eval()
    assert torch.equal(drop(x)[0], drop(x)[0])
    drop.train()
    assert not torch.equal(drop(x)[0], drop(x)[0])
    for kwargs in ({"mode": "scan"}, {"block": "deep"}, {"chunk_size": 0}, {"dropout": 1.0}, {"num_layers": 0}):
        with pytest.raises(ConfigError, match=f"cell\\.{next(iter(kwargs))}"):
            api.cell("mingru", input_size=5, hidden_size=12, **kwargs)
    # States stay positive: the log-space form needs it, and g guarantees it.
    assert (api.cell("mingru", input_size=5, hidden_size=12)(torch.randn(4, 20, 5) * 10)[0] > 0).all()


# -- causal attention ---------------------------------------------------------------------------------


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
@pytest.mark.parametrize("heads,mlp", [(1, False), (4, True)])
def test_attention_is_causal(positions, heads, mlp):
    torch.manual_seed(0)
    model = attention(6, 16, num_layers=2, num_heads=heads, positions=positions, mlp=mlp,
                      max_len=64, dropout=0.1).eval()
    x = torch.randn(3, 23, 6)
    out, final = model(x)
    assert out.shape == (3, 23, 16) and final.shape == (2, 3, 16) and model.hidden_size == 16
    for t in (0, 7, 22):
        y = x.clone()
        y[:, t + 1:] = torch.randn_like(y[:, t + 1:]) * 5
        changed, _ = model(y)
        torch.testing.assert_close(changed[:, :t + 1], out[:, :t + 1], atol=1e-6, rtol=0)
        if t < 22:
            assert (changed[:, t + 1:] - out[:, t + 1:]).abs().max() > 1e-3  # later steps do see them


def test_attention_sees_far_back_and_positions_matter():
    """Step t depends on step 0 (no window), and the same input at two places differs."""
    torch.manual_seed(0)
    model = attention(4, 8, num_layers=1).eval()
    x = torch.randn(1, 40, 4)
    y = x.clone()
    y[:, 0] += 3.0
    assert (model(y)[0][:, -1] - model(x)[0][:, -1]).abs().max() > 1e-4
    same = torch.randn(1, 1, 4).expand(1, 10, 4)
    out = model(same)[0]
    assert (out[:, 3] - out[:, 8]).abs().max() > 1e-4


def test_attention_errors():
    with pytest.raises(ConfigError, match="num_heads"):
        attention(4, 10, num_heads=3)
    with pytest.raises(ConfigError, match="positions"):
        attention(4, 8, positions="rotary")
    with pytest.raises(ConfigError, match=r"cell\.mlp"):
        attention(4, 8, mlp="yes")
    with pytest.raises(ValueError, match="max_len"):
        attention(4, 8, positions="learned", max_len=10)(torch.randn(1, 11, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spread", [5.0, 2000.0])  # the fast path, and the fallback past the dtype's range
def test_chunk_logcumsumexp_matches_torch(dtype, spread):
    from stm_lab.cells.min_rnn import chunk_logcumsumexp

    u = (torch.rand(4, 6, 16, 5, dtype=dtype) * spread - spread / 2).requires_grad_()
    u_ref = u.detach().clone().requires_grad_()
    w = torch.randn(4, 6, 16, 5, dtype=dtype)
    got, want = chunk_logcumsumexp(u, 2), torch.logcumsumexp(u_ref, 2)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got, want, atol=tol * spread, rtol=tol)
    (got * w).sum().backward()
    (want * w).sum().backward()
    torch.testing.assert_close(u.grad, u_ref.grad, atol=tol * 10, rtol=tol * 10)


# -- the cell protocol, and training through cell= -----------------------------------------------


@pytest.mark.parametrize("name", ["mingru", "minlstm", "attention"])
def test_lengths_give_the_state_at_the_last_real_step(name):
    """With lengths, the final state is each sequence's state at its last real step (what a
    sequence head on variable-length data reads), and the outputs there are unchanged."""
    torch.manual_seed(0)
    core = api.cell(name, input_size=4, hidden_size=8, num_layers=2).eval()
    x, lengths = torch.randn(3, 9, 4), torch.tensor([9, 2, 5])
    out, final = core(x, lengths=lengths)
    for i, n in enumerate(lengths.tolist()):
        alone, final_alone = core(x[i:i + 1, :n])
        torch.testing.assert_close(final[:, i], final_alone[:, 0], atol=1e-5, rtol=0)
        torch.testing.assert_close(out[i, :n], alone[0], atol=1e-5, rtol=0)
    assert not torch.allclose(final[:, 1], core(x)[1][:, 1])  # not the padded last step


def test_conf_cells_declare_every_option():
    """conf/cell/<name>.yaml names every constructor option (no defaults in Python)."""
    import inspect

    from omegaconf import OmegaConf

    from stm_lab.config import conf_dir
    from stm_lab.validation import locate

    for name in ("mingru", "minlstm", "attention"):
        node = OmegaConf.to_container(OmegaConf.load(conf_dir() / "cell" / f"{name}.yaml"))
        cls = locate("cell._target_", node["_target_"])
        params = inspect.signature(cls.__init__).parameters
        options = {p for p in params if p not in ("self", "input_size")}
        assert options == set(node) - {"_target_", "name"}, name
        assert all(params[p].default is inspect.Parameter.empty for p in options), name
        assert node["name"] == name


@pytest.mark.parametrize("cell,task,head", [
    ("attention", "mqar", "per_step"),
    ("attention", "associative_recall", "sequence"),
    ("attention", "serial_recall", "auto"),  # lists of varying length, padded
    ("mingru", "selective_copy", "auto"),
    ("minlstm", "associative_recall", "auto"),
])
def test_comparators_train_through_cell(make_cfg, cell, task, head):
    from conftest import TINY

    from stm_lab.run import train

    small = {"mqar": ["data.vocab_size=16", "data.seq_len=16", "data.num_pairs=3"],
             "selective_copy": ["data.num_tokens=3", "data.num_blanks=5", "data.vocab_size=6"],
             "associative_recall": ["data.num_pairs=2", "data.num_keys=4", "data.num_values=4"],
             "serial_recall": ["data.min_length=2", "data.max_length=4", "data.num_items=5"]}[task]
    cfg = make_cfg(*[o for o in TINY if not o.startswith("data.")], f"data={task}", *small, f"cell={cell}",
                   f"head={head}", "data.n_train=64", "data.n_val=32", "data.n_test=32", "data.batch_size=32",
                   tiny=False)
    summary = train(cfg)
    assert summary["status"] == "completed" and summary["cell"] == cell
    assert 0.0 <= summary["metrics"]["test/acc"] <= 1.0
    assert summary["floor"]["acc"]["value"] >= summary["chance"]["acc"]


@pytest.mark.parametrize("cell", ["mingru", "attention"])
def test_gate_stats_refuses_a_cell_without_internals(make_cfg, monkeypatch, cell):
    """Gate statistics read a cell's gates through internals(); the comparators have none, and
    the run says so with a config error naming the callback, before any training step."""
    from stm_lab.model import MemoryModel
    from stm_lab.run import train

    monkeypatch.setattr(MemoryModel, "training_step", lambda *a, **k: pytest.fail("trained before the error"))
    cfg = make_cfg(f"cell={cell}", "callbacks=gate_stats")
    with pytest.raises(ConfigError, match="gate_stats") as err:
        train(cfg)
    assert "internals()" in str(err.value)
