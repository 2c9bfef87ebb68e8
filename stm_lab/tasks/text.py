"""Text classification (sentiment, topic): real text read token by token, classified at the
last real token.

Sources: a Hugging Face hub name (``dataset: stanfordnlp/imdb``; needs a network the
first time, then the hub cache), or local CSV / JSON (lines) / Parquet files
(``data_files: {train: a.csv, test: b.csv}``), loaded with ``datasets.load_dataset``.
``text_column`` and ``label_column`` name the columns. Labels are integers or class names
(strings, mapped to indices in sorted order of the training split's names) or a
``ClassLabel`` feature.

Vocabulary: built from the training split only: tokens (lower-cased words and
punctuation) seen at least ``min_count`` times, the ``vocab_size - 2`` most frequent;
index 0 is padding, 1 the unknown token. Texts are truncated to ``max_length`` tokens.

Variable length: every split is right-padded to one length and the scored step is each
text's last real token. The network is causal (left to right), so its state there has
never seen a padding step, and the prediction cannot depend on how much padding follows
(tests/test_text.py checks it against the unpadded text). Splits without a file of their
own (``val_split: null`` / ``test_split: null``) are carved from the training split with
``split_seed``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from stm_lab.errors import DataError
from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import SPLITS, Task, TaskSpec, task_field

PAD, UNK = 0, 1
FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    return _TOKEN.findall(text.lower() if lowercase else text)


# -- shared by every task on text files or hub datasets (text, pairs) -------------------------------


def local_files(data_files: Any, train_split: str) -> dict[str, Path]:
    """``data_files`` as {split name: path}: one file is the training split."""
    if not data_files:
        return {}
    if isinstance(data_files, str | Path):
        return {train_split: Path(data_files).expanduser()}
    return {str(k): Path(v).expanduser() for k, v in dict(data_files).items()}


def files_fingerprint(files: dict[str, Path]) -> dict[str, Any]:
    """Path, size and modification time of each file: an edited file changes the cache key."""
    out = {}
    for split, path in files.items():
        st = path.stat() if path.is_file() else None
        out[split] = [str(path.resolve()), st.st_size if st else None, st.st_mtime_ns if st else None]
    return out


def load_raw(dataset: str | None, files: dict[str, Path], config: str | None = None) -> dict[str, tuple[Any, str]]:
    """Raw splits by name, each with a description for error messages (its file), from a hub
    dataset name (and its configuration, e.g. a language pair) or from local files."""
    import datasets

    if dataset:
        try:
            loaded = datasets.load_dataset(dataset, config) if config else datasets.load_dataset(dataset)
        except Exception as e:  # offline, unknown name, private...: the user's to fix
            raise DataError(
                f"hub dataset {dataset!r} could not be loaded ({type(e).__name__}: {e}). "
                "Offline (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE set, or no network) it must already "
                "be in the hub cache; otherwise give local files with data.data_files") from e
        return {name: (ds, f"{dataset}[{name}]") for name, ds in loaded.items()}
    out = {}
    for split, path in files.items():
        if not path.is_file():
            raise DataError(f"{path}: no such file (data.data_files, split {split!r})")
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise DataError(f"{path}: unknown format {path.suffix!r}; allowed: {', '.join(FORMATS)}")
        kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
        try:
            ds = datasets.load_dataset(fmt, data_files={"data": str(path)}, split="data", **kwargs)
        except Exception as e:
            raise DataError(f"{path}: cannot be read as {fmt} ({type(e).__name__}: {e})") from e
        out[split] = (ds, str(path))
    return out


def require_splits(raw: dict[str, Any], wanted: dict[str, str | None], source: Any) -> None:
    """Every split named in ``wanted`` ({train/val/test: name or None}) exists in ``raw``."""
    for split, name in wanted.items():
        if name is not None and name not in raw:
            raise DataError(f"{source}: no split {name!r} (data.{split}_split); available: {', '.join(raw)}")


def require_columns(ds: Any, columns: dict[str, str], where: str) -> None:
    """Each column ({config key: column name}) exists, checked in order."""
    for key, column in columns.items():
        if column not in ds.column_names:
            raise DataError(f"{where}: no column {column!r} (data.{key}); columns: {', '.join(ds.column_names)}")


def text_column(ds: Any, column: str, key: str, where: str) -> list[str]:
    """The strings of ``column`` (named by config key ``key``) in a non-empty split."""
    require_columns(ds, {key: column}, where)
    if len(ds) == 0:
        raise DataError(f"{where}: the split is empty")
    texts = ds[column]
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"{where}: column {column!r} row {i} is {t!r}, not text")
    return texts


def build_vocabulary(token_lists: list[list[str]], size: int, min_count: int,
                     specials: tuple[str, ...]) -> dict[str, int]:
    """``specials`` first, then the tokens seen at least ``min_count`` times, most frequent first
    (ties alphabetical), ``size`` entries in all."""
    counts = Counter(tok for toks in token_lists for tok in toks)
    kept = sorted((t for t, c in counts.items() if c >= min_count and t not in specials),
                  key=lambda t: (-counts[t], t))
    vocab = {tok: i for i, tok in enumerate(specials)}
    for tok in kept[:size - len(specials)]:
        vocab[tok] = len(vocab)
    return vocab


def holdout_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Disjoint val / test / train index sets of a training split of ``n`` rows, fixed by ``seed``
    (a zero fraction gives an empty hold-out)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = int(round(val_fraction * n)), int(round(test_fraction * n))
    return {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}


@dataclass(frozen=True)
class TextFilesTask(Task):
    """What every task on text files or a hub dataset shares (text, pairs): where the data come
    from, which splits to use or carve, and the vocabulary's count threshold and case."""

    held_out = False  # a fixed dataset: its overlap is measured, not removed

    dataset: str | None = task_field("hub dataset name (e.g. stanfordnlp/imdb); null: use data_files")
    data_files: Any = task_field("local file, or {split name: file}; .csv .tsv .json .jsonl .parquet")
    train_split: str = task_field("split (or data_files key) to train on and build the vocabulary from")
    val_split: str | None = task_field("validation split; null: carve val_fraction off the training split")
    test_split: str | None = task_field("test split; null: carve test_fraction off the training split")
    val_fraction: float = task_field("share of the training split held out when val_split is null")
    test_fraction: float = task_field("share of the training split held out when test_split is null")
    split_seed: int = task_field("seed of those hold-outs (fixed across runs)")
    min_count: int = task_field("a token enters a vocabulary if seen this often in training")
    lowercase: bool = task_field("lower-case before tokenising")

    def __post_init__(self) -> None:
        self.require(bool(self.dataset) != bool(self.data_files), "data_files",
                     "exactly one of data.dataset (a hub name) and data.data_files (local files)")
        self.require(self.min_count >= 1, "min_count", "an integer >= 1")
        self.require(0 <= self.val_fraction < 1, "val_fraction", "a number in [0, 1)")
        self.require(0 <= self.test_fraction < 1 - self.val_fraction, "test_fraction",
                     f"a number in [0, {1 - self.val_fraction:g})")

    def files(self) -> dict[str, Path]:
        return local_files(self.data_files, self.train_split)

    def fingerprint(self) -> dict[str, Any]:
        return files_fingerprint(self.files())


