"""Range checks before anything runs: unbounded training, data or model sizes that cannot fit in
memory, output folders that cannot be written. Each is one line naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_reliability import CLI_ENV

from stm_lab.build import build_task
from stm_lab.config import compose
from stm_lab.errors import ConfigError
from stm_lab.preflight import CheckFolders, memory_needed
from stm_lab.run import train
from stm_lab.summary import read_summary


@pytest.mark.parametrize("overrides,message", [
    (["trainer.max_epochs=-1"], "config key 'trainer.max_epochs' has a bad value -1; allowed: an integer >= 0"),
    (["trainer.max_epochs=-3", "+trainer.max_steps=10"], "'trainer.max_epochs' has a bad value -3"),
])
def test_unbounded_or_negative_epochs_are_refused(make_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        train(make_cfg(*overrides))


def test_no_epoch_limit_is_fine_when_steps_bound_the_run(make_cfg):
    summary = train(make_cfg("trainer.max_epochs=-1", "+trainer.max_steps=3"))
    assert summary["status"] == "completed"


@pytest.mark.parametrize("override,keys", [
    ("data.n_train=1000000000", ["data.n_train"]),
    ("data.num_symbols=5000000", ["data.num_symbols"]),
    ("data.delay=300000000", ["data.delay"]),
])
def test_sizes_beyond_memory_fail_before_any_data_is_made(make_cfg, tmp_path, override, keys):
    cache = tmp_path / "cache"
    cfg = make_cfg(override, f"paths.cache_dir={cache}")
    with pytest.raises(ConfigError) as info:
        train(cfg)
    message = str(info.value)
    assert "\n" not in message and "available" in message and "GiB" in message
    for key in keys:
        assert key in message
    assert not cache.exists() or not any(cache.rglob("*.arrow"))  # no split was generated
    assert read_summary(cfg.paths.output_dir)["status"] == "failed"


def test_float_spelling_of_a_size_names_the_key(make_cfg):
    with pytest.raises(ConfigError, match=r"'data.num_symbols' has a bad value 5000000.0; allowed: an integer"):
        train(make_cfg("data.num_symbols=5e6"))


def test_memory_estimate_counts_what_the_run_allocates(make_cfg):
    cfg = make_cfg("data.n_train=1000", "data.n_val=100", "data.n_test=100", "data.batch_size=10")
    task = build_task(cfg.data)
    items = dict((what, size) for what, size, _ in memory_needed(cfg, task, task.spec))
    # 1200 sequences of 11 steps (delay 3 + 2 x 4 symbols): int64 x and y, bool mask, twice over
    # while made and cached.
    assert items["the generated splits"] == 2 * 1200 * 11 * (8 + 8 + 1)
    assert items["a batch of one-hot inputs"] == 10 * 11 * 6 * 4  # 4 symbols + blank + delimiter
    assert "a batch of one-hot inputs" not in {w for w, _, _ in memory_needed(
        make_cfg("embedding_dim=8"), task, task.spec)}


def test_unwritable_output_folder_is_one_line_before_anything_else(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cases = [([f"hydra.run.dir={blocker}/run"], "hydra.run.dir"),
             ([f"hydra.run.dir={tmp_path}/ok", f"paths.cache_dir={blocker}/cache"], "paths.cache_dir")]
    for overrides, key in cases:
        with pytest.raises(SystemExit) as info:
            CheckFolders().on_run_start(config=compose(overrides))
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and key in err[0] and str(blocker) in err[0]
    with pytest.raises(SystemExit):
        CheckFolders().on_multirun_start(config=compose([f"hydra.sweep.dir={blocker}/sweep"]))
    assert "hydra.sweep.dir" in capsys.readouterr().err
    CheckFolders().on_run_start(config=compose([f"hydra.run.dir={tmp_path}/fine"]))  # no complaint
    assert (tmp_path / "fine").is_dir() and not list((tmp_path / "fine").iterdir())


def test_unwritable_output_folder_from_the_command_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    r = subprocess.run([sys.executable, "-m", "stm_lab", f"hydra.run.dir={blocker}/run"], cwd=tmp_path,
                       env=CLI_ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"stm_lab: cannot write {blocker}/run (hydra.run.dir)")
