"""SCAN (Lake & Baroni 2018, *Generalization without systematicity*): translate a navigation
command into its action sequence. Generated here from the paper's grammar and interpretation
rules (supplement, Figs. 6-7): no download.

Grammar (13 words in, 6 actions out; ``turn`` only occurs with a direction)::

    C -> S and S | S after S | S        S -> V twice | V thrice | V
    V -> D opposite D' | D around D' | D | U      (modifier between D's two words: "jump around left")
    D -> U left | U right | turn left | turn right        U -> walk | look | run | jump

Interpretation: ``u left`` = LTURN u; ``u opposite left`` = LTURN LTURN u; ``u around left`` =
(LTURN u) x 4; with ``turn`` the action u is left out; ``x twice/thrice`` repeats x;
``x1 and x2`` = x1 x2; ``x1 after x2`` = x2 x1 (order reversed). twice/thrice bind tighter
than and/after. That gives |V| = 34, |S| = 102 and 102 + 2 * 102^2 = 20,910 commands, 1-9 words,
1-48 actions (no command has exactly 23).

Splits (``split``), as in the paper and the official release:

- ``simple``: a random 80/20 partition of the commands (16,728 / 4,182), drawn with ``split_seed``
  (the official files hold one particular draw; this is another draw with the same sizes).
- ``length``: train on every command whose action sequence has at most 22 actions (16,990),
  test on the rest (3,920, 24-48 actions).
- ``add_jump``: train on the 13,203 commands without "jump" plus the bare command "jump"
  repeated 1,467 times (13,203 / 9: the primitive is 10% of the 14,670 training rows, duplicates
  on purpose); test on every composed command with "jump" (7,706).
- ``add_turn_left``: the same with "turn left" (19,701 + 2,189 = 21,890 / 1,208).

All four were checked against the official release (github.com/brendenlake/SCAN): the generated
set equals ``tasks.txt`` line for line (as sets; the file is shuffled), and the length, add_jump
and add_turn_left train/test files hold exactly the commands these rules select, with the same
repeat counts; the simple split has the official sizes and no command in both parts.

Validation: the paper has none (a fixed 100,000 training presentations, then the test set). Here
``val_fraction`` of the distinct training commands (not the primitive's repeats) is held out with
``split_seed``; in the add_* splits the primitive is then repeated round(rest / 9) times so it stays
10% of training. Validation data therefore come from the training distribution: on the length and
add_* splits they say nothing about generalisation, as in the paper.

The run seed does not change the data: the command set and its partition are fixed by ``split``
and ``split_seed``, so runs with different seeds differ only in the network.

Reference (paper, mean of 5 runs, exact match): overall-best LSTM (2 x 200, no attention, dropout
0.5, 100k presentations of batch 1, Adam 1e-3, clip 5, teacher forcing on half the presentations):
simple 99.7%, length 13.8%, add_turn_left 90.0%, add_jump 0.08%. Memoryless floor: the most
frequent training output matches 2 of the 4,182 simple test commands here (0.02% of the release's
simple test set) and none of the other splits'. The spec: the seq2seq head and the generated-sequence
metrics, exact match first (:meth:`Seq2SeqTask.sequence_spec`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from stm_lab.errors import DataError
from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.seq2seq import IGNORE, SRC_PAD, TGT_EOS, Seq2SeqTask
from stm_lab.tasks.spec import TaskSpec, task_field

ScanSplit = Literal["simple", "length", "add_jump", "add_turn_left"]
SCAN_SPLITS: tuple[str, ...] = ("simple", "length", "add_jump", "add_turn_left")

PRIMITIVES = {"walk": "I_WALK", "look": "I_LOOK", "run": "I_RUN", "jump": "I_JUMP"}
TURNS = {"left": "I_TURN_LEFT", "right": "I_TURN_RIGHT"}
SOURCE_WORDS = ("<pad>", "walk", "look", "run", "jump", "turn", "left", "right", "opposite", "around",
                "twice", "thrice", "and", "after")
TARGET_WORDS = ("<eos>", "<bos>", "I_WALK", "I_LOOK", "I_RUN", "I_JUMP", "I_TURN_LEFT", "I_TURN_RIGHT")
REPEATS = {"twice": 2, "thrice": 3}
MAX_TRAIN_ACTIONS = 22  # the length split: train on outputs of at most this many actions
SIMPLE_TRAIN_SHARE = 0.8
# The add-primitive splits repeat the primitive so that it is 1 in 10 training rows.
PRIMITIVE_SHARE = 0.1
ADD_PRIMITIVE = {"add_jump": ("jump",), "add_turn_left": ("turn", "left")}


# -- the grammar, enumerated --------------------------------------------------------------------------


def _verb_phrases() -> list[tuple[str, tuple[str, ...]]]:
    """The 34 V phrases with their meanings."""
    out = [(u, (a,)) for u, a in PRIMITIVES.items()]
    for direction, turn in TURNS.items():
        for u, body in [("turn", ()), *((u, (a,)) for u, a in PRIMITIVES.items())]:
            out.append((f"{u} {direction}", (turn, *body)))
            out.append((f"{u} opposite {direction}", (turn, turn, *body)))
            out.append((f"{u} around {direction}", (turn, *body) * 4))
    return out


@lru_cache(maxsize=1)
def scan_commands() -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """All 20,910 commands and their action sequences, in grammar order (S, S and S, S after S)."""
    phrases = [(v, a) for v, a in _verb_phrases()]
    phrases += [(f"{v} {word}", a * k) for v, a in _verb_phrases() for word, k in REPEATS.items()]
    commands = [c for c, _ in phrases]
    actions = [a for _, a in phrases]
    for c1, a1 in phrases:
        for c2, a2 in phrases:
            commands.append(f"{c1} and {c2}")
            actions.append(a1 + a2)
    for c1, a1 in phrases:
        for c2, a2 in phrases:
            commands.append(f"{c1} after {c2}")
            actions.append(a2 + a1)  # "x1 after x2" does x2 first
    return tuple(commands), tuple(actions)


# -- the interpretation rules, applied to one command (a parser, independent of the enumeration) -------


def interpret(command: str) -> list[str]:
    """The action sequence of one command, by the paper's interpretation rules."""
    words = command.split()
    for conjunction in ("and", "after"):
        if conjunction in words:
            i = words.index(conjunction)
            first, second = _sentence(words[:i], command), _sentence(words[i + 1:], command)
            return first + second if conjunction == "and" else second + first
    return _sentence(words, command)


