"""The data cache is derived data: an entry that cannot be read, or holds the wrong number of rows,
is deleted and regenerated, with one line naming it."""

from __future__ import annotations

import datasets
import numpy as np

from stm_lab.api import task
from stm_lab.data.cache import ENTRY_META, materialise

datasets.disable_progress_bars()  # as the data module does: stderr holds only what is said


def entry_of(cache) -> object:
    entries = [p for p in cache.glob("*/*") if p.is_dir()]
    assert len(entries) == 1
    return entries[0]


def test_a_torn_cache_file_is_regenerated_with_one_line(tmp_path, capsys):
    copy = task("copy", delay=3)
    first = materialise(copy, "train", 64, 0, tmp_path)[:]
    entry = entry_of(tmp_path)
    arrow = next(entry.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])  # a copy cut short
    again = materialise(copy, "train", 64, 0, tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(entry) in err[0] and "regenerat" in err[0]
    assert all(np.array_equal(again[:][k], first[k]) for k in first)
    capsys.readouterr()
    materialise(copy, "train", 64, 0, tmp_path)
    assert capsys.readouterr().err == ""  # healed: read quietly from now on


def test_a_cache_entry_with_the_wrong_row_count_is_regenerated(tmp_path, capsys):
    copy = task("copy", delay=3)
    materialise(copy, "val", 32, 0, tmp_path)
    entry = entry_of(tmp_path)
    short = datasets.Dataset.from_dict(copy.make_split("val", 8, 0))  # another writer's smaller split
    short.save_to_disk(str(tmp_path / "other"))
    for f in entry.iterdir():
        if f.name != ENTRY_META:
            f.unlink()
    for f in (tmp_path / "other").iterdir():
        f.rename(entry / f.name)
    ds = materialise(copy, "val", 32, 0, tmp_path)
    assert len(ds) == 32
    assert "8 rows, expected 32" in capsys.readouterr().err


def test_an_entry_missing_its_files_is_regenerated(tmp_path, capsys):
    copy = task("copy", delay=3)
    materialise(copy, "test", 16, 0, tmp_path)
    entry = entry_of(tmp_path)
    (entry / "state.json").unlink()
    assert len(materialise(copy, "test", 16, 0, tmp_path)) == 16
    assert str(entry) in capsys.readouterr().err


def test_two_tasks_with_the_same_parameters_never_share_an_entry(tmp_path):
    """The cache key holds the task's registered name and class, not only its parameters."""
    from dataclasses import dataclass

    from stm_lab.data.cache import cache_key
    from stm_lab.tasks import TASKS, Task
    from stm_lab.tasks.spec import task_field

    @dataclass(frozen=True)
    class Ones(Task):
        length: int = task_field("sequence length")

        def generate(self, n, rng):
            x = np.ones((n, self.length), dtype=np.int64)
            return {"x": x, "y": x.copy(), "mask": np.ones_like(x, dtype=bool)}

    @dataclass(frozen=True)
    class Zeros(Ones):
        def generate(self, n, rng):
            x = np.zeros((n, self.length), dtype=np.int64)
            return {"x": x, "y": x.copy(), "mask": np.ones_like(x, dtype=bool)}

    TASKS.register("ones_for_cache")(Ones)
    TASKS.register("zeros_for_cache")(Zeros)
    try:
        ones, zeros = Ones(length=3), Zeros(length=3)
        assert ones.params() == zeros.params() and cache_key(ones, "train", 4, 0) != cache_key(zeros, "train", 4, 0)
        assert np.sum(materialise(ones, "train", 4, 0, tmp_path)[:]["x"]) == 12
        assert np.sum(materialise(zeros, "train", 4, 0, tmp_path)[:]["x"]) == 0
    finally:
        TASKS.unregister("ones_for_cache")
        TASKS.unregister("zeros_for_cache")
