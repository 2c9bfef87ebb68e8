import pytest
import torch

from stm_lab import api
from stm_lab.build import build_head
from stm_lab.cells import CoreOutput
from stm_lab.errors import ConfigError
from stm_lab.heads import SequenceHead
from stm_lab.metrics import (
    METRICS,
    Scored,
    ScoreSet,
    SequenceAccuracy,
    SerialPositionAccuracy,
    scored_positions,
)


def _one_hot_preds(labels, classes=4):
    return torch.nn.functional.one_hot(labels, classes).float()


def test_scored_positions():
    mask = torch.tensor([[0, 1, 1, 0, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    row, pos = scored_positions(mask)
    assert row.tolist() == [0, 0, 0, 1]
    assert pos.tolist() == [0, 1, 2, 0]


def test_serial_position_and_sequence_accuracy_any_batch_split():
    torch.manual_seed(0)
    B, P = 12, 3
    target = torch.randint(0, 4, (B, P))
    pred = target.clone()
    pred[:, 2] = (pred[:, 2] + 1) % 4  # position 3 always wrong
    pred[:4, 0] = (pred[:4, 0] + 1) % 4  # position 1 wrong in a third of the lists
    mask = torch.ones(B, P, dtype=torch.bool)
    for chunks in (1, 3, 12):
        pos_acc, seq_acc = SerialPositionAccuracy(P), SequenceAccuracy()
        for idx in torch.arange(B).chunk(chunks):
            row, position = scored_positions(mask[idx])
            preds = _one_hot_preds(pred[idx][mask[idx]])
            pos_acc.update(preds, target[idx][mask[idx]], position)
            seq_acc.update(preds, target[idx][mask[idx]], row, len(idx))
        assert pos_acc.compute().tolist() == pytest.approx([8 / 12, 1.0, 0.0])
        assert seq_acc.compute().item() == 0.0

    seq_acc = SequenceAccuracy()
    row, _ = scored_positions(mask)
    good = target.clone()
    good[0, 0] = (good[0, 0] + 1) % 4
    seq_acc.update(_one_hot_preds(good[mask]), target[mask], row, B)
    assert seq_acc.compute().item() == pytest.approx(11 / 12)


def _batch(mask: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"mask": mask, "y": torch.where(mask, 1, -100)}


def test_heads_read_only_scored_steps():
    spec = api.task("copy", delay=2, list_length=3, num_symbols=4).spec
    head = build_head({"_target_": None}, 5, spec)  # head=auto: the task's own (per step)
    h = torch.randn(2, 8, 5)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, 5:] = True
    out = head(CoreOutput(h), _batch(mask))
    assert out.preds.shape == (6, 4) and out.target.shape == (6,)
    h2 = h.clone()
    h2[:, :5] = 99.0  # unscored steps do not reach the output
    assert torch.equal(head(CoreOutput(h2), _batch(mask)).preds, out.preds)


def test_sequence_head_needs_one_scored_step():
    spec = api.task("copy", delay=2, list_length=3).spec
    with pytest.raises(ConfigError, match="head.*per_step"):
        build_head({"_target_": "stm_lab.heads.SequenceHead", "pool": "last"}, 5, spec)
    with pytest.raises(ConfigError, match=r"head\._target_.*attention"):
        build_head({"_target_": "stm_lab.heads.attention"}, 5, spec)
    with pytest.raises(ConfigError, match=r"head\.pool.*last, mean"):
        build_head({"_target_": "stm_lab.heads.SequenceHead", "pool": "max"}, 5, spec)


def test_sequence_head_mean_pool_ignores_later_steps():
    from dataclasses import replace

    spec = replace(api.task("copy").spec, scored="one", positions=None, metrics=("acc",), chance={})
    head = SequenceHead(3, spec, pool="mean")
    h = torch.randn(2, 6, 3)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 3] = mask[1, 5] = True
    out = head(CoreOutput(h), _batch(mask)).preds
    h2 = h.clone()
    h2[0, 4:] = 1e3  # after the scored step: padding
    assert torch.allclose(head(CoreOutput(h2), _batch(mask)).preds, out)
    assert torch.allclose(out[0], head.proj(h[0, :4].mean(0)))


def test_every_declared_metric_is_complete_and_tasks_name_only_declared_ones():
    from stm_lab.tasks import TASKS

    for name, d in METRICS.items():
        assert d.name == name and d.doc and isinstance(d.higher_is_better, bool)
        assert set(d.splits) <= {"val", "test"}
    for name in ("copy", "serial_recall", "adding", "associative_recall", "nback", "dms", "memory_capacity"):
        spec = api.task(name).spec
        assert TASKS.get(name).name == name
        assert all(m in METRICS for m in spec.metrics) and spec.headline in spec.metrics


def test_score_set_keeps_curves_as_lists_and_scalars_by_split():
    spec = api.task("copy", delay=2, list_length=3, num_symbols=4).spec
    mask = torch.zeros(4, 8, dtype=torch.bool)
    mask[:, 5:] = True
    target = torch.randint(0, 4, (12,))
    scores = ScoreSet(spec, "test")
    scores.update(Scored(_one_hot_preds(target), target, mask))
    scalars, curves = scores.compute()
    assert set(scalars) == {"test/acc", "test/recall", "test/acc_sequence"}
    assert list(curves) == ["test/acc_pos"] and curves["test/acc_pos"].tolist() == [1.0, 1.0, 1.0]
    assert set(ScoreSet(spec, "val").defs) == {"acc", "recall"}  # curves and whole lists: test only


def test_position_metrics_match_direct_count_under_random_splits():
    """Ragged masks (rows with 0..T scored steps, not contiguous), random predictions, random
    batch boundaries: the summed states give the direct per-position and per-list counts."""
    g = torch.Generator().manual_seed(1)
    B, T, C, P = 23, 7, 3, 7
    mask = torch.rand(B, T, generator=g) < 0.5
    mask[0] = False  # a list with nothing scored counts for neither metric
    target = torch.randint(0, C, (B, T), generator=g)
    pred = torch.where(torch.rand(B, T, generator=g) < 0.7, target, (target + 1) % C)
    # The direct count, row by row.
    correct, total, lists, whole = torch.zeros(P), torch.zeros(P), 0, 0
    for b in range(B):
        hits = (pred[b] == target[b])[mask[b]]
        for i, h in enumerate(hits):
            correct[i] += float(h)
            total[i] += 1
        if len(hits):
            lists += 1
            whole += int(hits.all())
    expected_pos = correct / total.clamp(min=1)
    for seed in range(4):
        cuts = sorted(torch.randperm(B - 1, generator=torch.Generator().manual_seed(seed))[:seed * 2].add(1).tolist())
        pos_acc, seq_acc = SerialPositionAccuracy(P), SequenceAccuracy()
        for idx in torch.tensor_split(torch.arange(B), cuts):
            m = mask[idx]
            row, position = scored_positions(m)
            preds = _one_hot_preds(pred[idx][m], C)
            pos_acc.update(preds, target[idx][m], position)
            seq_acc.update(preds, target[idx][m], row, len(idx))
        assert torch.allclose(pos_acc.compute(), expected_pos)
        assert seq_acc.compute().item() == pytest.approx(whole / lists)
