"""The shape of the code: no import cycles, defaults only in conf/, one schema for top-level keys."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest
from conftest import CONF
from omegaconf import OmegaConf

from stm_lab.config import ROOT_KEYS, groups
from stm_lab.data import MemoryDataModule
from stm_lab.tasks import TASKS
from stm_lab.validation import locate

PACKAGE = Path(__file__).parents[1] / "stm_lab"


def _module_graph() -> dict[str, set[str]]:
    """stm_lab module → the stm_lab modules it imports, anywhere in the file (function-level
    imports included: a local import that only hides a cycle is still a cycle); imports under
    ``if TYPE_CHECKING:`` are not executed and do not count."""
    modules = {}
    for f in PACKAGE.rglob("*.py"):
        name = ".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = f

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, f in modules.items():
        tree = ast.parse(f.read_text())
        hidden = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                  for n in ast.walk(node)}
        deps = set()
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stm_lab"):
                deps |= {resolve(f"{node.module}.{a.name}") or resolve(node.module) for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {resolve(a.name) for a in node.names if a.name.startswith("stm_lab")}
        graph[name] = deps - {name, None}
    return graph


def test_no_import_cycles():
    graph = _module_graph()
    assert "stm_lab.build" in graph and "stm_lab.tasks.spec" in graph["stm_lab.tasks.copy"]
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def _options(group: str) -> list[Path]:
    return sorted((CONF / group).glob("*.yaml"))


def _python_defaults(target: object, injected: set[str]) -> dict[str, object]:
    if dataclasses.is_dataclass(target):
        return {f.name: f.default for f in dataclasses.fields(target)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    params = inspect.signature(target).parameters.values()
    return {p.name: p.default for p in params if p.name not in injected and p.default is not p.empty}


def test_config_facing_parameters_have_no_python_defaults():
    """Defaults live in conf/ only: a task, cell, head or data-module parameter with a Python
    default could silently disagree with its YAML (it did: copy's list_length was 10 in Python
    and 5 in conf/data/copy.yaml)."""
    found = {}
    for name, cls in TASKS.items():
        found.update({f"task {name}.{k}": v for k, v in _python_defaults(cls, set()).items()})
    found.update({f"data module .{k}": v for k, v in _python_defaults(MemoryDataModule, {"self"}).items()})
    for group, injected in (("cell", {"self", "input_size"}), ("head", {"self", "hidden_size", "spec"}),
                            ("callbacks", {"self"})):
        for path in _options(group):
            nodes = OmegaConf.to_container(OmegaConf.load(path))
            nodes = {"": nodes} if "_target_" in nodes else nodes
            for key, node in nodes.items():
                target = node.get("_target_") if isinstance(node, dict) else None
                if target and target.startswith("stm_lab."):
                    found.update({f"{path.name} {key}.{k}": v
                                  for k, v in _python_defaults(locate("_target_", target), injected).items()})
    assert not found, f"Python defaults on config-facing parameters: {found}"


def test_every_task_yaml_names_every_parameter():
    for path in _options("data"):
        node = OmegaConf.to_container(OmegaConf.load(path))
        cls = TASKS.get(node["task"])
        module = set(inspect.signature(MemoryDataModule.__init__).parameters) - {"self", "task", "seed", "cache_dir"}
        missing = {f.name for f in dataclasses.fields(cls)} | module
        assert not missing - set(node), f"{path.name} lacks {sorted(missing - set(node))}"


def test_root_keys_have_one_schema():
    """conf/config.yaml's top-level keys that are not groups are exactly config.ROOT_KEYS."""
    node = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"))
    keys = set(node) - {"defaults"} - groups()
    assert keys == set(ROOT_KEYS), (sorted(keys ^ set(ROOT_KEYS)))
