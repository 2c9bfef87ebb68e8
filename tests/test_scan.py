"""SCAN: the generated command set, the interpretation rules on hand-checked commands, the paper's
splits, the sequence-to-sequence array format and the memoryless baselines."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from stm_lab import api
from stm_lab.errors import ConfigError
from stm_lab.tasks import TASKS
from stm_lab.tasks.scan import (
    SCAN_SPLITS,
    ScanTask,
    interpret,
    scan_commands,
    scan_split_indices,
)
from stm_lab.tasks.seq2seq import IGNORE, TGT_BOS, TGT_EOS, encode_pairs

L, R = "I_TURN_LEFT", "I_TURN_RIGHT"
WALK, LOOK, RUN, JUMP = "I_WALK", "I_LOOK", "I_RUN", "I_JUMP"

# Command -> actions, worked by hand from the rules (the multi-part ones are the examples of
# tasks-modern.md section 1, each checked there against the official tasks.txt).
HAND_CHECKED = {
    "walk": [WALK],
    "turn left": [L],
    "turn right": [R],
    "jump left": [L, JUMP],
    "look right": [R, LOOK],
    "run twice": [RUN, RUN],
    "look thrice": [LOOK] * 3,
    "turn left twice": [L, L],
    "walk around left": [L, WALK] * 4,
    "run around right": [R, RUN] * 4,
    "look opposite right": [R, R, LOOK],
    "jump opposite left": [L, L, JUMP],
    "turn around right": [R] * 4,
    "turn around left thrice": [L] * 12,
    "turn opposite left": [L, L],
    "turn opposite right twice": [R, R, R, R],
    "walk and run": [WALK, RUN],
    "walk after run": [RUN, WALK],
    "jump around left twice": [L, JUMP] * 8,
    "walk opposite right thrice after run left": [L, RUN] + [R, R, WALK] * 3,
    "run around left after turn right thrice": [R] * 3 + [L, RUN] * 4,
    "jump opposite left after walk around left": [L, WALK] * 4 + [L, L, JUMP],
    "look twice and jump": [LOOK, LOOK, JUMP],
    "walk and run twice": [WALK, RUN, RUN],
    "turn left after turn right": [R, L],
}


@pytest.fixture(scope="module")
def table() -> dict[str, tuple[str, ...]]:
    commands, actions = scan_commands()
    return dict(zip(commands, actions, strict=True))


def test_the_whole_set(table):
    commands, actions = scan_commands()
    assert len(commands) == len(table) == 20_910  # 102 + 2 * 102^2, all distinct
    words = Counter(len(c.split()) for c in commands)
    assert min(words) == 1 and max(words) == 9
    lengths = Counter(map(len, actions))
    assert min(lengths) == 1 and max(lengths) == 48 and 23 not in lengths
    vocab = {w for c in commands for w in c.split()}
    assert len(vocab) == 13 and {a for seq in actions for a in seq} == {WALK, LOOK, RUN, JUMP, L, R}
    assert not any(c == "turn" or c.startswith("turn twice") or " turn and" in c for c in commands)


@pytest.mark.parametrize("command", sorted(HAND_CHECKED))
def test_hand_checked_commands(table, command):
    assert list(table[command]) == HAND_CHECKED[command]  # the generated set
    assert interpret(command) == HAND_CHECKED[command]  # the rule-by-rule parser


def test_parser_and_enumeration_agree_on_every_command():
    commands, actions = scan_commands()
    assert all(interpret(c) == list(a) for c, a in zip(commands, actions, strict=True))


@pytest.mark.parametrize("bad", ["turn", "turn twice", "walk left around", "jump and", "walk twice thrice",
                                 "dance", "walk around"])
def test_not_a_command(bad):
    with pytest.raises(ValueError, match="not a SCAN command"):
        interpret(bad)


def test_arrays_of_the_whole_set_match_the_commands():
    """The vectorised encoding (phrases joined row-wise) against a plain one, command by command."""
    from stm_lab.tasks import scan

    commands, actions = scan_commands()
    src = {w: i for i, w in enumerate(scan.SOURCE_WORDS)}
    tgt = {w: i for i, w in enumerate(scan.TARGET_WORDS)}
    expected = encode_pairs([[src[w] for w in c.split()] for c in commands],
                            [[tgt[a] for a in seq] for seq in actions], 9, 49)
    arrays = scan._encoded()
    assert arrays.keys() == expected.keys()
    for key, value in expected.items():
        assert arrays[key].dtype == value.dtype and (arrays[key] == value).all(), key


def test_generation_is_fast():
    scan_commands.cache_clear()
    from stm_lab.tasks import scan

    scan._encoded.cache_clear()
    start = time.perf_counter()
    scan._encoded()  # all commands generated and encoded as arrays
    assert time.perf_counter() - start < 1.0


# -- the paper's splits --------------------------------------------------------------------------------

SIZES = {"simple": (16_728, 4_182), "length": (16_990, 3_920), "add_jump": (14_670, 7_706),
         "add_turn_left": (21_890, 1_208)}


@pytest.mark.parametrize("split", SCAN_SPLITS)
def test_split_sizes_and_disjoint(split):
    commands, _ = scan_commands()
    idx = scan_split_indices(split)
    assert (len(idx["train"]), len(idx["test"])) == SIZES[split]
    train, test = {commands[i] for i in idx["train"]}, {commands[i] for i in idx["test"]}
    assert not train & test and len(train | test) == 20_910  # disjoint, and together every command
    assert len(test) == len(idx["test"])  # no repeats in test


def test_length_split_follows_its_definition():
    _, actions = scan_commands()
    idx = scan_split_indices("length")
    assert max(len(actions[i]) for i in idx["train"]) == 22
    assert min(len(actions[i]) for i in idx["test"]) == 24


@pytest.mark.parametrize("split,primitive,repeats", [("add_jump", "jump", 1_467),
                                                     ("add_turn_left", "turn left", 2_189)])
def test_add_primitive_splits_follow_their_definition(split, primitive, repeats):
    commands, _ = scan_commands()
    idx = scan_split_indices(split)
    train = Counter(commands[i] for i in idx["train"])
    assert train[primitive] == repeats  # the primitive is 1 row in 10 of training
    composed_train = [c for c in train if c != primitive]
    assert len(composed_train) == sum(train.values()) - repeats == 9 * repeats
    assert not any(primitive in c for c in composed_train)  # no composed command with it in training
    test = [commands[i] for i in idx["test"]]
    assert all(primitive in c and c != primitive for c in test)  # every composed one is in test
    if split == "add_turn_left":  # "turn around left" and "turn opposite left" are not the primitive
        assert "turn around left" in train and "turn opposite left twice" in train


def test_simple_split_is_seeded():
    a, b, c = (scan_split_indices("simple", s)["test"] for s in (0, 0, 1))
    assert (a == b).all() and not (a == c).all()


# -- the task: validation hold-out, arrays, vocabularies -----------------------------------------------


def _rows(task: ScanTask, split: str) -> list[str]:
    d = task.make_split(split, 10**6, seed=0)
    return [" ".join(task.decode_source(row)) for row in d["x"]]


@pytest.mark.parametrize("split", SCAN_SPLITS)
def test_validation_is_carved_from_train(split):
    task = api.task("scan", split=split, val_fraction=0.1)
    rows = {s: _rows(task, s) for s in ("train", "val", "test")}
    commands, _ = scan_commands()
    official = scan_split_indices(split)
    official_train = {commands[i] for i in official["train"]}
    assert set(rows["val"]) <= official_train and not set(rows["val"]) & set(rows["train"])
    assert set(rows["val"]) | set(rows["train"]) == official_train
    assert Counter(rows["test"]) == Counter(commands[i] for i in official["test"])
    assert len(rows["val"]) == round(0.1 * len(official_train))
    if split.startswith("add_"):  # the primitive stays in training, still 1 row in 10
        primitive = "jump" if split == "add_jump" else "turn left"
        assert primitive not in rows["val"]
        assert rows["train"].count(primitive) == round((len(rows["train"]) - rows["train"].count(primitive)) / 9)


def test_data_are_fixed_by_split_seed_not_by_run_seed():
    task = api.task("scan", split="simple")
    a, b = task.make_split("train", 500, seed=0), task.make_split("train", 500, seed=7)
    assert all((a[k] == b[k]).all() for k in a)
    other = api.task("scan", split="simple", split_seed=1).make_split("train", 500, seed=0)
    assert not (other["x"] == a["x"]).all()


def test_array_format_and_decoding(table):
    task = api.task("scan", split="length")
    d = task.make_split("test", 10**6, seed=0)
    x, length, y, mask = d["x"], d["length"], d["y"], d["mask"]
    spec = task.spec
    assert x.dtype == y.dtype == length.dtype == np.int64 and mask.dtype == bool
    assert x.shape == (3_920, spec.seq_len) == (3_920, 9) and y.shape == mask.shape == (3_920, spec.positions)
    assert spec.positions == 49 and spec.input_size == 14 and spec.output_size == 8
    assert task.source_vocabulary[task.SRC_PAD] == "<pad>"
    assert task.target_vocabulary[task.TGT_EOS] == "<eos>" and task.target_vocabulary[task.TGT_BOS] == "<bos>"
    n_out = mask.sum(1)
    rows = np.arange(len(x))
    assert (y[rows, n_out - 1] == TGT_EOS).all()  # end of sequence, scored
    assert ((y == IGNORE) == ~mask).all() and not (y[mask] == TGT_BOS).any()
    assert ((y[mask] != TGT_EOS).sum() == (n_out - 1).sum())  # one EOS per row, at the end
    assert ((x != 0).sum(1) == length).all() and (x[np.arange(9)[None] >= length[:, None]] == 0).all()
    for i in (0, 17, len(x) - 1):
        command = " ".join(task.decode_source(x[i]))
        assert task.decode_target(y[i]) == list(table[command])
        assert len(command.split()) == length[i] and n_out[i] == len(table[command]) + 1


def test_config_errors():
    with pytest.raises(ConfigError, match=r"data\.split.*allowed: simple, length, add_jump, add_turn_left"):
        api.task("scan", split="addprim_jump")
    with pytest.raises(ConfigError, match=r"data\.val_fraction"):
        api.task("scan", val_fraction=0)
    assert "scan" in TASKS.names()


# -- memoryless baselines on the actual splits, scored by the generated-sequence metrics -------------


def _scores(split: str) -> dict[str, dict[str, float]]:
    from stm_lab.baselines import baseline_scores
    from stm_lab.data import MemoryDataModule

    task = api.task("scan", split=split)
    train, test = task.make_split("train", 10**6, 0), task.make_split("test", 10**6, 0)
    sequences = task.predicted_sequences(train, test)
    assert set(sequences) == {"most_frequent_output", "most_frequent_token", "most_frequent_token_per_position"}
    for name, p in sequences.items():
        assert p.shape == test["y"].shape, name
    for name in ("most_frequent_token", "most_frequent_token_per_position"):  # aligned with y[mask]
        assert ((sequences[name] != IGNORE) == test["mask"]).all()
    dm = MemoryDataModule(task, 10**6, 10**6, 10**6, 256, on_device=False, regime="fixed", seed=0, cache_dir=None)
    return {name: b["metrics"] for name, b in baseline_scores(dm).items()}


def test_simple_split_most_frequent_output_is_tiny():
    scores = _scores("simple")
    assert 0 < scores["most_frequent_output"]["exact_match"] <= 3 / 4_182  # a row or two of 4,182
    # A turn is ~28% of the action tokens (tasks-modern.md section 1); with the end of sequence
    # scored as a token too, a little less.
    assert 0.2 < scores["most_frequent_token"]["token_acc"] < 0.3
    assert 0.2 < scores["most_frequent_token_per_position"]["token_acc"] < 0.35
    assert scores["most_frequent_token"]["length_acc"] == 0.0  # it never ends
    spec = api.task("scan", split="simple").spec
    assert spec.headline == "exact_match" and spec.default_head == "seq2seq"
    assert spec.chance["exact_match"] < scores["most_frequent_output"]["exact_match"]


@pytest.mark.parametrize("split", ["length", "add_jump"])
def test_generalisation_splits_have_no_memoryless_exact_match(split):
    assert all(s["exact_match"] == 0.0 for s in _scores(split).values())


def _evaluate(predicted: np.ndarray, test: dict) -> dict[str, float]:
    import torch

    from stm_lab.metrics import Scored, evaluate
    from stm_lab.tasks.seq2seq import as_baseline

    b = as_baseline(predicted, test, 8, "")
    mask = torch.from_numpy(test["mask"])
    scalars, _ = evaluate(api.task("scan").spec, "test",
                          Scored(torch.from_numpy(b.preds), torch.from_numpy(test["y"])[mask], mask))
    return {k.split("/")[1]: v for k, v in scalars.items()}


def test_baselines_by_hand():
    # Training targets (token ids): [2 3], [2 3], [4]; the most frequent is [2 3].
    y = np.array([[2, 3, 0], [2, 3, 0], [4, 0, IGNORE]])
    train = {"y": y, "mask": y != IGNORE}
    test = {"y": np.array([[2, 3, 0, IGNORE], [4, 4, 4, 0]])}
    test["mask"] = test["y"] != IGNORE
    preds = api.task("scan").predicted_sequences(train, test)
    assert preds["most_frequent_output"].tolist() == [[2, 3, 0, IGNORE]] * 2
    scores = _evaluate(preds["most_frequent_output"], test)
    assert scores["exact_match"] == 0.5 and scores["length_acc"] == 0.5
    assert scores["token_acc"] == pytest.approx(3 / 7)  # row 2: nothing after the end of sequence
    # Token counts 2:2, 3:2, 4:1, EOS:3 -> EOS is the most frequent token, predicted everywhere.
    assert preds["most_frequent_token"].tolist() == [[0, 0, 0, IGNORE], [0, 0, 0, 0]]
    # Per position: 2, then 3, then EOS; position 3, past every training row, falls back to EOS.
    assert preds["most_frequent_token_per_position"].tolist() == [[2, 3, 0, IGNORE], [2, 3, 0, 0]]
    assert _evaluate(preds["most_frequent_token_per_position"], test)["token_acc"] == pytest.approx(3 / 7)


def test_predict_decodes_a_command_with_a_trained_run(make_cfg):
    """stm_lab.predict on a (barely) trained SCAN run: a command in, a sequence of SCAN actions out;
    a word outside the grammar is a clear error."""
    import io
    import json

    from stm_lab import predict as predict_cli
    from stm_lab.run import train

    cfg = make_cfg("+experiment=scan", "data.n_train=64", "data.n_val=32", "data.n_test=32", "cell.hidden_size=16",
                   "cell.num_layers=1", "embedding_dim=16", "trainer.max_epochs=1", tiny=False)
    summary = train(cfg)
    assert summary["status"] == "completed"
    out = io.StringIO()
    assert predict_cli.main([f"run={summary['output_dir']}", "--input", "jump twice"], stdout=out) == 0
    answer = json.loads(out.getvalue())
    assert answer["input"] == "jump twice" and isinstance(answer["output"], str)
    actions = set(api.task("scan").target_vocabulary) - {"<eos>", "<bos>"}
    assert set(answer["output"].split()) <= actions
    assert predict_cli.main([f"run={summary['output_dir']}", "--input", "fly twice"]) == 2
