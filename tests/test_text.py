"""Text classification on local files the tests write: loading, vocabulary, padding, and every
data error a user can make. No network: a hub name is only used to check the offline error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stm_lab import api
from stm_lab.build import build_datamodule, build_model
from stm_lab.data import MemoryDataModule
from stm_lab.errors import DataError
from stm_lab.run import train

ROWS = [("a good film", "pos"), ("a bad film", "neg"), ("great acting, good plot", "pos"),
        ("bad plot and bad acting", "neg"), ("good good good", "pos"), ("terrible and bad", "neg"),
        ("a fine good movie that was long and good in every way", "pos"), ("awful", "neg")] * 5
TEST_ROWS = [("good unseenword", "pos"), ("bad", "neg")] * 4


def write_csv(path: Path, rows, header=("text", "label")) -> Path:
    path.write_text(",".join(header) + "\n" + "\n".join(f'"{t}",{lab}' for t, lab in rows) + "\n")
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    return {"train": str(write_csv(tmp_path / "train.csv", ROWS)),
            "test": str(write_csv(tmp_path / "test.csv", TEST_ROWS))}


BASE = ["logger=none", "callbacks.progress_bar=null", "trainer.accelerator=cpu", "data.dataset=null",
        "data.text_column=text", "data.test_split=test", "data.val_fraction=0.25", "data.min_count=1"]


def files_override(files: dict[str, str]) -> str:
    return "data.data_files={" + ",".join(f"{k}:'{v}'" for k, v in files.items()) + "}"


def task_for(files, **params):
    return api.task("text", **{"dataset": None, "data_files": files, "text_column": "text", "test_split": "test",
                               "val_fraction": 0.25, "min_count": 1, "max_length": 256, **params})


def test_vocabulary_from_train_only_with_size_and_min_count(files):
    task = task_for(files)
    vocab = task.vocabulary
    assert vocab["<pad>"] == 0 and vocab["<unk>"] == 1
    assert "unseenword" not in vocab and "good" in vocab  # built from the training split
    assert task.class_names == ["neg", "pos"]  # class names, sorted
    small = task_for(files, vocab_size=4).vocabulary
    assert len(small) == 4 and set(small) == {"<pad>", "<unk>", "good", "bad"}  # the most frequent
    rare = task_for(files, min_count=20).vocabulary  # each kept token seen >= 20 times in train
    assert "good" in rare and "awful" not in rare
    test = task.make_split("test", 100, seed=0)
    assert test["x"][0, 1] == 1  # the unseen word is <unk>


def test_right_padding_and_scored_last_token(files):
    task = task_for(files, max_length=5)
    d = task.make_split("train", 100, seed=0)
    lengths = d["length"]
    assert d["x"].shape[1] == 5 == lengths.max()  # truncated to max_length
    for x, mask, n in zip(d["x"], d["mask"], lengths, strict=True):
        assert (x[n:] == 0).all() and (x[:n] != 0).all()
        assert mask.nonzero()[0].tolist() == [n - 1]
    # The hold-outs are carved off the training split: disjoint, and fixed by split_seed.
    assert len(task.make_split("val", 100, 0)["x"]) == 10 and len(d["x"]) == 30


@pytest.mark.parametrize("cell,pool", [("lstm", "last"), ("gru", "mean"), ("rnn", "last")])
def test_padding_never_changes_predictions(make_cfg, files, cell, pool):
    """Each text's prediction equals the prediction on the text alone, without padding."""
    cfg = make_cfg("data=text", *BASE, files_override(files), f"cell={cell}", "cell.hidden_size=16",
                   "head=sequence", f"head.pool={pool}", "embedding_dim=8", tiny=False)
    dm = build_datamodule(cfg)
    dm.setup()
    model = build_model(cfg, dm.spec).eval()
    batch = dm.tensors("train")
    assert (batch["length"] < batch["x"].shape[1]).any()  # some texts are padded
    with torch.no_grad():
        padded = model(batch).preds
        for i, n in enumerate(batch["length"].tolist()):
            alone = model({k: v[i:i + 1, :n] if v.dim() > 1 else v[i:i + 1] for k, v in batch.items()}).preds
            torch.testing.assert_close(alone[0], padded[i], rtol=1e-5, atol=1e-6)


