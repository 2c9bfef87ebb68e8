"""The array format of sequence-to-sequence tasks (SCAN, paired text), their chance levels and their
memoryless baselines.

A task whose answer is a sequence gives, per example::

    x      (n, S) int64   source tokens, right-padded with SRC_PAD (0)
    length (n,)   int64   source lengths (x[i, :length[i]] is the source)
    y      (n, U) int64   target tokens, then TGT_EOS, then -100 (IGNORE) to the end of the row
    mask   (n, U) bool    True where y holds a real target token, the end-of-sequence included

Source and target have vocabularies of their own. The target vocabulary starts with
``<eos>`` (TGT_EOS = 0) and ``<bos>`` (TGT_BOS = 1): a decoder is fed TGT_BOS first and is
asked to emit TGT_EOS after the last token; TGT_BOS is never a target. Every split of a task has
the same S and U (the longest source and target + 1 over all splits), so one model fits all.

Such a task names ``seq2seq`` as its head (``spec.default_head``, conf/head/seq2seq.yaml) and reports
the generated-sequence metrics (:mod:`stm_lab.metrics.generated`), exact match first.

Baselines are first written as whole predicted sequences in the format of ``y`` (a sequence, then
TGT_EOS, then IGNORE), then turned into :class:`~stm_lab.tasks.spec.Baseline` predictions at the
scored steps (:func:`as_baseline`), so the same metric code scores them and a model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import chain
from typing import Any, ClassVar

import numpy as np

from stm_lab.tasks.spec import Arrays, Baseline, Task, TaskSpec

SRC_PAD = 0
TGT_EOS = 0
TGT_BOS = 1
IGNORE = -100
# The metrics such a task reports (stm_lab.metrics.generated); exact match is the headline.
SEQ2SEQ_METRICS = ("exact_match", "token_acc", "token_recall", "length_acc", "token_acc_pos")


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
    smallest token sequence, so the row order does not matter), cut to fit ``target_len``. The
    exact-match floor of a model that ignores its input."""
    counts = Counter(target_sequences(train_y))
    best = min(counts, key=lambda seq: (-counts[seq], seq))[:target_len - 1]
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
    """The three memoryless baselines of a sequence-to-sequence task, as predicted sequences for
    ``evaluate`` in the format of its ``y``: ``most_frequent_output``, ``most_frequent_token`` and
    ``most_frequent_token_per_position``."""
    n, target_len = evaluate["y"].shape
    return {
        "most_frequent_output": most_frequent_output(train["y"], n, target_len),
        "most_frequent_token": most_frequent_token(train["y"], train["mask"], evaluate["mask"]),
        "most_frequent_token_per_position": most_frequent_token_per_position(
            train["y"], train["mask"], evaluate["mask"]),
    }


# What each baseline does, and whether it is memoryless.
BASELINE_NOTES: dict[str, tuple[str, bool]] = {
    "most_frequent_output": ("the most frequent training output sequence, whatever the source", True),
    "most_frequent_token": ("the most frequent training target token at every position (it never ends "
                            "unless that token is the end of sequence)", True),
    "most_frequent_token_per_position": ("at each output position, the most frequent training target token "
                                         "there (end of sequence included)", True),
}


def as_baseline(predicted: np.ndarray, evaluate: dict[str, np.ndarray], num_classes: int, note: str,
                memoryless: bool = True) -> Baseline:
    """A predicted sequence per row (the format of ``y``, as wide as ``evaluate["y"]``) as a
    :class:`Baseline`: one-hot scores at the scored steps of ``evaluate``. Where the predicted
    sequence has already ended (IGNORE), the end of sequence is written: the metrics read anything
    after a sequence's first end as no token."""
    tokens = predicted[:, :evaluate["y"].shape[1]][evaluate["mask"]]
    tokens = np.where(tokens == IGNORE, TGT_EOS, tokens)
    preds = np.zeros((len(tokens), num_classes), dtype=np.float32)
    preds[np.arange(len(tokens)), tokens] = 1.0
    return Baseline(preds, note, memoryless)


# -- chance: a decoder that guesses --------------------------------------------------------------------


def uniform_chance(y: np.ndarray, mask: np.ndarray, k: int) -> dict[str, float]:
    """What a decoder scores that emits each of ``k`` tokens (the end of sequence among them) uniformly
    at random at every step, stopping at its first end of sequence: exact match, length accuracy,
    token accuracy and macro token recall in expectation, on the rows ``y`` / ``mask``.

    At output position t it is still emitting with probability (1 - 1/k)^t and then hits the target
    token with probability 1/k; it has the right length n with probability (1 - 1/k)^n / k."""
    p = 1.0 / k
    n = mask.sum(1) - 1  # target tokens before the end of sequence
    reach = (1 - p) ** np.arange(mask.shape[1])[None, :] * p  # P(hit) at each position
    hit = np.where(mask, reach, 0.0)
    support = np.bincount(y[mask], minlength=k)
    expected = np.bincount(y[mask], weights=hit[mask], minlength=k)
    present = support > 0
    return {"exact_match": float(np.mean(p ** (n + 1))),
            "length_acc": float(np.mean((1 - p) ** n * p)),
            "token_acc": float(hit.sum() / mask.sum()),
            "token_recall": float(np.mean(expected[present] / support[present]))}


