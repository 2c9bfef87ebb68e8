"""The reference path (equations step by step) against torch.nn, with the same parameters."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from stm_lab import api
from stm_lab.cells import CELLS, ReferenceRecurrent
from stm_lab.errors import ConfigError

TORCH = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
CELL = st.sampled_from([("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")])


def _pair(mode, nonlinearity, input_size, hidden_size, layers, dropout=0.0, loop="script", seed=0):
    torch.manual_seed(seed)
    kwargs = {"nonlinearity": nonlinearity} if mode == "rnn" else {}
    fast = TORCH[mode](input_size, hidden_size, num_layers=layers, batch_first=True,
                       dropout=dropout if layers > 1 else 0.0, **kwargs)
    ref = ReferenceRecurrent(CELLS.get(mode), input_size, hidden_size, layers, nonlinearity=nonlinearity,
                             dropout=dropout if layers > 1 else 0.0, loop=loop)
    ref.load_state_dict(fast.state_dict())  # strict: same keys and shapes
    return fast, ref


@settings(max_examples=40, deadline=None)
@given(cell=CELL, layers=st.integers(1, 2), batch=st.integers(1, 4), steps=st.integers(1, 9),
       input_size=st.integers(1, 6), hidden_size=st.integers(1, 8), seed=st.integers(0, 2**16),
       loop=st.sampled_from(["script", "eager"]))
def test_reference_matches_torch(cell, layers, batch, steps, input_size, hidden_size, seed, loop):
    """Outputs, final states and parameter gradients agree with torch.nn in float32."""
    mode, nonlinearity = cell
    # Dropout is set but the modules are in eval mode, where torch disables it.
    fast, ref = _pair(mode, nonlinearity, input_size, hidden_size, layers, 0.3, loop, seed)
    fast.eval()
    ref.eval()
    x = torch.randn(batch, steps, input_size, generator=torch.Generator().manual_seed(seed))
    out_f, state_f = fast(x)
    out_r, state_r = ref(x)
    torch.testing.assert_close(out_r, out_f, atol=1e-5, rtol=0)
    for a, b in zip(state_r if mode == "lstm" else [state_r], state_f if mode == "lstm" else [state_f],
                    strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    w = torch.randn_like(out_f)
    (out_f * w).sum().backward()
    (out_r * w).sum().backward()
    grads_f = dict(fast.named_parameters())
    for name, p in ref.named_parameters():
        torch.testing.assert_close(p.grad, grads_f[name].grad, atol=1e-4, rtol=1e-4, msg=name)


@settings(max_examples=15, deadline=None)
@given(cell=CELL, layers=st.integers(1, 2), steps=st.integers(1, 7), hidden_size=st.integers(1, 6),
       seed=st.integers(0, 2**16))
def test_internals_obey_the_equations(cell, layers, steps, hidden_size, seed):
    """Returned gates and states satisfy the cell's update rule at every step."""
    mode, nonlinearity = cell
    _, ref = _pair(mode, nonlinearity, 3, hidden_size, layers, seed=seed)
    x = torch.randn(2, steps, 3)
    out, it = ref(x, return_internals=True)
    assert it.hidden.shape == (layers, 2, steps, hidden_size)
    torch.testing.assert_close(it.hidden[-1], out)
    h_prev = torch.cat([torch.zeros_like(it.hidden[:, :, :1]), it.hidden[:, :, :-1]], 2)
    if mode == "lstm":
        i, f, g, o = (it.gate(n) for n in ("input", "forget", "cell", "output"))
        c_prev = torch.cat([torch.zeros_like(it.cell[:, :, :1]), it.cell[:, :, :-1]], 2)
        torch.testing.assert_close(it.cell, f * c_prev + i * g)
        torch.testing.assert_close(it.hidden, o * torch.tanh(it.cell))
        assert ((f > 0) & (f < 1)).all() and (g.abs() <= 1).all()
    elif mode == "gru":
        z, n = it.gate("update"), it.gate("new")
        torch.testing.assert_close(it.hidden, (1 - z) * n + z * h_prev)
        assert it.cell is None
    else:
        assert it.gates is None and it.cell is None
        if nonlinearity == "relu":
            assert (it.hidden >= 0).all()
    with pytest.raises(KeyError, match="has no gate"):
        it.gate("forget" if mode != "lstm" else "update")


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_dropout_between_layers_in_training_only(mode):
    fast, ref = _pair(mode, "tanh", 3, 8, 2, dropout=0.5)
    x = torch.randn(4, 6, 3)
    ref.eval()
    fast.eval()
    torch.testing.assert_close(ref(x)[0], fast(x)[0], atol=1e-5, rtol=0)
    ref.train()
    torch.manual_seed(1)
    a = ref(x)[0]
    torch.manual_seed(1)
    torch.testing.assert_close(ref(x)[0], a)  # seeded: the same mask
    assert not torch.allclose(a, ref.eval()(x)[0])  # and a mask there is
    _, it = ref.train()(x, return_internals=True)
    # Half the first layer's units are zeroed, scaled by 2 on the rest: the second layer sees
    # a different input than in eval mode, but the first layer itself is unchanged.
    torch.testing.assert_close(it.hidden[0], ref.eval()(x, return_internals=True)[1].hidden[0])


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_core_checkpoint_loads_across_paths(name):
    """A fast-path state dict loads strictly into a reference core, and both compute the same."""
    kwargs = {"forget_bias": 1.0} if name == "lstm" else {}
    fast = api.cell(name, 5, hidden_size=6, num_layers=2, recurrent_init="orthogonal", **kwargs)
    ref = api.cell(name, 5, hidden_size=6, num_layers=2, impl="reference", **kwargs)
    assert isinstance(ref.rnn, ReferenceRecurrent)
    assert list(fast.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(3, 7, 5)
    torch.testing.assert_close(ref(x)[0], fast(x)[0], atol=1e-5, rtol=0)
    # The introspection copy of a fast core holds its weights and does not share storage.
    copy = fast.reference()
    torch.testing.assert_close(copy(x)[0], fast(x)[0], atol=1e-5, rtol=0)
    assert copy.weight_hh_l0.data_ptr() != fast.rnn.weight_hh_l0.data_ptr()
    assert fast.internals(x).hidden.shape == (2, 3, 7, 6)


def test_forget_bias_and_init_apply_to_reference_core():
    ref = api.cell("lstm", 4, hidden_size=6, impl="reference", forget_bias=2.0, recurrent_init="orthogonal")
    torch.testing.assert_close((ref.rnn.bias_ih_l0 + ref.rnn.bias_hh_l0)[6:12], torch.full((6,), 2.0))
    block = ref.rnn.weight_hh_l0[:6]
    torch.testing.assert_close(block @ block.T, torch.eye(6), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kwargs,key", [({"impl": "slow"}, "cell.impl"),
                                        ({"reference_loop": "jit"}, "cell.reference_loop")])
def test_bad_impl_config(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        api.cell("lstm", 3, hidden_size=4, **kwargs)


def test_compile_keeps_state_dict_keys_and_traces_the_eager_loop():
    core = api.cell("gru", 3, hidden_size=4, impl="reference")
    keys = list(core.state_dict())
    core.compile()  # lazy: nothing is compiled until the first call
    assert core.rnn.loop == "eager"
    assert list(core.state_dict()) == keys


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_bf16_autocast_on_cpu_runs(name):
    """trainer.precision=bf16-mixed on a CPU: the fast core must not crash in oneDNN."""
    core = api.cell(name, 3, hidden_size=8)
    x = torch.randn(2, 5, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = core(x)
    torch.testing.assert_close(out, core(x)[0])  # the core itself ran in float32
