"""Story question answering in a generated bAbI world (Weston et al. 2015, *Towards AI-complete
question answering*), tasks 1 and 2, with the retention interval as a parameter.

The world is that of the authors' generator (github.com/facebookarchive/bAbI-tasks,
``world_basic.txt``): actors John, Mary, Sandra, Daniel; six places (bedroom, kitchen, garden,
hallway, bathroom, office); three objects that can be carried (apple, football, milk). Statements
use the generator's templates: "A went to / journeyed to / travelled to / moved to the P", "A
grabbed / took / got the O", "A dropped / put down / let go of the O". Events are drawn as that
generator draws them: a move sends an actor to another place; in task 2 each statement is a move
(1/3) or a get/drop (2/3), uniform over the ones that are possible (get: actor and free object in
the same place; drop: the actor holds it).

One example is one story and one question:

- ``qa: 1`` (single supporting fact, "Where is A?"): ``context`` random moves, then the
  supporting fact "A <moved> to the P", then exactly ``distractors`` moves of *other* actors, then
  the question. Answer: P.
- ``qa: 2`` (two supporting facts, "Where is the O?"): ``context`` random events, then two
  supporting facts with up to ``gap_max`` unrelated events between them, in one of three patterns
  (chosen uniformly among those the world allows): A gets O, then A moves to P; A moves to P (where
  O lies), then A gets O; A (holding O) moves to P, then A drops O. Then exactly ``distractors``
  events that neither involve O nor move its holder, then the question. Answer: P.

``context`` is drawn uniformly from 0..``context_max`` per story, so the supporting fact's position
from the start varies; its distance from the question is exactly ``distractors`` statements (or
uniform in ``distractors``..``distractors_max``). With a fixed count, "the place named
``distractors`` + 1 statements back" answers task 1 without binding actor to place; a range
removes that shortcut. Distractors never change the answer (tests/test_babi.py re-simulates every
story from its text, with and without them).

Input: the story's statements and then the question, as one stream of word tokens (punctuation
kept; ``separator: true`` adds ``<sep>`` after each statement), right-padded with ``<pad>`` (0).
The answer is one of the 6 places, scored at the question's last token ("?"); ``length`` gives each
stream's length and ``support_end`` the position of the last supporting fact's "." (the retention
interval in steps is ``length - 1 - support_end``).

Differences from the released data: the world starts from a random placement of actors and
objects (the generator starts from fixed ones), so that answers are spread evenly over the places;
each example is an independent story with one question (the released files put 5 questions in a
story, and "1k" counts questions: task 1 is 200 stories x 5 questions); the retention interval is
set, not left to chance. Numbers on this data are comparable with each other, not with the v1.2
files.

Regime: Weston's "1k" -- 1,000 training questions (``conf/data/babi.yaml``: n_train=1000, 1,000
test questions as in v1.2, 100 validation questions drawn separately). Chance: 1/6. Baselines
(:meth:`BabiTask.baselines`): the majority answer of the training split, and the place named last in
the story before the question ("last-mentioned location"; in task 1 that is the place of the last
statement; in task 2 the last statement may name no place, and the last place named is used). The
latter keeps one word and binds nothing: a weak-memory floor, marked as not memoryless.

Published reference, 1k training questions, answers only (weak supervision): an LSTM reading the
story and question as one stream scores about 50% on task 1 and 20% on task 2 (Weston et al. 2015,
Table 3) [s: checked only against secondary copies -- the paper's table could not be read here;
the figures are the "FB LSTM Baseline" column quoted in the headers of the keras ``babi_rnn.py``
and the neon ``babi`` examples, which agree]. Where the lag is left to chance, as in the original
task 1 generator, the last-mentioned-location baseline alone scores about 48% (a simulation of
that generator, 100,000 questions), close to that LSTM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

from stm_lab.tasks.registry import TASKS
from stm_lab.tasks.spec import Arrays, Baseline, Task, TaskSpec, task_field

ACTORS = ("John", "Mary", "Sandra", "Daniel")
LOCATIONS = ("bedroom", "kitchen", "garden", "hallway", "bathroom", "office")
OBJECTS = ("apple", "football", "milk")
VERBS = {
    "move": ("went to", "journeyed to", "travelled to", "moved to"),
    "get": ("grabbed", "took", "got"),
    "drop": ("dropped", "put down", "let go of"),
}
PAD, SEP = "<pad>", "<sep>"
FULL_STOP, QUESTION_MARK = ".", "?"
MOVE_SHARE = 1 / 3  # task 2: a statement is a move with this probability, else a get or a drop


def _vocabulary() -> tuple[str, ...]:
    words = {FULL_STOP, QUESTION_MARK, "Where", "is", "the", *ACTORS, *LOCATIONS, *OBJECTS}
    words |= {w for verbs in VERBS.values() for v in verbs for w in v.split()}
    return (PAD, SEP, *sorted(words))


VOCABULARY = _vocabulary()
WORD_ID = {w: i for i, w in enumerate(VOCABULARY)}


# -- the world and its stories ------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One statement: ``kind`` move (``arg`` a place) or get / drop (``arg`` an object)."""

    kind: str
    actor: int
    arg: int
    verb: int = 0  # which template of the kind

    def words(self) -> list[str]:
        thing = LOCATIONS[self.arg] if self.kind == "move" else OBJECTS[self.arg]
        return [ACTORS[self.actor], *VERBS[self.kind][self.verb].split(), "the", thing, FULL_STOP]


