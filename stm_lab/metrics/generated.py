"""Metrics of generated sequences — a decoder's output scored against a target sequence — each
declared once, like every other metric (:mod:`stm_lab.metrics.definitions`).

They read the sequence-to-sequence format (:mod:`stm_lab.tasks.seq2seq`): the scored steps of a row
are its target tokens and then the end of sequence (``EOS``, class 0), from output position 0 on.
A generated sequence ends at its first EOS; whatever a decoder emits after that is not part of its
output and counts as no token. So, on the test split of a task:

- ``exact_match``: the whole sequence right, its end included (the length is right too). The
  headline of sequence-to-sequence tasks, as in Lake & Baroni (2018).
- ``token_acc``: the share of target tokens (EOS included) matched at their own position.
- ``token_acc_pos``: ``token_acc`` at each output position, the output side's serial-position
  curve (rows shorter than a position do not count there).
- ``token_recall``: macro recall over the target token classes (EOS included): the mean, over the
  classes that occur in the targets, of each class's hit rate — a frequent token (a turn in SCAN)
  cannot carry it.
- ``length_acc``: the generated sequence has the target's length (its first EOS is where the
  target's is), whatever its tokens.

Each metric keeps summed states, so its value does not depend on how the data are split into
batches (tests/test_seq2seq_metrics.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torchmetrics import Metric

from stm_lab.metrics.definitions import METRICS, MetricDef
from stm_lab.metrics.scored import Scored
from stm_lab.metrics.scores import Rate

if TYPE_CHECKING:
    from stm_lab.tasks.spec import TaskSpec

EOS = 0  # the end of sequence of the sequence-to-sequence format (stm_lab.tasks.seq2seq.TGT_EOS)
NONE = -1  # no token: after a sequence's end, or past a decoder's maximum length

GENERATED_METRICS = ("exact_match", "token_acc", "token_recall", "length_acc", "token_acc_pos")


@dataclass
class Outcome:
    """One batch of generated sequences against their targets. Per scored step (aligned with
    ``y[mask]``): ``hit``, ``target``, ``position`` (output position). Per row: ``scored`` (the row
    has a target), ``exact`` and ``length_ok``."""

    hit: torch.Tensor
    target: torch.Tensor
    position: torch.Tensor
    scored: torch.Tensor
    exact: torch.Tensor
    length_ok: torch.Tensor


def emitted(s: Scored) -> torch.Tensor:
    """The tokens emitted at the scored steps, laid out as the (B, U) mask with NONE elsewhere and
    after each row's first EOS."""
    dense = torch.full(s.mask.shape, NONE, dtype=torch.long, device=s.mask.device)
    dense[s.mask] = s.predicted.long()
    eos = (dense == EOS).long()
    return dense.masked_fill(eos.cumsum(1) - eos > 0, NONE)  # an EOS strictly before: ended


def outcome(s: Scored) -> Outcome:
    mask = s.mask
    dense = emitted(s)
    target = torch.full_like(dense, -100)
    target[mask] = s.target.long()
    hits = (dense == target) & mask
    counts = mask.sum(1)
    scored = counts > 0
    last = (counts - 1).clamp(min=0).unsqueeze(1)  # the target's EOS: its last scored step
    length_ok = scored & (dense.gather(1, last).squeeze(1) == EOS)
    return Outcome(hit=hits[mask], target=target[mask], position=s.position, scored=scored,
                   exact=scored & (hits.sum(1) == counts), length_ok=length_ok)


class RowRate(Rate):
    """The share of rows (with a target) for which a per-row outcome holds."""

    def update(self, ok: torch.Tensor, scored: torch.Tensor) -> None:
        self.correct += (ok & scored).sum()
        self.total += scored.sum()


class StepRate(Rate):
    """The share of scored steps that are hits."""

    def update(self, hit: torch.Tensor) -> None:
        self.correct += hit.sum()
        self.total += hit.numel()


class PositionRate(Rate):
    """The share of hits at each output position (the last position also holds any later ones)."""

    def __init__(self, positions: int) -> None:
        super().__init__(positions)
        self.positions = positions

    def update(self, hit: torch.Tensor, position: torch.Tensor) -> None:
        self.add_at(hit, position)


class ClassRecall(Metric):
    """Macro recall over the target classes: per class, hits / occurrences in the targets; the
    mean over the classes that occur."""

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("hits", torch.zeros(num_classes), dist_reduce_fx="sum")
        self.add_state("support", torch.zeros(num_classes), dist_reduce_fx="sum")

    def update(self, hit: torch.Tensor, target: torch.Tensor) -> None:
        self.hits += torch.bincount(target, weights=hit.float(), minlength=self.num_classes)[:self.num_classes]
        self.support += torch.bincount(target, minlength=self.num_classes)[:self.num_classes]

    def compute(self) -> torch.Tensor:
        present = self.support > 0
        recall = self.hits / self.support.clamp(min=1)
        return (recall * present).sum() / present.sum().clamp(min=1)


def _register(**kw) -> MetricDef:
    return METRICS.register(kw["name"])(MetricDef(**kw))


def _positions(spec: TaskSpec) -> int:
    if not spec.positions:
        raise ValueError("token_acc_pos needs the task's spec.positions (the longest target + 1)")
    return spec.positions


def _rows(ok: str):
    def update(m: Metric, s: Scored) -> None:
        o = outcome(s)
        m.update(getattr(o, ok), o.scored)
    return update


def _steps(*fields: str):
    def update(m: Metric, s: Scored) -> None:
        o = outcome(s)
        m.update(*(getattr(o, f) for f in fields))
    return update


_register(name="exact_match", higher_is_better=True,
          doc="whole generated sequence equal to the target, end of sequence included",
          build=lambda spec: RowRate(), update=_rows("exact"))
_register(name="token_acc", higher_is_better=True,
          doc="share of target tokens (end of sequence included) generated at their own position",
          build=lambda spec: StepRate(), update=_steps("hit"))
_register(name="token_acc_pos", higher_is_better=True, splits=("test",), curve="output position",
          doc="token accuracy at each output position (the output side's serial-position curve)",
          build=lambda spec: PositionRate(_positions(spec)), update=_steps("hit", "position"))
_register(name="token_recall", higher_is_better=True,
          doc="macro recall over target token classes (end of sequence included)",
          build=lambda spec: ClassRecall(spec.output_size), update=_steps("hit", "target"))
_register(name="length_acc", higher_is_better=True,
          doc="generated sequence as long as the target (its first end of sequence where the target's is)",
          build=lambda spec: RowRate(), update=_rows("length_ok"))
