"""The array format of sequence-to-sequence tasks (SCAN, paired text) and their memoryless baselines.

A task whose answer is a sequence gives, per example::

    x      (n, S) int64   source tokens, right-padded with SRC_PAD (0)
    length (n,)   int64   source lengths (x[i, :length[i]] is the source)
    y      (n, U) int64   target tokens, then TGT_EOS, then -100 (IGNORE) to the end of the row
    mask   (n, U) bool    True where y holds a real target token, the end-of-sequence included

Source and target have vocabularies of their own. The target vocabulary starts with
``<eos>`` (TGT_EOS = 0) and ``<bos>`` (TGT_BOS = 1): a decoder is fed TGT_BOS first and is
asked to emit TGT_EOS after the last token; TGT_BOS is never a target. Every split of a task has
the same S and U (the longest source and target + 1 over all splits), so one model fits all.

Baselines are predictions in the format of ``y`` (so they are scored by the same code as a
model's output): a sequence baseline writes its whole sequence then TGT_EOS then -100; a token
baseline writes one token at every position where ``mask`` is True and -100 elsewhere (it is
given the true length, so score it per token, never by exact match).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import chain
from typing import ClassVar

import numpy as np

from stm_lab.tasks.spec import Task

SRC_PAD = 0
TGT_EOS = 0
TGT_BOS = 1
IGNORE = -100


def encode_pairs(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                 source_len: int, target_len: int) -> dict[str, np.ndarray]:
    """Arrays ``x``, ``length``, ``y``, ``mask`` for token-id sources and targets (targets without
    the end-of-sequence, which is appended here). ``target_len`` counts the end-of-sequence."""
    n = len(sources)
    src_len = np.fromiter((len(s) for s in sources), dtype=np.int64, count=n)
    tgt_len = np.fromiter((len(t) for t in targets), dtype=np.int64, count=n)
    if n and (src_len.max() > source_len or tgt_len.max() + 1 > target_len):
        raise ValueError(f"sequences longer than the arrays: source {src_len.max()} > {source_len} "
                         f"or target {tgt_len.max()} + 1 > {target_len}")
    x = np.full((n, source_len), SRC_PAD, dtype=np.int64)
    x[np.arange(source_len) < src_len[:, None]] = _flat(sources)  # row-major fill keeps the order
    y = np.full((n, target_len), IGNORE, dtype=np.int64)
    positions = np.arange(target_len)
    y[positions < tgt_len[:, None]] = _flat(targets)
    y[np.arange(n), tgt_len] = TGT_EOS
    mask = positions <= tgt_len[:, None]
    return {"x": x, "length": src_len, "y": y, "mask": mask}


def _flat(rows: Sequence[Sequence[int]]) -> np.ndarray:
    return np.fromiter(chain.from_iterable(rows), dtype=np.int64)


def target_sequences(y: np.ndarray) -> list[tuple[int, ...]]:
    """Each row of ``y`` as its tokens before the end-of-sequence."""
    out = []
    for row in y:
        stop = np.flatnonzero((row == TGT_EOS) | (row == IGNORE))
        out.append(tuple(row[:stop[0] if len(stop) else len(row)].tolist()))
    return out


# -- memoryless baselines: statistics of the training targets, applied to another split -------------


def most_frequent_output(train_y: np.ndarray, n: int, target_len: int) -> np.ndarray:
    """Every example gets the training split's most frequent whole target sequence (ties: the
    smallest token sequence, so the row order does not matter). The exact-match floor of a model
    that ignores its input."""
    counts = Counter(target_sequences(train_y))
    best = min(counts, key=lambda seq: (-counts[seq], seq))
    row = np.full(target_len, IGNORE, dtype=np.int64)
    row[:len(best)] = best
    row[len(best)] = TGT_EOS
    return np.tile(row, (n, 1))


def most_frequent_token(train_y: np.ndarray, train_mask: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The most frequent training target token (end-of-sequence included) at every scored position."""
    token = np.bincount(train_y[train_mask]).argmax()
    return np.where(mask, token, IGNORE)


