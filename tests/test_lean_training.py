"""The lean training path: batches sliced on the training device, metrics without host syncs."""

from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stm_lab.build import build_datamodule
from stm_lab.errors import ConfigError
from stm_lab.metrics import Scored, ScoreSet, TrainingScores
from stm_lab.tasks.spec import TaskSpec


def _spec(kind: str, size: int) -> TaskSpec:
    return TaskSpec(input_kind="tokens", input_size=3, output_kind=kind, output_size=size, scored="steps",
                    seq_len=4, chance={}, chance_note="", default_head="per_step")


def _update(scores: ScoreSet, preds: torch.Tensor, target: torch.Tensor) -> None:
    scores.update(Scored(preds, target, torch.ones(len(target), 1, dtype=torch.bool)))


@settings(max_examples=30, deadline=None)
@given(classes=st.integers(2, 7), batches=st.lists(st.integers(1, 40), min_size=1, max_size=4),
       seed=st.integers(0, 2**16), skew=st.booleans())
def test_training_scores_equal_torchmetrics(classes, batches, seed, skew):
    """Accumulated over several batches, including classes absent from targets or predictions."""
    spec = _spec("classes", classes)
    lean, reference = TrainingScores(True, classes), ScoreSet(spec, "val")
    g = torch.Generator().manual_seed(seed)
    for n in batches:
        target = torch.randint(0, 2 if skew else classes, (n,), generator=g)
        preds = torch.randn(n, classes, generator=g)
        lean.update(preds, target)
        _update(reference, preds, target)
    got, want = lean.compute(), reference.compute()[0]
    for key in ("acc", "recall"):
        torch.testing.assert_close(got[key], want[f"val/{key}"], rtol=0, atol=1e-6, msg=key)


def test_training_scores_mse_and_reset():
    spec = _spec("regression", 3)
    lean, reference = TrainingScores(False, 3), ScoreSet(spec, "val")
    for _ in range(3):
        preds, target = torch.randn(5, 3), torch.randn(5, 3)
        lean.update(preds, target)
        _update(reference, preds, target)
    torch.testing.assert_close(lean.compute()["mse"], reference.compute()[0]["val/mse"])
    lean.reset()
    assert lean.compute() == {}


@pytest.mark.parametrize("on_device,expected", [(True, "meta"), (False, "cpu")])
def test_batches_are_made_on_the_training_device(make_cfg, on_device, expected):
    dm = build_datamodule(make_cfg(f"data.on_device={on_device}"))
    dm.setup()
    # A stand-in trainer on the "meta" device: tensors there have shapes but no storage.
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")))
    batch = next(iter(dm.train_dataloader()))
    assert {v.device.type for v in batch.values()} == {expected}
    assert batch["x"].shape == (32, dm.spec.seq_len)


def test_same_batches_as_indexing_by_hand(make_cfg):
    dm = build_datamodule(make_cfg("data.regime=fixed"))  # a fixed set, shuffled by a seeded sampler
    dm.setup()
    order = list(torch.utils.data.RandomSampler(range(256), generator=torch.Generator().manual_seed(0)))
    first = next(iter(dm.train_dataloader()))
    assert torch.equal(first["x"], dm.tensors("train")["x"][order[:32]])


def test_on_device_must_be_a_bool(make_cfg):
    with pytest.raises(ConfigError, match=r"data\.on_device"):
        build_datamodule(make_cfg("data.on_device=sometimes"))
