"""Paired text on small files the tests write: every format, the two vocabularies (training split
only, size, min count, <unk>), truncation, the seq2seq arrays, hold-outs, baselines, and every
data error a user can make. No network: a hub name is only used to check the offline error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stm_lab import api
from stm_lab.baselines import baseline_scores
from stm_lab.data import MemoryDataModule
from stm_lab.errors import ConfigError, DataError
from stm_lab.tasks.pairs import PairsTask
from stm_lab.tasks.seq2seq import IGNORE, TGT_BOS, TGT_EOS

# A toy translation: English -> a made-up language (word for word, reversed order).
LEXICON = {"the": "le", "cat": "chat", "dog": "chien", "sees": "voit", "eats": "mange", "bird": "oiseau",
           "a": "un", "fish": "poisson", "big": "gros", "small": "petit"}
SENTENCES = ["the cat sees a dog", "a dog eats the fish", "the big bird sees the small cat",
             "a small fish", "the dog eats", "a cat sees the big dog", "the bird", "a big cat eats a small fish"]


def translate(sentence: str) -> str:
    return " ".join(LEXICON[w] for w in reversed(sentence.split()))


TRAIN = [(s, translate(s)) for s in SENTENCES] * 3
TEST = [("the cat eats the zebra", "le zebre mange chat le"), ("a dog", "chien un")]


def frame(rows, source="source", target="target") -> pd.DataFrame:
    return pd.DataFrame({source: [s for s, _ in rows], target: [t for _, t in rows]})


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    frame(TRAIN).to_csv(tmp_path / "train.csv", index=False)
    frame(TEST).to_csv(tmp_path / "test.csv", index=False)
    return {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")}


def pairs_task(**params) -> PairsTask:
    """conf/data/pairs.yaml with ``params`` on top; every word counts (min_count 1) unless said."""
    return api.task("pairs", **{"min_count": 1, **params})


def task_for(files, **params) -> PairsTask:
    return pairs_task(**{"data_files": files, "val_fraction": 0.25, **params})


def _module(task, cache_dir=None, batch_size: int = 8) -> MemoryDataModule:
    return MemoryDataModule(task, 100, 100, 100, batch_size, on_device=False, regime="fixed", seed=0, cache_dir=cache_dir)


def _setup(task) -> MemoryDataModule:
    dm = _module(task)
    dm.setup()
    return dm


def test_arrays_decode_back_to_the_pairs(files):
    task = task_for(files)
    d = task.make_split("train", 100, seed=0)
    x, length, y, mask = d["x"], d["length"], d["y"], d["mask"]
    spec = task.spec
    assert x.shape == (18, spec.seq_len) and y.shape == mask.shape == (18, spec.positions)
    assert spec.seq_len == 7 and spec.positions == 8  # the longest source; the longest target + <eos>
    pairs = dict(TRAIN)
    for i in range(len(x)):
        source = " ".join(task.decode_source(x[i]))
        assert " ".join(task.decode_target(y[i])) == pairs[source]
        assert length[i] == len(source.split()) and (x[i, length[i]:] == task.SRC_PAD).all()
        n = mask[i].sum()
        assert n == len(pairs[source].split()) + 1 and y[i, n - 1] == TGT_EOS and (y[i, n:] == IGNORE).all()
    assert not (y == TGT_BOS).any()


def test_vocabularies_from_train_only(files):
    task = task_for(files)
    src, tgt = task.source_vocabulary, task.target_vocabulary
    assert src[:2] == ["<pad>", "<unk>"] and tgt[:3] == ["<eos>", "<bos>", "<unk>"]
    assert tgt[task.TGT_EOS] == "<eos>" and tgt[task.TGT_BOS] == "<bos>" and tgt[task.TGT_UNK] == "<unk>"
    assert "zebra" not in src and "zebre" not in tgt  # only in the test file
    assert set(src[2:]) == set(LEXICON) and set(tgt[3:]) == set(LEXICON.values())
    test = task.make_split("test", 100, seed=0)
    assert task.decode_source(test["x"][0]) == ["the", "cat", "eats", "the", "<unk>"]
    assert task.decode_target(test["y"][0]) == ["le", "<unk>", "mange", "chat", "le"]


def test_vocabulary_size_and_min_count(files, tmp_path):
    small = task_for(files, source_vocab_size=5, target_vocab_size=6)
    full = task_for(files)
    assert len(small.source_vocabulary) == 5 and len(small.target_vocabulary) == 6
    # The most frequent tokens are kept: the small vocabularies are the head of the full ones.
    assert small.source_vocabulary == full.source_vocabulary[:5]
    assert small.target_vocabulary == full.target_vocabulary[:6]
    rows = [("rare word here", "mot rare ici")] + [("common words", "mots communs")] * 4
    frame(rows).to_csv(tmp_path / "rare.csv", index=False)
    task = pairs_task(**{"data_files": str(tmp_path / "rare.csv"), "test_split": None,
                       "val_fraction": 0.2, "test_fraction": 0.2, "min_count": 2})
    assert task.source_vocabulary == ["<pad>", "<unk>", "common", "words"]
    assert task.target_vocabulary == ["<eos>", "<bos>", "<unk>", "communs", "mots"]


def test_truncation(files):
    task = task_for(files, max_source_length=3, max_target_length=2)
    d = task.make_split("train", 100, seed=0)
    assert d["x"].shape[1] == 3 and d["y"].shape[1] == 3 and d["length"].max() == 3
    pairs = dict(TRAIN)
    for i in range(len(d["x"])):
        source = task.decode_source(d["x"][i])
        full = next(s for s in pairs if s.split()[:3] == source)
        assert task.decode_target(d["y"][i]) == pairs[full].split()[:2]
        assert d["y"][i, d["mask"][i].sum() - 1] == TGT_EOS


def test_holdouts_are_carved_from_train(files):
    task = task_for(files, val_fraction=0.25, test_split=None, test_fraction=0.25)
    rows = {s: task.make_split(s, 100, seed=0) for s in ("train", "val", "test")}
    assert [len(rows[s]["x"]) for s in ("train", "val", "test")] == [12, 6, 6]
    same = task_for(files, val_fraction=0.25, test_split=None, test_fraction=0.25, split_seed=0)
    other = task_for(files, val_fraction=0.25, test_split=None, test_fraction=0.25, split_seed=1)
    assert (same.make_split("val", 100, 5)["x"] == rows["val"]["x"]).all()  # the run seed changes nothing
    assert not (other.make_split("val", 100, 0)["x"] == rows["val"]["x"]).all()


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl", ".parquet"])
def test_other_formats_and_column_names(tmp_path, suffix):
    rows = frame(TRAIN, "en", "xx")
    path = tmp_path / f"train{suffix}"
    if suffix == ".tsv":
        rows.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        rows.to_json(path, orient="records", lines=True)
    else:
        rows.to_parquet(path)
    task = pairs_task(**{"data_files": str(path), "source_column": "en", "target_column": "xx",
                       "test_split": None, "val_fraction": 0.2, "test_fraction": 0.2})
    d = task.make_split("train", 100, seed=0)
    pairs = dict(TRAIN)
    assert all(" ".join(task.decode_target(y)) == pairs[" ".join(task.decode_source(x))]
               for x, y in zip(d["x"], d["y"], strict=True))


def test_nested_translation_column(tmp_path):
    path = tmp_path / "books.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "translation": {"en": s, "xx": t}})
                              for i, (s, t) in enumerate(TRAIN)))
    task = pairs_task(**{"data_files": str(path), "source_column": "translation.en",
                       "target_column": "translation.xx", "test_split": None, "val_fraction": 0.2,
                       "test_fraction": 0.2})
    d = task.make_split("test", 100, seed=0)
    assert " ".join(task.decode_target(d["y"][0])) == dict(TRAIN)[" ".join(task.decode_source(d["x"][0]))]
    bad = pairs_task(**{"data_files": str(path), "source_column": "translation.de",
                      "target_column": "translation.xx", "test_split": None})
    with pytest.raises(DataError, match=r"books\.jsonl: column 'translation' row 0 has no text field 'de' "
                                        r"\(data\.source_column\)"):
        _setup(bad)


def test_through_the_data_module(files, tmp_path):
    dm = _module(task_for(files), cache_dir=tmp_path / "cache", batch_size=4)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"x", "length", "y", "mask"} and batch["x"].shape == (4, 7)
    assert batch["y"].shape == batch["mask"].shape == (4, 8)


# -- baselines -------------------------------------------------------------------------------------------


def _baseline_metrics(task) -> dict[str, dict[str, float]]:
    return {name: b["metrics"] for name, b in baseline_scores(_module(task)).items()}


def test_baselines(tmp_path, files):
    # Summarisation-like data where the target is the source: copying it is exact.
    rows = [(s, s) for s in SENTENCES] * 3
    frame(rows).to_csv(tmp_path / "same.csv", index=False)
    task = pairs_task(data_files=str(tmp_path / "same.csv"), test_split=None, val_fraction=0.2,
                      test_fraction=0.2, max_target_length=5)
    train, test = task.make_split("train", 100, 0), task.make_split("test", 100, 0)
    baselines = task.baselines(train, test)
    assert set(baselines) == {"most_frequent_output", "most_frequent_token", "most_frequent_token_per_position",
                              "copy_source"}
    assert all(b.preds.shape == (test["mask"].sum(), len(task.target_vocabulary)) for b in baselines.values())
    assert baselines["copy_source"].memoryless is False and baselines["most_frequent_output"].memoryless
    # Copying is exact, also where max_target_length=5 cut the target (the copy is cut the same way).
    assert (test["length"] > 5).any()
    scores = _baseline_metrics(task)
    assert scores["copy_source"]["exact_match"] == 1.0 and scores["copy_source"]["length_acc"] == 1.0
    assert scores["most_frequent_output"]["exact_match"] < 0.5
    assert 0 < task.spec.chance["exact_match"] < 0.01  # a uniform guess of every token
    # With a translation, copying the source is worth nothing.
    assert _baseline_metrics(task_for(files))["copy_source"]["exact_match"] == 0.0


# -- data errors: each names the file (and the column) ----------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        _setup(task_for({"train": str(tmp_path / "nope.csv"), "test": str(tmp_path / "nope.csv")}))


@pytest.mark.parametrize("key,column", [("source_column", "en"), ("target_column", "fr")])
def test_missing_column(files, key, column):
    with pytest.raises(DataError, match=rf"train\.csv: no column '{column}' \(data\.{key}\); columns: source, target"):
        _setup(task_for(files, **{key: column}))


def test_empty_split(tmp_path, files):
    empty = tmp_path / "empty.jsonl"
    frame(TRAIN).head(0).to_json(empty, orient="records", lines=True)
    with pytest.raises(DataError, match=r"empty\.jsonl.*(empty|cannot be read)"):
        _setup(task_for({**files, "test": str(empty)}))
    header_only = tmp_path / "header.csv"
    header_only.write_text("source,target\n")
    with pytest.raises(DataError, match=r"header\.csv.*(empty|cannot be read)"):
        _setup(task_for({**files, "test": str(header_only)}))


def test_unreadable_and_unknown_format(tmp_path, files):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"broken\.parquet: cannot be read as parquet"):
        _setup(task_for({**files, "test": str(bad)}))
    odd = tmp_path / "pairs.xlsx"
    odd.write_text("x")
    with pytest.raises(DataError, match=r"pairs\.xlsx: unknown format '\.xlsx'; allowed: .csv"):
        _setup(task_for({**files, "train": str(odd)}))


def test_not_text_and_missing_split(tmp_path, files):
    path = tmp_path / "numbers.jsonl"
    path.write_text("\n".join(json.dumps({"source": "a cat", "target": 3}) for _ in range(5)))
    with pytest.raises(DataError, match=r"numbers\.jsonl: column 'target' row 0 is 3, not text"):
        _setup(task_for({**files, "train": str(path)}))
    with pytest.raises(DataError, match=r"no split 'validation' \(data\.val_split\); available: train, test"):
        _setup(task_for(files, val_split="validation"))


def test_too_small_for_holdouts(tmp_path):
    frame(TRAIN[:2]).to_csv(tmp_path / "two.csv", index=False)
    with pytest.raises(DataError, match=r"two\.csv: nothing left for the val split"):
        _setup(pairs_task(**{"data_files": str(tmp_path / "two.csv"), "test_split": None,
                           "val_fraction": 0.1, "test_fraction": 0.1}))


def test_offline_hub_name_is_a_clear_error():
    task = pairs_task(**{"dataset": "Helsinki-NLP/opus_books", "source_column": "translation.de"})
    with pytest.raises(DataError, match=r"hub dataset 'Helsinki-NLP/opus_books' could not be loaded.*Offline"):
        _setup(task)


def test_config_errors(files):
    with pytest.raises(ConfigError, match=r"data\.data_files"):
        api.task("pairs")  # neither a hub name nor files
    with pytest.raises(ConfigError, match=r"data\.target_vocab_size"):
        task_for(files, target_vocab_size=3)
    with pytest.raises(ConfigError, match=r"data\.max_source_length"):
        task_for(files, max_source_length=0)
    assert all(np.isfinite(v) for v in task_for(files).spec.chance.values())
