"""Every file in conf/ composes, and the composed pieces build."""

from pathlib import Path

import pytest
from conftest import CONF, compose_config

from stm_lab.build import build_datamodule, build_model, build_trainer

GROUPS = ["data", "cell", "head", "trainer", "logger", "callbacks", "debug"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_group_option_composes(group, option, tmp_path):
    cfg = compose_config([f"{group}={option}"], tmp_path)
    if group == "debug":  # a global preset: it changes the trainer
        assert cfg.trainer != compose_config([], tmp_path).trainer
    else:
        assert group in cfg


@pytest.mark.parametrize("name", _options("experiment"))
def test_experiment_composes_and_builds(name, tmp_path):
    extra = []
    if name == "text":  # a hub dataset: build it on a local file instead (no network)
        data = tmp_path / "t.csv"
        data.write_text("text,label\nfine film,1\nbad film,0\n" * 10)
        extra = ["data.dataset=null", f"data.data_files={data}", "data.text_column=text", "data.test_split=null"]
    cfg = compose_config([f"+experiment={name}", "data.n_train=8", "data.n_val=8", "data.n_test=8", *extra],
                         tmp_path)
    dm = build_datamodule(cfg)
    build_model(cfg, dm.spec)
    build_trainer(cfg, [])


def test_experiment_is_not_in_defaults():
    text = (CONF / "config.yaml").read_text()
    assert "experiment" not in text.split("_self_")[0].split("defaults:")[1]


def test_every_tunable_key_is_commented():
    for path in [*(CONF / "cell").glob("*.yaml"), *(CONF / "data").glob("*.yaml")]:
        for line in path.read_text().splitlines():
            if line and not line.startswith(("#", " ", "name:", "task:")):
                assert "#" in line, f"{path.name}: '{line}' has no comment"


def test_conf_is_packaged_in_the_wheel():
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"conf" = "stm_lab/conf"' in text
