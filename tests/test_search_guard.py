"""An Optuna search never starts over silently: a sweep folder with trials but no readable study
is refused with one line naming the file and what to do; each start keeps a copy of the study."""

from __future__ import annotations

import sqlite3

import optuna
import pytest
from conftest import compose_config
from test_sweeps import run_toy

from hydra_plugins.stm_lab_optuna.sweeper import OptunaSweeper
from stm_lab.errors import RunFolderError

BAD_DBS = {
    "empty": (b"", "empty (0 bytes)"),
    "garbage": (b"this is not a database at all, only text" * 4, "not an SQLite database"),
}


def sweeper_for(sweep, *overrides: str) -> OptunaSweeper:
    cfg = compose_config(["hydra/sweeper=stm_lab_optuna", f"hydra.sweep.dir={sweep}", "optimized_metric=val/acc_best",
                          "hydra.sweeper.study_name=s", *overrides])
    sweeper = OptunaSweeper(**cfg.hydra.sweeper)
    sweeper.config, sweeper.launcher = cfg, object()  # never reached: no trial runs in these tests
    return sweeper


def with_trials(sweep):
    sweep.mkdir()
    (sweep / "trials.csv").write_text("number,state,value\n0,COMPLETE,0.5\n")
    (sweep / "0").mkdir()
    return (sweep / "trials.csv").read_text()


@pytest.mark.parametrize("kind", sorted(BAD_DBS))
def test_unreadable_database_is_refused_naming_it(kind, tmp_path):
    sweep = tmp_path / "sweep"
    csv = with_trials(sweep)
    content, says = BAD_DBS[kind]
    db = sweep / "optuna.db"
    db.write_bytes(content)
    with pytest.raises(RunFolderError) as info:
        sweeper_for(sweep).sweep(["cell=choice(rnn,gru)"])
    message = str(info.value)
    assert "\n" not in message and str(db) in message and says in message and "optuna.db.bak" in message
    assert db.read_bytes() == content and (sweep / "trials.csv").read_text() == csv  # nothing touched
    assert not (sweep / "best.yaml").exists()


def test_trials_without_their_study_are_refused(tmp_path):
    sweep = tmp_path / "sweep"
    with_trials(sweep)
    with pytest.raises(RunFolderError, match=r"holds trials.csv, 1 trial folder but no optuna.db"):
        sweeper_for(sweep).sweep(["cell=choice(rnn,gru)"])
    assert not (sweep / "optuna.db").exists()
    optuna.create_study(study_name="other", storage=f"sqlite:///{sweep / 'optuna.db'}")
    with pytest.raises(RunFolderError, match=r"has no study 's' \(it has: other\).*hydra.sweeper.study_name"):
        sweeper_for(sweep).sweep(["cell=choice(rnn,gru)"])


def test_each_start_keeps_a_readable_copy_of_the_study(tmp_path):
    sweep = tmp_path / "sweep"
    sweeper_for(sweep, "hydra.sweeper.n_trials=0").sweep(["cell=choice(rnn,gru)"])  # creates the study
    assert not (sweep / "optuna.db.bak").exists()  # nothing to keep yet
    sweeper_for(sweep, "hydra.sweeper.n_trials=0").sweep(["cell=choice(rnn,gru)"])
    with sqlite3.connect(sweep / "optuna.db.bak") as con:
        assert con.execute("select study_name from studies").fetchall() == [("s",)]
    assert not list(sweep.glob(".optuna.db.bak*"))  # written aside, then renamed


def test_a_second_search_in_the_same_folder_is_refused(tmp_path):
    from stm_lab.runfolder import RunLock

    sweep = tmp_path / "sweep"
    with RunLock(sweep), pytest.raises(RunFolderError, match="is in use by process"):
        sweeper_for(sweep).sweep(["cell=choice(rnn,gru)"])


def test_command_line_says_one_line_and_exits_2(tmp_path):
    """The real command after a finished toy search whose database was emptied."""
    sweep, log = tmp_path / "sweep", tmp_path / "calls.txt"
    assert run_toy(sweep, log, "hydra.sweeper.n_trials=2").returncode == 0
    (sweep / "optuna.db").write_bytes(b"")
    r = run_toy(sweep, log, "hydra.sweeper.n_trials=2")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("stm_lab:")]
    assert len(lines) == 1 and f"{sweep / 'optuna.db'} is empty (0 bytes)" in lines[0]
