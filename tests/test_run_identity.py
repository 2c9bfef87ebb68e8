"""Runs are found by what they are: identity hashes, sweep folders keyed by config, skip_completed
across a sweep, no completed run overwritten by another config, no W&B id shared by two configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict, read_write
from test_reliability import run_cli

from stm_lab.compare import find_summaries
from stm_lab.errors import RunFolderError
from stm_lab.identity import job_dirname, run_identity
from stm_lab.run import run_job, train
from stm_lab.summary import read_summary, write_json_atomic


def resolved(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def test_identity_ignores_where_and_how_a_run_is_logged_and_started(make_cfg):
    base = run_identity(resolved(make_cfg(subdir="a")))
    same = ["logger=csv", "tags=[x]", "skip_completed=true", "ckpt_path=last", "optimized_metric=val/acc_best",
            "callbacks.progress_bar=null", "trainer.log_every_n_steps=1", "paths.cache_dir=/elsewhere"]
    for override in same:
        assert run_identity(resolved(make_cfg(override, subdir="b"))) == base, override
    for override in ("seed=1", "cell=gru", "data.delay=4", "optimizer.lr=0.01", "trainer.max_epochs=2"):
        assert run_identity(resolved(make_cfg(override, subdir="a"))) != base, override


def test_summary_records_the_identity(make_cfg):
    cfg = make_cfg("trainer.max_epochs=0")
    summary = train(cfg)
    assert summary["identity"] == read_summary(cfg.paths.output_dir)["identity"] == run_identity(resolved(cfg))


def test_job_folder_names_follow_the_overrides_not_the_job_number():
    assert job_dirname(["seed=1", "cell=gru"]) == job_dirname(["cell=gru", "seed=1"]) == "cell=gru,seed=1"
    # Run-control and logging keys never make a different folder.
    assert job_dirname(["seed=1", "skip_completed=true", "logger=csv", "+tags=[a]", "launcher=slurm",
                        "runtime.threads=1"]) == "seed=1"
    assert job_dirname([]) == "default"
    # Long: the overrides as given (swept keys first, usually), then a hash of the sorted set.
    long = job_dirname(["seed=2", *TINY])
    assert len(long) <= 64 and long.startswith("seed=2,data.delay=3,") and long != job_dirname(["seed=3", *TINY])
    assert long[-10:] == job_dirname([*TINY, "seed=2"])[-10:]
    assert "/" not in job_dirname(["data.path=/data/x.csv"])
    assert job_dirname(["data.path=/data/x.csv"]) != job_dirname(["data.path=_data_x.csv"])


def test_a_completed_run_of_another_config_is_never_overwritten(make_cfg):
    cfg = make_cfg("trainer.max_epochs=0")
    first = train(cfg)
    out = Path(cfg.paths.output_dir)
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(RunFolderError) as info:
        train(make_cfg("trainer.max_epochs=0", "seed=1"))
    message = str(info.value)
    assert str(out) in message and first["identity"] in message and "seed: 0 → 1" in message
    assert "\n" not in message
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # untouched
    # The same config is welcome: with skip_completed it is skipped.
    assert train(make_cfg("trainer.max_epochs=0", "skip_completed=true")) == first


def test_refusal_is_exit_code_2_and_nan_in_a_multirun(make_cfg, capsys):
    train(make_cfg("trainer.max_epochs=0"))
    with pytest.raises(SystemExit) as info:
        run_job(make_cfg("trainer.max_epochs=0", "seed=1"))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a completed run of another config" in err[0]


def as_multirun(sweep: Path) -> None:
    hydra_cfg = HydraConfig.get()
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.mode = RunMode.MULTIRUN
        hydra_cfg.sweep.dir = str(sweep)


def test_skip_completed_finds_the_run_in_any_folder_of_the_sweep(make_cfg, tmp_path):
    sweep = tmp_path / "sweep"
    # A sweep made when job folders were numbered and summaries had no identity: seed 0 in folder 0.
    train(make_cfg("trainer.max_epochs=0", subdir="sweep/0"))
    first = {k: v for k, v in read_summary(sweep / "0").items() if k != "identity"}
    write_json_atomic(sweep / "0" / "summary.json", first)
    cfg = make_cfg("trainer.max_epochs=0", "skip_completed=true", subdir="sweep/seed=0")
    as_multirun(sweep)
    assert train(cfg) == first
    assert not (sweep / "seed=0" / "summary.json").exists()  # nothing ran, nothing written
    cfg = make_cfg("trainer.max_epochs=0", "seed=1", "skip_completed=true", subdir="sweep/seed=1")
    as_multirun(sweep)
    assert train(cfg)["status"] == "completed" and read_summary(sweep / "seed=1")["seed"] == 1


def test_a_fresh_start_keeps_the_previous_run_aside_and_takes_a_new_wandb_id(make_cfg):
    cfg = make_cfg("trainer.max_epochs=0")
    first = train(cfg)
    out = Path(cfg.paths.output_dir)
    (out / "wandb_id").write_text("abc123\n")  # the W&B run of that run
    write_json_atomic(out / "summary.json", {**first, "status": "interrupted"})
    (out / "checkpoints").mkdir(exist_ok=True)
    (out / "checkpoints" / "epoch_000.ckpt").write_bytes(b"old")
    second = train(make_cfg("trainer.max_epochs=0", "seed=1"))
    assert second["status"] == "completed" and second["resumed_from"] is None
    assert not (out / "wandb_id").exists()  # the next W&B logger makes a new id
    kept = list((out / "replaced").iterdir())
    assert len(kept) == 1
    assert json.loads((kept[0] / "summary.json").read_text())["seed"] == 0
    assert (kept[0] / "wandb_id").read_text() == "abc123\n"
    assert (kept[0] / "checkpoints" / "epoch_000.ckpt").read_bytes() == b"old"
    assert not (out / "checkpoints" / "epoch_000.ckpt").exists()
    assert find_summaries([out]) == [out / "summary.json"]  # compare never counts a run kept aside


def test_another_ddp_rank_never_moves_the_lead_ranks_files(make_cfg, monkeypatch):
    """Under srun every rank runs the job; rank 1 can start after rank 0 wrote its "running"
    record and W&B id. Rank 1 reads them as a run with no checkpoint yet, but must leave them
    where they are: moving them aside took rank 0's W&B id and record away."""
    from lightning.pytorch.utilities import rank_zero_only

    from stm_lab.record import RunRecord

    cfg = make_cfg("trainer.max_epochs=0")
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True)
    lead = {"status": "running", "identity": run_identity(resolved(cfg)), "config": resolved(cfg)}
    write_json_atomic(out / "summary.json", lead)
    (out / "wandb_id").write_text("lead01\n")
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "last.ckpt").write_bytes(b"torn")  # the lead's to set aside, not this rank's
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    with RunRecord(cfg) as record:
        assert record.resume_from is None
    assert (out / "wandb_id").read_text() == "lead01\n"
    assert read_summary(out) == lead
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == b"torn"
    assert not (out / "replaced").exists()


def test_rerun_of_a_sweep_with_one_more_seed_skips_the_done_ones_and_overwrites_nothing(tmp_path):
    """The scenario: `-m seed=0,1`, then `-m seed=2,0,1 skip_completed=true` in the same folder."""
    sweep = tmp_path / "sweep"
    common = [*TINY, "trainer.max_epochs=0", f"hydra.sweep.dir={sweep}"]
    r = run_cli("-m", "seed=0,1", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    first = {p.parent.name: p.read_text() for p in sweep.glob("*/summary.json")}
    assert sorted(json.loads(s)["seed"] for s in first.values()) == [0, 1]

    r = run_cli("-m", "seed=2,0,1", "skip_completed=true", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("already completed") == 2
    after = {p.parent.name: p.read_text() for p in sweep.glob("*/summary.json")}
    assert {k: after[k] for k in first} == first  # both earlier runs untouched
    new = [json.loads(s) for k, s in after.items() if k not in first]
    assert [s["seed"] for s in new] == [2] and new[0]["status"] == "completed"