def most_frequent_token_per_position(train_y: np.ndarray, train_mask: np.ndarray,
                                     mask: np.ndarray) -> np.ndarray:
    """At each output position, the most frequent training target token at that position; past the
    longest training target, the most frequent token overall."""
    fallback = np.bincount(train_y[train_mask]).argmax()
    per_position = np.full(mask.shape[1], fallback, dtype=np.int64)
    for t in range(min(mask.shape[1], train_y.shape[1])):
        seen = train_y[train_mask[:, t], t]
        if len(seen):
            per_position[t] = np.bincount(seen).argmax()
    return np.where(mask, per_position[None, :], IGNORE)


def sequence_baselines(train: dict[str, np.ndarray], evaluate: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The three memoryless baselines of a sequence-to-sequence task, as predictions for
    ``evaluate`` in the format of its ``y``: ``most_frequent_output`` (score by exact match),
    ``most_frequent_token`` and ``most_frequent_token_per_position`` (score per token)."""
    n, target_len = evaluate["y"].shape
    return {
        "most_frequent_output": most_frequent_output(train["y"], n, target_len),
        "most_frequent_token": most_frequent_token(train["y"], train["mask"], evaluate["mask"]),
        "most_frequent_token_per_position": most_frequent_token_per_position(
            train["y"], train["mask"], evaluate["mask"]),
    }


def exact_match(pred: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose prediction equals the target up to and including its end-of-sequence
    (what follows it is not looked at). ``pred`` may be narrower or wider than ``y``."""
    mask = np.arange(y.shape[1])[None, :] <= (y == TGT_EOS).argmax(1)[:, None]
    return float(((_fit(pred, y) == y) | ~mask).all(1).mean())


def token_accuracy(pred: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    """Share of scored target tokens (end-of-sequence included) predicted at their position."""
    return float((_fit(pred, y)[mask] == y[mask]).mean())


def _fit(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``pred`` cut or padded (with IGNORE, which matches no target token) to the width of ``y``."""
    if pred.shape[1] >= y.shape[1]:
        return pred[:, :y.shape[1]]
    return np.pad(pred, ((0, 0), (0, y.shape[1] - pred.shape[1])), constant_values=IGNORE)


class Seq2SeqTask(Task):
    """Base of the tasks in the sequence-to-sequence format above: vocabularies, decoding, baselines.

    Subclasses provide :attr:`source_vocabulary` and :attr:`target_vocabulary` (lists of words, the
    index of a word being its token id) and :meth:`make_split`.
    """

    SRC_PAD: ClassVar[int] = SRC_PAD  # padding of the source (x)
    TGT_EOS: ClassVar[int] = TGT_EOS  # end of sequence: the last scored target token of every row
    TGT_BOS: ClassVar[int] = TGT_BOS  # beginning of sequence: the decoder's first input, never a target
    IGNORE: ClassVar[int] = IGNORE  # y after the end of sequence

    @property
    def source_vocabulary(self) -> list[str]:
        raise NotImplementedError

    @property
    def target_vocabulary(self) -> list[str]:
        raise NotImplementedError

    def decode_source(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """Source words of one row of ``x`` (padding dropped)."""
        words = self.source_vocabulary
        return [words[i] for i in np.asarray(ids).tolist() if i != SRC_PAD]

    def decode_target(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """Target words of one row of ``y`` or of a decoder's output, up to the end-of-sequence."""
        words, out = self.target_vocabulary, []
        for i in np.asarray(ids).tolist():
            if i in (TGT_EOS, IGNORE):
                break
            out.append(words[i])
        return out

    def baselines(self, train: dict[str, np.ndarray], evaluate: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Memoryless baselines fitted on the arrays ``train`` and predicting for ``evaluate``
        (both as returned by :meth:`make_split`): {name: predictions in the format of y}."""
        return sequence_baselines(train, evaluate)