class Seq2SeqTask(Task):
    """Base of the tasks in the sequence-to-sequence format above: vocabularies, decoding, the spec's
    common part, baselines.

    Subclasses provide :attr:`source_vocabulary` and :attr:`target_vocabulary` (lists of words, the
    index of a word being its token id) and :meth:`make_split`.
    """

    held_out = False  # a fixed set of pairs: the split (a paper's, or the files') decides; overlap is measured
    SRC_PAD: ClassVar[int] = SRC_PAD  # padding of the source (x)
    SRC_UNK: ClassVar[int | None] = None  # the source's unknown-word token, if it has one
    TGT_EOS: ClassVar[int] = TGT_EOS  # end of sequence: the last scored target token of every row
    TGT_BOS: ClassVar[int] = TGT_BOS  # beginning of sequence: the decoder's first input, never a target
    IGNORE: ClassVar[int] = IGNORE  # y after the end of sequence
    baseline_notes: ClassVar[dict[str, tuple[str, bool]]] = BASELINE_NOTES  # see predicted_sequences

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
            if i in (TGT_EOS, IGNORE, -1):
                break
            out.append(words[i])
        return out

    def predicted_sequences(self, train: Arrays, evaluate: Arrays) -> dict[str, np.ndarray]:
        """The baselines as whole predicted sequences in the format of ``evaluate["y"]``."""
        return sequence_baselines(train, evaluate)

    def baselines(self, train: Arrays, test: Arrays) -> dict[str, Baseline]:
        """The baselines of :meth:`predicted_sequences` fitted on ``train`` and applied to ``test``
        (described in :attr:`baseline_notes`), scored as a decoder's output is."""
        k = len(self.target_vocabulary)
        return {name: as_baseline(pred, test, k, *self.baseline_notes[name])
                for name, pred in self.predicted_sequences(train, test).items()}

    def encode(self, item: Any) -> dict[str, np.ndarray]:
        """A source text (words split on spaces, or the task's tokeniser) as a one-example batch:
        the decoder generates up to the task's target length, reading no target."""
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str) or not text.strip():
            raise ValueError("an input is a non-empty source text (or {\"text\": \"...\"})")
        index = {w: i for i, w in enumerate(self.source_vocabulary)}
        ids = []
        for word in self.source_words(text):
            if word not in index and self.SRC_UNK is None:
                raise ValueError(f"{word!r} is not a source word of this task; words: {', '.join(self.source_vocabulary[1:])}")
            ids.append(index.get(word, self.SRC_UNK))
        U = self.spec.positions
        return {"x": np.asarray([ids], dtype=np.int64), "length": np.asarray([len(ids)]),
                "y": np.full((1, U), IGNORE, dtype=np.int64), "mask": np.ones((1, U), dtype=bool)}

    def source_words(self, text: str) -> list[str]:
        return text.split()

    def decode_sequence(self, tokens: Sequence[int] | np.ndarray) -> str:
        """A decoder's output as text: its target words up to the end of sequence."""
        return " ".join(self.decode_target(tokens))

    def sequence_spec(self, test: Arrays, **fields) -> TaskSpec:
        """The spec of a sequence-to-sequence task whose test split is ``test``: the seq2seq head, the
        generated-sequence metrics with exact match as the headline, and the chance levels of a
        decoder guessing uniformly among the target tokens it can emit (all but ``<bos>``)."""
        k = len(self.target_vocabulary) - 1
        return TaskSpec(
            input_kind="tokens",
            input_size=len(self.source_vocabulary),
            output_kind="classes",
            output_size=len(self.target_vocabulary),
            scored="steps",
            seq_len=test["x"].shape[1],
            positions=test["y"].shape[1],
            default_head="seq2seq",
            metrics=SEQ2SEQ_METRICS,
            headline="exact_match",
            chance=fields.pop("chance", None) or uniform_chance(test["y"], test["mask"], k),
            chance_note=(f"a decoder emitting each of the {k} target tokens (end of sequence included) "
                         "uniformly at random, stopping at its first end of sequence, in expectation on "
                         "the test split; the baselines say what the training statistics alone score"),
            **fields,
        )