@dataclass(frozen=True)
class Story:
    statements: tuple[Event, ...]
    question: int  # the actor (task 1) or the object (task 2) asked about
    answer: int  # a place
    support: tuple[int, ...]  # indices of the supporting statements, the last one last


class World:
    """Where everyone and everything is. Objects are held (``holder``) or lie somewhere (``place``)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.at = rng.integers(len(LOCATIONS), size=len(ACTORS)).tolist()
        self.place = rng.integers(len(LOCATIONS), size=len(OBJECTS)).tolist()
        self.holder = [-1] * len(OBJECTS)

    def where_is_object(self, obj: int) -> int:
        return self.at[self.holder[obj]] if self.holder[obj] >= 0 else self.place[obj]

    def handling(self) -> list[tuple[str, int, int]]:
        """Every get and drop possible now, as (kind, actor, object)."""
        return [("get", a, o) if self.holder[o] < 0 else ("drop", a, o)
                for o in range(len(OBJECTS)) for a in range(len(ACTORS))
                if (self.holder[o] < 0 and self.place[o] == self.at[a]) or self.holder[o] == a]

    def apply(self, e: Event) -> None:
        if e.kind == "move":
            assert e.arg != self.at[e.actor]
            self.at[e.actor] = e.arg
        elif e.kind == "get":
            assert self.holder[e.arg] < 0 and self.place[e.arg] == self.at[e.actor]
            self.holder[e.arg] = e.actor
        else:
            assert self.holder[e.arg] == e.actor
            self.holder[e.arg], self.place[e.arg] = -1, self.at[e.actor]


def _pick(n: int, rng: np.random.Generator) -> int:
    return int(rng.integers(n))


def _statement(kind: str, actor: int, arg: int, rng: np.random.Generator) -> Event:
    return Event(kind, actor, arg, _pick(len(VERBS[kind]), rng))


def move(world: World, actor: int, rng: np.random.Generator) -> Event:
    """``actor`` goes to one of the other places, at random."""
    place = _pick(len(LOCATIONS) - 1, rng)
    return _statement("move", actor, place + (place >= world.at[actor]), rng)


def random_event(world: World, rng: np.random.Generator, qa: int,
                 still: int | None = None, untouched: int | None = None) -> Event:
    """One statement drawn as the authors' generator draws it, applied to the world: a move,
    uniform over (actor, other place); in task 2, with probability 2/3 instead a get or drop,
    uniform over the possible ones. ``still``: an actor who must not move; ``untouched``: an object
    nobody may get or drop."""
    handling = [] if qa == 1 else [h for h in world.handling() if h[2] != untouched]
    if handling and rng.random() >= MOVE_SHARE:
        event = _statement(*handling[_pick(len(handling), rng)], rng)
    else:  # every actor has 5 places to go, so uniform over actors is uniform over moves
        movers = [a for a in range(len(ACTORS)) if a != still]
        event = move(world, movers[_pick(len(movers), rng)], rng)
    world.apply(event)
    return event


def story_qa1(rng: np.random.Generator, context: int, distractors: int) -> Story:
    world, statements = World(rng), []
    for _ in range(context):
        statements.append(random_event(world, rng, 1))
    actor = _pick(len(ACTORS), rng)
    fact = move(world, actor, rng)
    world.apply(fact)
    statements.append(fact)
    support = (len(statements) - 1,)
    for _ in range(distractors):  # moves of the other actors: the asked one stays where it went
        statements.append(random_event(world, rng, 1, still=actor))
    return Story(tuple(statements), actor, world.at[actor], support)


def story_qa2(rng: np.random.Generator, context: int, gap: int, distractors: int) -> Story:
    world, statements = World(rng), []
    for _ in range(context):
        statements.append(random_event(world, rng, 2))
    actors, objects = range(len(ACTORS)), range(len(OBJECTS))
    at, place, holder = world.at, world.place, world.holder
    patterns = {
        "get_move": [(a, o) for a in actors for o in objects if holder[o] < 0 and place[o] == at[a]],
        "move_get": [(a, o) for a in actors for o in objects if holder[o] < 0 and place[o] != at[a]],
        "move_drop": [(a, o) for a in actors for o in objects if holder[o] == a],
    }
    # Some pattern always fits: a held object can be dropped; a free one can be got by an actor
    # in its place or walked to by one elsewhere.
    feasible = [name for name, pairs in patterns.items() if pairs]
    pattern = feasible[_pick(len(feasible), rng)]
    actor, obj = patterns[pattern][_pick(len(patterns[pattern]), rng)]
    first, second = {
        "get_move": (lambda: _statement("get", actor, obj, rng), lambda: move(world, actor, rng)),
        "move_get": (lambda: _statement("move", actor, place[obj], rng), lambda: _statement("get", actor, obj, rng)),
        "move_drop": (lambda: move(world, actor, rng), lambda: _statement("drop", actor, obj, rng)),
    }[pattern]
    support = []
    for make_fact, count in ((first, _pick(gap + 1, rng)), (second, distractors)):
        fact = make_fact()
        world.apply(fact)
        statements.append(fact)
        support.append(len(statements) - 1)
        # Nobody touches the object. Between the facts the actor stays put; after them, whoever
        # holds the object does (a dropped object lies still, and its dropper may go anywhere).
        still = actor if len(support) == 1 else (holder[obj] if holder[obj] >= 0 else None)
        for _ in range(count):
            statements.append(random_event(world, rng, 2, still=still, untouched=obj))
    return Story(tuple(statements), obj, world.where_is_object(obj), tuple(support))


def question_words(story: Story, qa: int) -> list[str]:
    if qa == 1:
        return ["Where", "is", ACTORS[story.question], QUESTION_MARK]
    return ["Where", "is", "the", OBJECTS[story.question], QUESTION_MARK]


def story_words(story: Story, qa: int, separator: bool) -> tuple[list[str], int]:
    """The token stream of a story and its question, and the index of the last supporting fact's '.'."""
    words, support_end = [], -1
    for i, statement in enumerate(story.statements):
        words += statement.words()
        if i == story.support[-1]:
            support_end = len(words) - 1
        if separator:
            words.append(SEP)
    return words + question_words(story, qa), support_end