def _sentence(words: list[str], command: str) -> list[str]:
    if words and words[-1] in REPEATS:
        return _verb(words[:-1], command) * REPEATS[words[-1]]
    return _verb(words, command)


def _verb(words: list[str], command: str) -> list[str]:
    if len(words) == 1 and words[0] in PRIMITIVES:
        return [PRIMITIVES[words[0]]]
    if len(words) in (2, 3) and words[-1] in TURNS and (words[0] in PRIMITIVES or words[0] == "turn"):
        turn = TURNS[words[-1]]
        body = [] if words[0] == "turn" else [PRIMITIVES[words[0]]]
        if len(words) == 2:
            return [turn, *body]
        if words[1] == "opposite":
            return [turn, turn, *body]
        if words[1] == "around":
            return [turn, *body] * 4
    raise ValueError(f"not a SCAN command: {command!r}")


# -- the splits ----------------------------------------------------------------------------------------


def _contains(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    k = len(phrase)
    return any(words[i:i + k] == phrase for i in range(len(words) - k + 1))


@lru_cache(maxsize=8)
def scan_split_indices(split: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Indices into :func:`scan_commands` of the paper's train and test sets for ``split`` (train of
    the add_* splits repeats the primitive's index). ``seed`` draws the simple split."""
    commands, actions = scan_commands()
    n = len(commands)
    if split == "simple":
        order = np.random.default_rng(seed).permutation(n)
        n_train = int(round(SIMPLE_TRAIN_SHARE * n))
        return {"train": np.sort(order[:n_train]), "test": np.sort(order[n_train:])}
    if split == "length":
        lengths = np.fromiter(map(len, actions), dtype=np.int64, count=n)
        return {"train": np.flatnonzero(lengths <= MAX_TRAIN_ACTIONS),
                "test": np.flatnonzero(lengths > MAX_TRAIN_ACTIONS)}
    if split in ADD_PRIMITIVE:
        phrase = ADD_PRIMITIVE[split]
        primitive = commands.index(" ".join(phrase))
        has = np.fromiter((_contains(tuple(c.split()), phrase) for c in commands), dtype=bool, count=n)
        rest = np.flatnonzero(~has)
        test = np.flatnonzero(has)
        return {"train": with_primitive(rest, primitive), "test": test[test != primitive]}
    raise ValueError(f"unknown SCAN split {split!r}; allowed: {', '.join(SCAN_SPLITS)}")


def with_primitive(rest: np.ndarray, primitive: int) -> np.ndarray:
    """``rest`` plus the primitive repeated so that it is PRIMITIVE_SHARE of the rows."""
    repeats = int(round(len(rest) * PRIMITIVE_SHARE / (1 - PRIMITIVE_SHARE)))
    return np.concatenate([rest, np.full(repeats, primitive, dtype=rest.dtype)])


def _join(first: np.ndarray, n_first: np.ndarray, second: np.ndarray, n_second: np.ndarray, width: int,
          middle: int | None = None) -> np.ndarray:
    """Row-wise ``first[:n_first] (+ middle) + second[:n_second]``, filled with -1 to ``width``."""
    t = np.broadcast_to(np.arange(width)[None, :], (len(first), width))
    start = n_first[:, None] + (middle is not None)
    a = np.take_along_axis(first, np.minimum(t, first.shape[1] - 1), 1)
    b = np.take_along_axis(second, np.clip(t - start, 0, second.shape[1] - 1), 1)
    out = np.where(t < n_first[:, None], a, np.where((t >= start) & (t < start + n_second[:, None]), b, -1))
    return out if middle is None else np.where(t == n_first[:, None], middle, out)


@lru_cache(maxsize=1)
def _encoded() -> dict[str, np.ndarray]:
    """All commands as arrays in grammar order (the rows of :func:`scan_commands`), built without a
    loop over commands: the 102 S phrases are encoded once, and the 2 x 102^2 compound commands are
    row-wise joins of two of them ("after" puts the second phrase's actions first)."""
    src = {w: i for i, w in enumerate(SOURCE_WORDS)}
    tgt = {w: i for i, w in enumerate(TARGET_WORDS)}
    commands, actions = scan_commands()
    k = len(_verb_phrases()) * (1 + len(REPEATS))  # the S phrases come first
    words = [c.split() for c in commands[:k]]
    n_words = np.array([len(w) for w in words])
    n_actions = np.array([len(a) for a in actions[:k]])
    phrase_x = np.full((k, n_words.max()), -1)
    phrase_y = np.full((k, n_actions.max()), -1)
    for i in range(k):  # 102 phrases
        phrase_x[i, :n_words[i]] = [src[w] for w in words[i]]
        phrase_y[i, :n_actions[i]] = [tgt[a] for a in actions[i]]
    i, j = (a.ravel() for a in np.meshgrid(np.arange(k), np.arange(k), indexing="ij"))
    x_width, y_width = 2 * n_words.max() + 1, 2 * n_actions.max()
    pad = np.full((k, x_width - phrase_x.shape[1]), -1)
    x = np.concatenate([np.hstack([phrase_x, pad]),
                        _join(phrase_x[i], n_words[i], phrase_x[j], n_words[j], x_width, src["and"]),
                        _join(phrase_x[i], n_words[i], phrase_x[j], n_words[j], x_width, src["after"])])
    y = np.concatenate([np.hstack([phrase_y, np.full((k, y_width - phrase_y.shape[1]), -1)]),
                        _join(phrase_y[i], n_actions[i], phrase_y[j], n_actions[j], y_width),
                        _join(phrase_y[j], n_actions[j], phrase_y[i], n_actions[i], y_width)])
    length = (x >= 0).sum(1)
    n_out = (y >= 0).sum(1)
    x[x < 0] = SRC_PAD
    y = np.concatenate([y, np.full((len(y), 1), -1)], axis=1)  # room for the end of sequence
    y[np.arange(len(y)), n_out] = TGT_EOS
    mask = np.arange(y.shape[1])[None, :] <= n_out[:, None]
    y[~mask] = IGNORE
    return {"x": x.astype(np.int64), "length": length.astype(np.int64), "y": y.astype(np.int64), "mask": mask}


@TASKS.register("scan")
@dataclass(frozen=True)
class ScanTask(Seq2SeqTask):
    split: ScanSplit = task_field("simple | length | add_jump | add_turn_left (Lake & Baroni 2018)")
    val_fraction: float = task_field("share of the distinct training commands held out for validation")
    split_seed: int = task_field("seed of the simple split's 80/20 draw and of the validation hold-out")

    def __post_init__(self) -> None:
        self.require(self.split in SCAN_SPLITS, "split", SCAN_SPLITS)
        self.require(isinstance(self.val_fraction, int | float) and 0 < self.val_fraction < 0.5, "val_fraction",
                     "a number in (0, 0.5): validation is carved from the training commands")

    @property
    def source_vocabulary(self) -> list[str]:
        return list(SOURCE_WORDS)

    @property
    def target_vocabulary(self) -> list[str]:
        return list(TARGET_WORDS)

    def indices(self) -> dict[str, np.ndarray]:
        """Rows of :func:`scan_commands` in each split: train (shuffled), val and test."""
        return _split_rows(self.split, self.val_fraction, self.split_seed)

    def make_split(self, split: str, n: int, seed: int) -> dict[str, np.ndarray]:
        """The rows of ``split`` (at most ``n``; train is in a fixed shuffled order, so a smaller
        ``n`` is a random subset). ``seed`` (the run seed) does not change the data."""
        rows = self.indices()[split][:n]
        if len(rows) == 0:
            raise DataError(f"SCAN {self.split}: the {split} split is empty")
        arrays = _encoded()
        return {k: v[rows] for k, v in arrays.items()}

    @property
    def spec(self) -> TaskSpec:
        return self.sequence_spec(
            self.make_split("test", len(self.indices()["test"]), 0),
            paper="Lake & Baroni 2018, Generalization without systematicity (SCAN)",
            tags=("seq2seq", "compositional", "generated"),
        )


@lru_cache(maxsize=16)
def _split_rows(split: str, val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    official = scan_split_indices(split, seed)
    train = official["train"]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    if split in ADD_PRIMITIVE:
        primitive = scan_commands()[0].index(" ".join(ADD_PRIMITIVE[split]))
        distinct = train[train != primitive]
    else:
        primitive, distinct = None, train
    order = rng.permutation(distinct)
    n_val = int(round(val_fraction * len(distinct)))
    val, rest = np.sort(order[:n_val]), order[n_val:]
    if primitive is not None:
        rest = with_primitive(rest, primitive)
    return {"train": rng.permutation(rest), "val": val, "test": official["test"]}
