"""The generated-sequence metrics: a hand-computed example with ragged lengths and padding, a
row-by-row count under random data and random batch splits, the chance levels of a guessing decoder,
and the declarations every metric must have."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stm_lab import api
from stm_lab.metrics import METRICS, Scored, ScoreSet, evaluate
from stm_lab.metrics.generated import EOS, GENERATED_METRICS, NONE
from stm_lab.tasks.seq2seq import IGNORE, SEQ2SEQ_METRICS, TGT_EOS, uniform_chance

C = 8  # target classes (SCAN's: <eos> <bos> and six actions)


def _spec():
    return api.task("scan").spec  # the generated-sequence metrics, 8 classes, 49 positions


def _dense(rows: list[list[int]], width: int, fill: int) -> torch.Tensor:
    out = torch.full((len(rows), width), fill, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def _one_hot(tokens: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(len(tokens), C)
    emitted = tokens >= 0
    out[emitted, tokens[emitted]] = 1.0  # no token: a zero row (its arg-max is EOS, after the end)
    return out


# Targets (EOS = 0 last), the padding row 4 has nothing to score; U = 6 leaves padding everywhere.
TARGETS = [[2, 3, 4, 0], [5, 0], [2, 2, 2, 2, 0], [0], []]
# What a decoder emitted, position by position (longer than the target is fine: not scored).
EMITTED = [[2, 3, 4, 0, 7], [5, 6, 6], [2, 0, 2, 2, 0], [0], [3]]


def _scored(tokens_path: bool) -> Scored:
    U = 6
    y = _dense(TARGETS, U, IGNORE)
    mask = y != IGNORE
    emitted = _dense(EMITTED, U, NONE)[mask]
    if tokens_path:  # a generating head: the tokens, -1 after a sequence's first EOS
        return Scored(torch.randn(len(emitted), C), y[mask], mask, tokens=emitted)
    return Scored(_one_hot(emitted), y[mask], mask)


@pytest.mark.parametrize("tokens_path", [True, False])
def test_hand_computed_example(tokens_path):
    scalars, curves = evaluate(_spec(), "test", _scored(tokens_path))
    # Rows with a target: 0 (right), 1 (never ends: wrong length), 2 (ends after one token: short),
    # 3 (the empty target, right).
    assert scalars["test/exact_match"] == pytest.approx(2 / 4)
    assert scalars["test/length_acc"] == pytest.approx(2 / 4)
    # Hits: row 0 all 4; row 1 the 5; row 2 only its first 2 (its EOS at position 1 is a miss, and
    # nothing after it counts); row 3 its EOS. 7 of the 12 target tokens.
    assert scalars["test/token_acc"] == pytest.approx(7 / 12)
    # Per class: 2 -> 2 of 5; 3, 4, 5 -> 1 of 1; EOS -> 2 of 4 (rows 0 and 3).
    assert scalars["test/token_recall"] == pytest.approx((2 / 5 + 1 + 1 + 1 + 2 / 4) / 5)
    # Per output position: 4/4, 1/3, 1/2, 1/2, 0/1, then positions nobody reaches.
    pos = curves["test/token_acc_pos"]
    assert pos[:5] == pytest.approx([1.0, 1 / 3, 0.5, 0.5, 0.0]) and len(pos) == 49 and not any(pos[5:])


def _reference(y: np.ndarray, emitted: np.ndarray) -> dict[str, float]:
    """Row by row, from the definitions."""
    exact = length = rows = hits = steps = 0
    per_class: dict[int, list[int]] = {}
    for target_row, out in zip(y, emitted, strict=True):
        target = [int(t) for t in target_row if t != IGNORE]
        if not target:
            continue
        seq = list(out)
        if EOS in seq:
            seq = seq[:seq.index(EOS) + 1]  # a sequence ends at its first EOS
        rows += 1
        exact += seq == target
        length += len(seq) == len(target) and seq[-1] == EOS
        for t, tok in enumerate(target):
            hit = t < len(seq) and seq[t] == tok
            hits += hit
            steps += 1
            per_class.setdefault(tok, []).append(hit)
    return {"exact_match": exact / rows, "length_acc": length / rows, "token_acc": hits / steps,
            "token_recall": float(np.mean([np.mean(v) for v in per_class.values()]))}


def test_metrics_match_the_definitions_under_random_batch_splits():
    g = np.random.default_rng(0)
    B, U = 61, 9
    n = g.integers(0, U, size=B)  # target tokens before the EOS (0..8)
    y = np.full((B, U), IGNORE)
    emitted = g.integers(0, C, size=(B, U + 3))
    for i in range(B):
        y[i, :n[i]] = g.integers(2, C, size=n[i])
        y[i, n[i]] = TGT_EOS
        if g.random() < 0.5:  # many rows mostly right, so every metric is away from 0
            k = min(n[i] + 1, U)
            emitted[i, :k] = np.where(g.random(k) < 0.8, y[i, :k], emitted[i, :k])
    y[3] = IGNORE  # a row with nothing to score
    expected = _reference(y, emitted)
    mask = torch.from_numpy(y != IGNORE)
    target = torch.from_numpy(y)
    tokens = torch.from_numpy(emitted[:, :U])
    spec = _spec()
    for seed in range(4):
        cuts = sorted(g.choice(np.arange(1, B), size=2 * seed, replace=False).tolist())
        scores = ScoreSet(spec, "test")
        for idx in np.split(np.arange(B), cuts):
            m = mask[idx]
            scores.update(Scored(_one_hot(tokens[idx][m]), target[idx][m], m))
        scalars, _ = scores.compute()
        for name, value in expected.items():
            assert float(scalars[f"test/{name}"]) == pytest.approx(value), (seed, name)


def test_every_generated_metric_is_declared_and_named_by_the_tasks():
    assert set(GENERATED_METRICS) == set(SEQ2SEQ_METRICS) and EOS == TGT_EOS
    for name in GENERATED_METRICS:
        d = METRICS.get(name)
        assert d.higher_is_better and d.doc and "test" in d.splits
    assert METRICS.get("token_acc_pos").curve == "output position"
    assert set(ScoreSet(_spec(), "val").defs) == set(GENERATED_METRICS) - {"token_acc_pos"}
    for name in ("scan",):
        spec = api.task(name).spec
        assert spec.metrics == SEQ2SEQ_METRICS and spec.headline == "exact_match"
        assert set(spec.chance) == set(GENERATED_METRICS) - {"token_acc_pos"}


def test_uniform_chance_is_what_a_guessing_decoder_scores():
    """Simulate a decoder that emits each of k tokens uniformly at random until its first EOS."""
    k = 4
    y = np.array([[2, 0, IGNORE, IGNORE], [3, 2, 1, 0], [0, IGNORE, IGNORE, IGNORE]])
    mask = y != IGNORE
    chance = uniform_chance(y, mask, k)
    g = np.random.default_rng(1)
    draws = 40_000
    rows = np.repeat(np.arange(len(y)), draws)
    emitted = torch.from_numpy(g.integers(0, k, size=(len(rows), y.shape[1])))
    m = torch.from_numpy(mask[rows])
    scored = Scored(_one_hot(emitted[m]), torch.from_numpy(y[rows])[m], m)
    scalars, _ = evaluate(_spec(), "test", scored)
    for name, value in chance.items():
        assert scalars[f"test/{name}"] == pytest.approx(value, abs=0.01), name
    assert chance["exact_match"] == pytest.approx(np.mean([0.25 ** 2, 0.25 ** 4, 0.25]))