# -- the task -------------------------------------------------------------------------------------------


@TASKS.register("babi")
@dataclass(frozen=True)
class BabiTask(Task):
    qa: Literal[1, 2] = task_field("1: where is an actor (one supporting fact) | 2: where is an object (two)")
    distractors: int = task_field("statements between the (last) supporting fact and the question")
    distractors_max: int | None = task_field("null: exactly `distractors`; else uniform in distractors..this")
    context_max: int = task_field("statements before the supporting fact(s): uniform in 0..this per story")
    gap_max: int = task_field("qa 2: unrelated statements between the two supporting facts, uniform in 0..this")
    separator: bool = task_field("add a <sep> token after every statement")
    data_seed: int | None = task_field("null: the run seed draws the stories; an integer fixes them across runs")

    def __post_init__(self) -> None:
        self.require(self.qa in (1, 2), "qa", [1, 2])
        self.require(isinstance(self.distractors, int) and self.distractors >= 0, "distractors", "an integer >= 0")
        self.require(self.distractors_max is None or self.distractors_max >= self.distractors, "distractors_max",
                     f"null or an integer >= data.distractors ({self.distractors})")
        self.require(self.context_max >= 0, "context_max", "an integer >= 0")
        self.require(self.gap_max >= 0, "gap_max", "an integer >= 0")

    @property
    def vocabulary(self) -> list[str]:
        """Word of each token id (0 is padding)."""
        return list(VOCABULARY)

    @property
    def answers(self) -> list[str]:
        """Place of each answer class."""
        return list(LOCATIONS)

    @property
    def seq_len(self) -> int:
        """The longest possible stream: every statement at its longest template, plus the question."""
        longest = max(1 + len(v.split()) + 3 for kind in (("move",) if self.qa == 1 else VERBS)
                      for v in VERBS[kind])
        facts = 1 if self.qa == 1 else 2 + self.gap_max
        statements = self.context_max + facts + (self.distractors_max or self.distractors)
        return statements * (longest + self.separator) + (4 if self.qa == 1 else 5)

    def stories(self, n: int, rng: np.random.Generator) -> list[Story]:
        """``n`` independent stories, each ending in its question."""
        out = []
        for _ in range(n):
            context = int(rng.integers(self.context_max + 1))
            hi = self.distractors if self.distractors_max is None else self.distractors_max
            distractors = int(rng.integers(self.distractors, hi + 1))
            if self.qa == 1:
                out.append(story_qa1(rng, context, distractors))
            else:
                out.append(story_qa2(rng, context, self.gap_max, distractors))
        return out

    def encode_stories(self, stories: list[Story]) -> dict[str, np.ndarray]:
        n, T = len(stories), self.seq_len
        x = np.zeros((n, T), dtype=np.int64)
        y = np.full((n, T), -100, dtype=np.int64)
        mask = np.zeros((n, T), dtype=bool)
        length = np.zeros(n, dtype=np.int64)
        support_end = np.zeros(n, dtype=np.int64)
        for i, story in enumerate(stories):
            words, support_end[i] = story_words(story, self.qa, self.separator)
            x[i, :len(words)] = [WORD_ID[w] for w in words]
            length[i] = len(words)
            y[i, len(words) - 1] = story.answer
            mask[i, len(words) - 1] = True
        return {"x": x, "y": y, "mask": mask, "length": length, "support_end": support_end}

    def generate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self.encode_stories(self.stories(n, rng))

    def draw_seed(self, run_seed: int) -> int:
        return run_seed if self.data_seed is None else self.data_seed

    def words(self, ids: np.ndarray) -> list[str]:
        """Words of one row of ``x`` (padding dropped)."""
        return [VOCABULARY[i] for i in np.asarray(ids).tolist() if i != 0]

    def encode(self, item: Any) -> dict[str, np.ndarray]:
        """A story and its question as text ("John went to the kitchen . Where is John ?"), for
        ``stm_lab.predict``: every word must be one of the task's."""
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str) or not text.strip():
            raise ValueError("an input is a non-empty story and question (or {\"text\": \"...\"})")
        words = text.replace(".", " . ").replace("?", " ? ").split()
        unknown = [w for w in words if w not in WORD_ID]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a word of this task's world")
        mask = np.zeros((1, len(words)), dtype=bool)
        mask[0, -1] = True
        return {"x": np.asarray([[WORD_ID[w] for w in words]], dtype=np.int64), "mask": mask,
                "length": np.asarray([len(words)])}

    def decode(self, classes: np.ndarray) -> list[str]:
        """Answer classes as place names."""
        return [self.answers[int(c)] for c in classes]

    def delay_mask(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """The distractor statements' tokens (None when their number varies: it is not in ``x``)."""
        if self.distractors_max is not None:
            return None
        stops = (x == WORD_ID[FULL_STOP]).long()
        after = stops.flip(1).cumsum(1).flip(1)  # full stops at this step or later
        return (after >= 1) & (after <= self.distractors) & (x != 0)

    def baselines(self, train: Arrays, test: Arrays) -> dict[str, Baseline]:
        """The base class's ``majority`` and ``current_input`` (at the question's "?": no better than
        the majority), and ``last_mentioned_location``: the place named last before the question."""
        out = super().baselines(train, test)
        majority = int(np.bincount(train["y"][train["mask"]], minlength=len(LOCATIONS)).argmax())
        last = last_mentioned_location(test["x"], majority)
        out["last_mentioned_location"] = Baseline(
            np.eye(len(LOCATIONS), dtype=np.float32)[last],
            "the place named last in the story before the question (recency alone: it keeps one word "
            "and binds nothing, so it is a weak-memory floor)", memoryless=False)
        return out

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(
            input_kind="tokens",
            input_size=len(VOCABULARY),
            output_kind="classes",
            output_size=len(LOCATIONS),
            scored="one",
            seq_len=self.seq_len,
            chance={"acc": 1.0 / len(LOCATIONS), "recall": 1.0 / len(LOCATIONS)},
            chance_note=("uniform guess among 6 places (answers are spread evenly); the baselines add the "
                         "majority training answer and the place named last before the question (recency)"),
            default_head="sequence",
            paper="Weston et al. 2015, Towards AI-complete question answering (bAbI tasks 1-2)",
            tags=("qa", "story", "distractors", "generated"),
        )


_PLACE_CLASS = np.full(len(VOCABULARY), -1, dtype=np.int64)
_PLACE_CLASS[[WORD_ID[p] for p in LOCATIONS]] = np.arange(len(LOCATIONS))


def last_mentioned_location(x: np.ndarray, fallback: int) -> np.ndarray:
    """Per row, the class of the last place word in the stream (the question names none), or
    ``fallback`` where the story names no place."""
    cls = _PLACE_CLASS[x]
    named = cls >= 0
    last = np.where(named.any(1), x.shape[1] - 1 - named[:, ::-1].argmax(1), -1)
    return np.where(last >= 0, cls[np.arange(len(x)), np.maximum(last, 0)], fallback)
