"""One process per run folder: a lock file with the owner's pid and host, taken over from a dead
owner, refused while the owner lives."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest
from conftest import TINY
from test_reliability import CLI_ENV, pause_at, wait_for

from stm_lab.errors import ConfigError, RunFolderError
from stm_lab.run import run_job, train
from stm_lab.runfolder import LOCK_FILE, RunLock
from stm_lab.summary import read_summary


def test_second_process_is_refused_and_a_killed_owner_is_taken_over(make_cfg, tmp_path, capsys):
    marker = tmp_path / "paused"
    cfg = make_cfg("trainer.max_epochs=2", *pause_at(10, marker))
    out = tmp_path / "run"
    owner = subprocess.Popen(
        [sys.executable, "-m", "stm_lab", *TINY, "trainer.max_epochs=2", *pause_at(10, marker),
         f"hydra.run.dir={out}"], cwd=tmp_path, env=CLI_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(marker)
        holder = json.loads((out / LOCK_FILE).read_text())
        assert holder["pid"] == owner.pid and holder["host"] == socket.gethostname()
        # The same command while the first one runs: one line naming the holder, exit code 2.
        with pytest.raises(SystemExit) as info:
            run_job(make_cfg("trainer.max_epochs=2"))
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is in use by process {owner.pid} on {socket.gethostname()}" in err[0]
        assert str(out / LOCK_FILE) in err[0]
        assert read_summary(out)["pid"] == owner.pid  # its summary is not touched
    finally:
        owner.send_signal(signal.SIGKILL)  # no clean-up: the lock file stays behind
        owner.wait(timeout=60)
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == owner.pid

    resumed = train(cfg)  # the dead owner's lock is taken over, and its run resumed
    assert f"taking over the stale lock of process {owner.pid}" in capsys.readouterr().err
    assert resumed["status"] == "completed" and resumed["resumed_from"].endswith("last.ckpt")
    assert not (out / LOCK_FILE).exists()  # released at the end


def test_lock_of_another_host_is_refused_naming_it(make_cfg, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "node-17", "started": "2024-01-01T00:00:00"}))
    with pytest.raises(RunFolderError, match=r"in use by process 1 on node-17 .*if that job has ended, delete"):
        train(make_cfg())
    assert not (out / "summary.json").exists()


def test_lock_is_released_whatever_the_outcome(make_cfg, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError):
        train(make_cfg("data.delay=abc"))
    assert not (out / LOCK_FILE).exists()
    with RunLock(out), pytest.raises(RunFolderError, match="in use by process"):
        RunLock(out).acquire()  # even within one process, a second holder is refused
    assert not (out / LOCK_FILE).exists()
