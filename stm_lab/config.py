"""The Hydra tree and its top-level schema: where conf/ is, which top-level keys exist (and their
types), and composing a config exactly as the command line does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from stm_lab.errors import ConfigError
from stm_lab.identity import register_resolver

register_resolver()  # ${stm_lab.job_dir:...}: grid-sweep job folders (conf/hydra/default.yaml)


def conf_dir() -> Path:
    """The Hydra tree: inside the package in a wheel install, at the repository top in a checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "conf"
    return packaged if packaged.is_dir() else here.parent / "conf"


def groups() -> set[str]:
    """The config groups (folders of conf/), plus Hydra's own node."""
    return {p.name for p in conf_dir().iterdir() if p.is_dir()} | {"hydra"}


def cell_name(cell: Any) -> str:
    """The cell's label in summaries, tags and ``compare``: ``cell.name``, else its class name."""
    return str(cell.get("name") or str(cell.get("_target_", "cell")).rsplit(".", 1)[-1].lower())


# The top-level keys of conf/config.yaml that are not config groups, with their types: the one
# schema for them (a test checks that config.yaml defines exactly these). A key added with
# ``+key=...`` that is neither one of these nor a group is refused.
ROOT_KEYS: dict[str, Any] = {
    "seed": int,
    "tags": list[str],
    "compile": bool,
    "embedding_dim": int | None,
    "optimizer": dict,
    "scheduler": dict | None,
    "ckpt_path": str | None,
    "skip_completed": bool,
    "optimized_metric": str | None,
    "runtime": dict,  # its one key, threads, is checked by stm_lab.threads
}
SEED_RANGE = (0, 2**32 - 1)  # numpy's SeedSequence and torch's manual_seed both accept these


def check_root(cfg: DictConfig) -> None:
    """Every top-level key is a group or a root key of the right type; ``seed`` is in range."""
    from stm_lab.validation import check_value

    allowed = groups()
    for key in cfg:
        if key not in allowed and key not in ROOT_KEYS:
            raise ConfigError(str(key), OmegaConf.select(cfg, str(key)),
                              sorted(k for k in {*ROOT_KEYS, *allowed} if k != "hydra"),
                              hint="unknown top-level key")
    root = {}
    for key in (k for k in ROOT_KEYS if k in cfg):
        try:  # resolved in place: an interpolation may point anywhere in the tree
            node = cfg[key]
            root[key] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        except OmegaConfBaseException as e:
            raise ConfigError(key, OmegaConf.to_container(cfg, resolve=False).get(key),
                              hint=str(e).splitlines()[0]) from e
    for key, value in root.items():
        check_value(key, value, ROOT_KEYS[key])
    if "embedding_dim" in root and root["embedding_dim"] is not None and root["embedding_dim"] < 1:
        raise ConfigError("embedding_dim", root["embedding_dim"], "null or an integer >= 1")
    if "seed" in root and not SEED_RANGE[0] <= root["seed"] <= SEED_RANGE[1]:
        raise ConfigError("seed", root["seed"], f"an integer in [{SEED_RANGE[0]}, {SEED_RANGE[1]}]")


def compose(overrides: list[str] | tuple[str, ...] = (), output_dir: str | Path | None = None,
            config_name: str = "config") -> DictConfig:
    """The config the command line would build from these overrides (``["cell=gru", "data.delay=40"]``).

    With ``output_dir``, the result is a run's config: its folder set there, as Hydra would for
    ``hydra.run.dir``, Hydra's runtime config registered (so that code reading it, such as the
    run record, works outside the command line) and Hydra's own node removed. Without, the
    ``hydra`` node stays (sweeper and launcher settings can be read from it).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    if output_dir is not None:
        cfg.hydra.runtime.output_dir = str(output_dir)
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
            del cfg.hydra
    return cfg
