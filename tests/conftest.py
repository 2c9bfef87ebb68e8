"""Shared fixtures. Nothing here reaches a network: W&B is offline, the hub is off."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# Before anything imports wandb or datasets: offline mode fails fast instead of retrying.
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
# Before torch loads: the test models are tiny, and on a small shared CPU two spinning
# OpenMP threads run them several times slower than one.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from omegaconf import DictConfig  # noqa: E402

from stm_lab.config import compose, conf_dir  # noqa: E402

CONF = conf_dir()

# A copy task small enough to train in seconds, with enough distinct lists (4^4) to hold validation
# and test lists out of training.
TINY = ["data.delay=3", "data.list_length=4", "data.num_symbols=4", "data.n_train=256",
        "data.n_val=64", "data.n_test=64", "data.batch_size=32", "cell.hidden_size=16",
        "trainer.max_epochs=1", "trainer.accelerator=cpu", "logger=none", "callbacks.progress_bar=null"]


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["STM_LAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def compose_config(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """The real config tree composed as the CLI would, with this run's folder set to ``output_dir``."""
    return compose(overrides, output_dir)


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    def make(*overrides: str, tiny: bool = True, subdir: str = "run") -> DictConfig:
        return compose_config([*(TINY if tiny else []), *overrides], tmp_path / subdir)

    return make