def test_json_and_parquet_and_integer_labels(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"review": [t for t, _ in ROWS], "stars": [int(lab == "pos") for _, lab in ROWS]})
    jsonl, parquet = tmp_path / "train.jsonl", tmp_path / "test.parquet"
    frame.to_json(jsonl, orient="records", lines=True)
    frame.head(8).to_parquet(parquet)
    task = task_for({"train": str(jsonl), "test": str(parquet)}, text_column="review", label_column="stars")
    assert task.spec.output_size == 2 and task.class_names == ["0", "1"]
    assert (task.make_split("test", 100, 0)["y"].max(1) == frame.stars[:8].to_numpy()).all()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_text_experiment_trains_on_local_files(make_cfg, files, cell):
    cfg = make_cfg("+experiment=text", f"cell={cell}", "debug=fdr", *BASE, files_override(files),
                   tiny=False, subdir=cell)
    summary = train(cfg)
    assert summary["status"] == "completed" and summary["chance"]["acc"] == 0.5
    assert "test/acc" in summary["metrics"]


# -- data errors: each names the file (and the column) ---------------------------------------------


def _setup(task):
    MemoryDataModule(task, 100, 100, 100, 8, on_device=False, regime="fixed", seed=0, cache_dir=None).setup()


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        _setup(task_for({"train": str(tmp_path / "nope.csv"), "test": str(tmp_path / "nope.csv")}))


def test_unreadable_and_unknown_format(tmp_path, files):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"broken\.parquet: cannot be read as parquet"):
        _setup(task_for({**files, "test": str(bad)}))
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(DataError, match=r"data\.xlsx: unknown format '\.xlsx'; allowed: .csv"):
        _setup(task_for({**files, "train": str(odd)}))


@pytest.mark.parametrize("key,column", [("text_column", "sentence"), ("label_column", "sentiment")])
def test_missing_column(files, key, column):
    with pytest.raises(DataError, match=rf"train\.csv: no column '{column}' \(data\.{key}\); columns: text, label"):
        _setup(task_for(files, **{key: column}))


def test_empty_split(tmp_path, files):
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    with pytest.raises(DataError, match=r"empty\.csv.*(empty|cannot be read)"):
        _setup(task_for({**files, "test": str(empty)}))


@pytest.mark.parametrize("labels,message", [
    ([0.5, 1.5], r"holds 0\.5 \(float\); labels must be integers or class names"),
    ([1, None], r"holds None"),
])
def test_labels_neither_integers_nor_names(tmp_path, files, labels, message):
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join(json.dumps({"text": "good film", "label": v}) for v in labels * 5))
    with pytest.raises(DataError, match=rf"odd\.jsonl: column 'label' {message}"):
        _setup(task_for({**files, "train": str(path)}))


def test_test_labels_unknown_to_training(tmp_path, files):
    other = write_csv(tmp_path / "other.csv", [("good", "neutral"), ("bad", "neg")])
    with pytest.raises(DataError, match=r"other\.csv: labels \['neutral'\] never occur in the training split"):
        _setup(task_for({**files, "test": str(other)}))


def test_offline_hub_name_is_a_clear_error():
    task = api.task("text", dataset="stanfordnlp/sst2", text_column="sentence")
    with pytest.raises(DataError, match=r"hub dataset 'stanfordnlp/sst2' could not be loaded.*Offline"):
        _setup(task)


def test_predict_uses_the_stored_vocabulary_and_matches_test_time(make_cfg, files, tmp_path):
    """A text run applied to raw texts, with the training files gone: the same labels as the
    model's own test-time predictions; an unseen word is <unk>; an empty text is refused."""
    import io

    from stm_lab import predict as predict_cli

    cfg = make_cfg("data=text", *BASE, files_override(files), "cell.hidden_size=16", "embedding_dim=8",
                   "trainer.max_epochs=1", tiny=False)
    summary = train(cfg)
    run = api.load_run(cfg.paths.output_dir)
    dm = build_datamodule(cfg)
    dm.setup()
    with torch.no_grad():
        expected = run.model(dm.tensors("test")).preds.argmax(-1).tolist()
    names = run.task.class_names
    for path in files.values():
        Path(path).unlink()  # predict needs only the run folder
    texts = [t for t, _ in TEST_ROWS]
    out = io.StringIO()
    assert predict_cli.main([f"run={summary['output_dir']}"], stdin=io.StringIO("\n".join(texts) + "\n"),
                            stdout=out) == 0
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [a["prediction"] for a in answers] == [names[i] for i in expected]
    assert set(answers[0]["probabilities"]) == set(names)
    loaded = api.load_run(summary["output_dir"])
    assert loaded.task.encode("good unseenword")["x"][0].tolist() == [loaded.task.vocabulary["good"], 1]
    assert predict_cli.main([f"run={summary['output_dir']}", "--input", "   "]) == 2