@TASKS.register("text")
@dataclass(frozen=True)
class TextClassificationTask(TextFilesTask):
    text_column: str = task_field("column holding the text")
    label_column: str = task_field("column holding the label (integer or class name)")
    vocab_size: int = task_field("at most this many tokens, padding and unknown included")
    max_length: int = task_field("texts are truncated to this many tokens")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(self.vocab_size >= 3, "vocab_size", "an integer >= 3")
        self.require(self.max_length >= 1, "max_length", "an integer >= 1")

    # -- where the data come from -------------------------------------------------------------

    def _load(self) -> dict[str, tuple[Any, str]]:
        """Raw splits by name, each with a description for error messages (its file)."""
        return load_raw(self.dataset, self.files())

    # -- preparing: vocabulary, labels, encoded splits ------------------------------------------

    @cached_property
    def prepared(self) -> dict[str, Any]:
        """Vocabulary, class names and encoded splits: read and built once per task object (one
        build of a run makes one task object, so the files are read once per run)."""
        return self._prepare()

    def _columns(self, ds: Any, where: str) -> tuple[list[str], list[Any], Any]:
        require_columns(ds, {"text_column": self.text_column, "label_column": self.label_column}, where)
        texts = text_column(ds, self.text_column, "text_column", where)
        return texts, ds[self.label_column], ds.features[self.label_column]

    def _prepare(self) -> dict[str, Any]:
        import datasets

        raw = self._load()
        wanted = {"train": self.train_split, "val": self.val_split, "test": self.test_split}
        require_splits(raw, wanted, self.dataset or self.data_files)
        columns = {s: self._columns(*raw[name]) + (raw[name][1],) for s, name in wanted.items() if name}
        texts, labels, feature, where = columns["train"]

        # Labels: a ClassLabel, integers, or class names (strings) -- nothing else.
        def kind(values: list[Any], where: str) -> str:
            if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
                if min(values) < 0:
                    raise DataError(f"{where}: column {self.label_column!r} has negative label {min(values)} "
                                    "(hidden test labels? pick another split)")
                return "int"
            if all(isinstance(v, str) for v in values):
                return "name"
            bad = next(v for v in values if not isinstance(v, int | np.integer | str) or isinstance(v, bool))
            raise DataError(f"{where}: column {self.label_column!r} holds {bad!r} ({type(bad).__name__}); "
                            "labels must be integers or class names")

        train_kind = kind(labels, where)
        if isinstance(feature, datasets.ClassLabel):
            names = list(feature.names)
        elif train_kind == "name":
            names = sorted(set(labels))
        else:
            names = [str(i) for i in range(max(max(c[1]) for c in columns.values()) + 1)]

        def encode_labels(values: list[Any], where: str) -> np.ndarray:
            if kind(values, where) != train_kind:
                raise DataError(f"{where}: column {self.label_column!r} mixes integer and named labels "
                                "with the training split")
            if train_kind == "int":
                return np.asarray(values, dtype=np.int64)
            index = {n: i for i, n in enumerate(names)}
            unknown = sorted(set(values) - set(index))
            if unknown:
                raise DataError(f"{where}: labels {unknown[:5]} never occur in the training split")
            return np.asarray([index[v] for v in values], dtype=np.int64)

        tokens = {s: [tokenize(t, self.lowercase)[:self.max_length] for t in c[0]] for s, c in columns.items()}
        vocab = build_vocabulary(tokens["train"], self.vocab_size, self.min_count, ("<pad>", "<unk>"))
        encoded = {s: ([[vocab.get(t, UNK) for t in toks] or [UNK] for toks in tokens[s]],
                       encode_labels(columns[s][1], columns[s][3])) for s in columns}

        # Hold-outs carved from the training split, disjoint, fixed by split_seed.
        ids, ys = encoded["train"]
        parts = holdout_indices(len(ids), self.val_fraction if self.val_split is None else 0.0,
                                self.test_fraction if self.test_split is None else 0.0, self.split_seed)
        for split in SPLITS:
            if split == "train" or wanted[split] is None:
                encoded[split] = ([ids[i] for i in parts[split]], ys[parts[split]])
            if len(encoded[split][0]) == 0:
                raise DataError(f"{where}: nothing left for the {split} split "
                                f"(data.{split}_fraction is too small for {len(ids)} texts)")
        seq_len = max(len(s) for split in SPLITS for s in encoded[split][0])
        return {"vocab": vocab, "names": names, "splits": encoded, "seq_len": seq_len}

    # -- what travels with a trained model ----------------------------------------------------------

    def artifacts(self) -> dict[str, Any]:
        p = self.prepared
        return {"vocab": p["vocab"], "names": p["names"], "seq_len": p["seq_len"]}

    def restore(self, artifacts: dict[str, Any]) -> TextClassificationTask:
        if artifacts:  # the vocabulary and labels the model was trained with, not the files'
            self.__dict__["prepared"] = {**artifacts, "splits": None}
        return self

    def encode(self, item: Any) -> dict[str, np.ndarray]:
        """A text, tokenised as in training; words outside the vocabulary are <unk>."""
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str) or not text.strip():
            raise ValueError("an input is a non-empty text (or {\"text\": \"...\"})")
        vocab = self.vocabulary
        ids = [vocab.get(t, UNK) for t in tokenize(text, self.lowercase)[:self.max_length]] or [UNK]
        mask = np.zeros((1, len(ids)), dtype=bool)
        mask[0, -1] = True  # read at the last real token, as in training
        return {"x": np.asarray([ids], dtype=np.int64), "mask": mask, "length": np.asarray([len(ids)])}

    def decode(self, classes: np.ndarray) -> list[Any]:
        names = self.class_names
        return [names[int(c)] for c in classes]

    # -- the task contract ------------------------------------------------------------------------

    @property
    def vocabulary(self) -> dict[str, int]:
        return self.prepared["vocab"]

    @property
    def class_names(self) -> list[str]:
        return self.prepared["names"]

    @property
    def spec(self) -> TaskSpec:
        p = self.prepared
        k = len(p["names"])
        if k < 2:
            raise DataError(f"{self.dataset or self.data_files}: column {self.label_column!r} "
                            f"has {k} class in the training split; at least 2 are needed")
        return TaskSpec(
            input_kind="tokens",
            input_size=len(p["vocab"]),
            output_kind="classes",
            output_size=k,
            scored="one",
            seq_len=p["seq_len"],
            chance={"acc": 1.0 / k, "recall": 1.0 / k},
            chance_note=f"uniform guess among {k} classes (the majority baseline says what always "
                        "answering the most frequent training class scores)",
            default_head="sequence",
            paper=("data: " + self.dataset) if self.dataset else "local files",
            tags=("real-data", "text", "classification"),
        )

    def make_split(self, split: str, n: int, seed: int) -> dict[str, np.ndarray]:
        p = self.prepared
        ids, labels = p["splits"][split]
        ids, labels = ids[:n], labels[:n]
        T = p["seq_len"]
        x = np.full((len(ids), T), PAD, dtype=np.int64)
        y = np.full((len(ids), T), -100, dtype=np.int64)
        mask = np.zeros((len(ids), T), dtype=bool)
        lengths = np.array([len(s) for s in ids], dtype=np.int64)
        for i, seq in enumerate(ids):
            x[i, :len(seq)] = seq
        rows = np.arange(len(ids))
        y[rows, lengths - 1] = labels
        mask[rows, lengths - 1] = True
        return {"x": x, "y": y, "mask": mask, "length": lengths}
