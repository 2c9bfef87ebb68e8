import pytest
import torch

from stm_lab import api
from stm_lab.errors import ConfigError


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_shapes(name, layers):
    core = api.cell(name, input_size=5, hidden_size=7, num_layers=layers, dropout=0.1)
    out, _ = core(torch.randn(3, 11, 5))
    assert out.shape == (3, 11, 7)
    assert core.rnn.num_layers == layers
    assert core.rnn.dropout == (0.1 if layers > 1 else 0.0)


def test_forget_bias_is_set_once():
    core = api.cell("lstm", 4, hidden_size=6, num_layers=2, forget_bias=1.5)
    for layer in range(2):
        b_ih = getattr(core.rnn, f"bias_ih_l{layer}")
        b_hh = getattr(core.rnn, f"bias_hh_l{layer}")
        effective = (b_ih + b_hh)[6:12]  # gate order i, f, g, o
        assert torch.allclose(effective, torch.full((6,), 1.5))


def test_orthogonal_and_identity_recurrent_init():
    core = api.cell("gru", 4, hidden_size=8, recurrent_init="orthogonal")
    for g in range(3):
        block = core.rnn.weight_hh_l0[g * 8:(g + 1) * 8]
        assert torch.allclose(block @ block.T, torch.eye(8), atol=1e-5)
    irnn = api.cell("rnn", 4, hidden_size=8, nonlinearity="relu", recurrent_init="identity")
    assert torch.equal(irnn.rnn.weight_hh_l0, torch.eye(8))
    assert irnn.rnn.nonlinearity == "relu"


def test_lengths_give_the_state_at_the_last_real_step():
    """With lengths, the final state is each sequence's state at its last real step, on both paths."""
    x = torch.randn(3, 6, 4)
    lengths = torch.tensor([6, 2, 4])
    for impl in ("fast", "reference"):
        core = api.cell("lstm", 4, hidden_size=5, num_layers=2, impl=impl)
        out, (h, c) = core(x, lengths=lengths)
        for i, n in enumerate(lengths.tolist()):
            alone, (h1, c1) = core(x[i:i + 1, :n])
            torch.testing.assert_close(h[:, i], h1[:, 0], atol=1e-5, rtol=0)
            torch.testing.assert_close(c[:, i], c1[:, 0], atol=1e-5, rtol=0)
            torch.testing.assert_close(out[i, :n], alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name,options,key", [
    ("rnn", {"hidden_size": 0}, "cell.hidden_size"),
    ("rnn", {"dropout": 1.0}, "cell.dropout"),
    ("rnn", {"recurrent_init": "xavier"}, "cell.recurrent_init"),
    ("gru", {"forget_bias": 1.0}, "cell.forget_bias"),  # only an LSTM has a forget gate
    ("lstm", {"nonlinearity": "relu"}, "cell.nonlinearity"),  # fixed nonlinearities
    ("rnn", {"_target_": "stm_lab.cells.Transformer"}, "cell._target_"),
])
def test_bad_cell_config(name, options, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        api.cell(name, 3, **options)
