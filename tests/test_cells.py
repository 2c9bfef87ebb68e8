import pytest
import torch

from stm_lab.cells import RecurrentCore
from stm_lab.errors import ConfigError


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_shapes(name, layers):
    core = RecurrentCore(name, input_size=5, hidden_size=7, num_layers=layers, dropout=0.1)
    assert core(torch.randn(3, 11, 5)).shape == (3, 11, 7)
    assert core.rnn.num_layers == layers
    assert core.rnn.dropout == (0.1 if layers > 1 else 0.0)


def test_forget_bias_is_set_once():
    core = RecurrentCore("lstm", 4, 6, num_layers=2, forget_bias=1.5)
    for layer in range(2):
        b_ih = getattr(core.rnn, f"bias_ih_l{layer}")
        b_hh = getattr(core.rnn, f"bias_hh_l{layer}")
        effective = (b_ih + b_hh)[6:12]  # gate order i, f, g, o
        assert torch.allclose(effective, torch.full((6,), 1.5))


def test_orthogonal_and_identity_recurrent_init():
    core = RecurrentCore("gru", 4, 8, recurrent_init="orthogonal")
    for g in range(3):
        block = core.rnn.weight_hh_l0[g * 8:(g + 1) * 8]
        assert torch.allclose(block @ block.T, torch.eye(8), atol=1e-5)
    irnn = RecurrentCore("rnn", 4, 8, nonlinearity="relu", recurrent_init="identity")
    assert torch.equal(irnn.rnn.weight_hh_l0, torch.eye(8))
    assert irnn.rnn.nonlinearity == "relu"


@pytest.mark.parametrize("kwargs,key", [
    ({"name": "transformer"}, "cell.name"),
    ({"hidden_size": 0}, "cell.hidden_size"),
    ({"dropout": 1.0}, "cell.dropout"),
    ({"recurrent_init": "xavier"}, "cell.recurrent_init"),
    ({"name": "gru", "forget_bias": 1.0}, "cell.forget_bias"),
    ({"name": "lstm", "nonlinearity": "relu"}, "cell.nonlinearity"),
])
def test_bad_cell_config(kwargs, key):
    args = {"name": "rnn", "input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        RecurrentCore(**args)
