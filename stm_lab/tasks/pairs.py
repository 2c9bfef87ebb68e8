"""Paired text (translation, summarisation, any text-to-text data): read a source text, write its
target text. The sequence-to-sequence format of :mod:`stm_lab.tasks.seq2seq`.

Sources, loaded exactly as the text task loads them (:mod:`stm_lab.tasks.text`): a Hugging Face
hub name (``dataset: Helsinki-NLP/opus_books``, ``dataset_config: de-en``; a network the first
time, then the hub cache) or
local CSV / TSV / JSON (lines) / Parquet files (``data_files: {train: a.tsv, test: b.tsv}``).
``source_column`` and ``target_column`` name the columns; a dotted name reads a field of a nested
column, as hub translation sets store their pairs (``translation.de``, ``translation.en``).

Vocabularies: one for the source, one for the target, each built from the training split only:
tokens (lower-cased words and punctuation) seen at least ``min_count`` times, the most frequent
first, at most ``source_vocab_size`` / ``target_vocab_size`` entries with the special tokens.
Source: ``<pad>`` 0, ``<unk>`` 1. Target: ``<eos>`` 0, ``<bos>`` 1, ``<unk>`` 2. Sources are
truncated to ``max_source_length`` tokens and targets to ``max_target_length`` (the
end-of-sequence comes after, so ``y`` has max_target_length + 1 columns at most).

Splits without a file of their own (``val_split: null`` / ``test_split: null``) are carved from
the training split with ``split_seed``; the run seed does not change the data.

Baselines (:meth:`PairsTask.baselines`, scored by the generated-sequence metrics): the most frequent
training target, the most frequent target token, the most frequent token per position, and copying
the source into the target vocabulary (``copy_source``; a real floor where source and target share a
language, as in summarisation; it reads the whole source, so it is not memoryless).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from stm_lab.errors import DataError
from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.seq2seq import BASELINE_NOTES, IGNORE, TGT_EOS, Seq2SeqTask, encode_pairs
from stm_lab.tasks.spec import SPLITS, Arrays, TaskSpec, task_field
from stm_lab.tasks.text import (
    TextFilesTask,
    build_vocabulary,
    holdout_indices,
    load_raw,
    require_columns,
    require_splits,
    text_column,
    tokenize,
)

SOURCE_SPECIALS = ("<pad>", "<unk>")
TARGET_SPECIALS = ("<eos>", "<bos>", "<unk>")


@TASKS.register("pairs")
@dataclass(frozen=True)
class PairsTask(Seq2SeqTask, TextFilesTask):
    SRC_UNK: ClassVar[int] = 1  # a source token not in the source vocabulary
    TGT_UNK: ClassVar[int] = 2  # a target token not in the target vocabulary (a real target: scored)
    baseline_notes: ClassVar[dict[str, tuple[str, bool]]] = {
        **BASELINE_NOTES,
        "copy_source": ("the source's own words as the output (a floor where source and target share a "
                        "language, as in summarisation); it reads the whole source, so it is not memoryless",
                        False),
    }

    dataset_config: str | None = task_field("the hub dataset's configuration (e.g. a language pair: de-en)")
    source_column: str = task_field("column of the source text (a.b: field b of column a)")
    target_column: str = task_field("column of the target text (a.b: field b of column a)")
    source_vocab_size: int = task_field("at most this many source tokens, <pad> and <unk> included")
    target_vocab_size: int = task_field("at most this many target tokens, <eos> <bos> <unk> included")
    max_source_length: int = task_field("sources are truncated to this many tokens")
    max_target_length: int = task_field("targets are truncated to this many tokens (before the <eos>)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(self.source_vocab_size >= 3, "source_vocab_size", "an integer >= 3")
        self.require(self.target_vocab_size >= 4, "target_vocab_size", "an integer >= 4")
        self.require(self.max_source_length >= 1, "max_source_length", "an integer >= 1")
        self.require(self.max_target_length >= 1, "max_target_length", "an integer >= 1")

    # -- where the data come from --------------------------------------------------------------------

    def _texts(self, ds: Any, column: str, key: str, where: str) -> list[str]:
        """The strings of a column, or of field b of column a for ``a.b``."""
        if column in ds.column_names or "." not in column:
            return text_column(ds, column, key, where)
        top, field = column.split(".", 1)
        require_columns(ds, {key: top}, where)
        if len(ds) == 0:
            raise DataError(f"{where}: the split is empty")
        out = []
        for i, row in enumerate(ds[top]):
            value = row.get(field) if isinstance(row, dict) else None
            if not isinstance(value, str):
                raise DataError(f"{where}: column {top!r} row {i} has no text field {field!r} (data.{key}): {row!r}")
            out.append(value)
        return out

    # -- preparing: vocabularies, encoded splits -------------------------------------------------------

    @cached_property
    def prepared(self) -> dict[str, Any]:
        """Vocabularies and encoded splits: read and built once per task object (one build of a run
        makes one task object, so the files are read once per run)."""
        return self._prepare()

    def _prepare(self) -> dict[str, Any]:
        raw = load_raw(self.dataset, self.files(), self.dataset_config)
        wanted = {"train": self.train_split, "val": self.val_split, "test": self.test_split}
        require_splits(raw, wanted, self.dataset or self.data_files)
        tokens: dict[str, tuple[list[list[str]], list[list[str]]]] = {}
        for split, name in wanted.items():
            if name is None:
                continue
            ds, where = raw[name]
            # Both columns must exist before either is read: the first error names the first gap.
            require_columns(ds, {"source_column": _top_column(self.source_column, ds),
                                 "target_column": _top_column(self.target_column, ds)}, where)
            sources = self._texts(ds, self.source_column, "source_column", where)
            targets = self._texts(ds, self.target_column, "target_column", where)
            tokens[split] = ([tokenize(t, self.lowercase)[:self.max_source_length] for t in sources],
                             [tokenize(t, self.lowercase)[:self.max_target_length] for t in targets])
        train_src, train_tgt = tokens["train"]
        src_vocab = build_vocabulary(train_src, self.source_vocab_size, self.min_count, SOURCE_SPECIALS)
        tgt_vocab = build_vocabulary(train_tgt, self.target_vocab_size, self.min_count, TARGET_SPECIALS)
        encoded = {s: ([[src_vocab.get(t, self.SRC_UNK) for t in toks] or [self.SRC_UNK] for toks in src],
                       [[tgt_vocab.get(t, self.TGT_UNK) for t in toks] for toks in tgt])
                   for s, (src, tgt) in tokens.items()}

        # Hold-outs carved from the training split, disjoint, fixed by split_seed.
        src_ids, tgt_ids = encoded["train"]
        parts = holdout_indices(len(src_ids), self.val_fraction if self.val_split is None else 0.0,
                                self.test_fraction if self.test_split is None else 0.0, self.split_seed)
        where = raw[self.train_split][1]
        for split in SPLITS:
            if split == "train" or wanted[split] is None:
                encoded[split] = ([src_ids[i] for i in parts[split]], [tgt_ids[i] for i in parts[split]])
            if len(encoded[split][0]) == 0:
                raise DataError(f"{where}: nothing left for the {split} split "
                                f"(data.{split}_fraction is too small for {len(src_ids)} pairs)")
        return {
            "source_vocab": list(src_vocab), "target_vocab": list(tgt_vocab), "splits": encoded,
            "source_len": max(len(s) for split in SPLITS for s in encoded[split][0]),
            "target_len": max(len(t) for split in SPLITS for t in encoded[split][1]) + 1,
        }

    # -- the task contract ------------------------------------------------------------------------------

    @property
    def source_vocabulary(self) -> list[str]:
        return self.prepared["source_vocab"]

    @property
    def target_vocabulary(self) -> list[str]:
        return self.prepared["target_vocab"]

    def make_split(self, split: str, n: int, seed: int) -> dict[str, np.ndarray]:
        p = self.prepared
        sources, targets = p["splits"][split]
        return encode_pairs(sources[:n], targets[:n], p["source_len"], p["target_len"])

    def predicted_sequences(self, train: Arrays, evaluate: Arrays) -> dict[str, np.ndarray]:
        """The sequence baselines, plus ``copy_source``: the source's words in the target
        vocabulary (``<unk>`` where absent), cut to fit the target width."""
        out = super().predicted_sequences(train, evaluate)
        index = {w: i for i, w in enumerate(self.target_vocabulary)}
        to_target = np.array([index.get(w, self.TGT_UNK) for w in self.source_vocabulary], dtype=np.int64)
        n, target_len = evaluate["y"].shape
        copy = np.full((n, target_len), IGNORE, dtype=np.int64)
        kept = np.minimum(evaluate["length"], target_len - 1)
        columns = np.arange(min(target_len, evaluate["x"].shape[1]))
        inside = columns[None, :] < kept[:, None]
        copy[:, columns] = np.where(inside, to_target[evaluate["x"][:, columns]], IGNORE)
        copy[np.arange(n), kept] = TGT_EOS
        out["copy_source"] = copy
        return out

    def source_words(self, text: str) -> list[str]:
        return tokenize(text, self.lowercase)[:self.max_source_length]

    # -- what travels with a trained model ------------------------------------------------------------

    def artifacts(self) -> dict[str, Any]:
        p, spec = self.prepared, self.spec
        return {k: p[k] for k in ("source_vocab", "target_vocab", "source_len", "target_len")} | {
            "chance": dict(spec.chance)}

    def restore(self, artifacts: dict[str, Any]) -> PairsTask:
        if artifacts:  # the vocabularies the model was trained with, not the files'
            self.__dict__["prepared"] = {**artifacts, "splits": None}
        return self

    @property
    def spec(self) -> TaskSpec:
        p = self.prepared
        if p["splits"] is None:  # restored from a checkpoint: shapes and chance as trained
            shapes = {"x": np.zeros((1, p["source_len"]), dtype=np.int64),
                      "y": np.zeros((1, p["target_len"]), dtype=np.int64)}
            return self.sequence_spec(shapes, chance=p["chance"], paper="", tags=("real-data", "text", "seq2seq"))
        return self.sequence_spec(
            self.make_split("test", len(p["splits"]["test"][0]), 0),
            paper=("data: " + self.dataset) if self.dataset else "local files",
            tags=("real-data", "text", "seq2seq"),
        )


def _top_column(column: str, ds: Any) -> str:
    """The column a (possibly dotted) column name lives in."""
    return column if column in ds.column_names or "." not in column else column.split(".", 1)[0]
