"""The floors every headline number is reported against: the task's chance levels, and its
baselines — predictors that cannot remember (or, where the task says so, remember only part) —
scored on the actual test split with the same metric definitions as the model."""

from __future__ import annotations

from typing import Any

import torch

from stm_lab.data import MemoryDataModule
from stm_lab.metrics import Scored, evaluate, metric_of
from stm_lab.tasks.spec import TaskSpec


def baseline_scores(datamodule: MemoryDataModule) -> dict[str, dict[str, Any]]:
    """``{baseline: {"note", "memoryless", "metrics": {metric: value}}}`` on the test split."""
    spec, task = datamodule.spec, datamodule.task
    train, test = datamodule.arrays("train"), datamodule.arrays("test")
    mask = torch.from_numpy(test["mask"])
    target = torch.from_numpy(test["y"])[mask]
    out = {}
    for name, b in task.baselines(train, test).items():
        scalars, _ = evaluate(spec, "test", Scored(torch.from_numpy(b.preds).float(), target, mask))
        out[name] = {"note": b.note, "memoryless": b.memoryless,
                     "metrics": {k.split("/", 1)[1]: v for k, v in scalars.items()}}
    return out


def floors(spec: TaskSpec, baselines: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per metric, the highest bar a result must clear to show memory: the best of its chance
    level and every baseline (in the metric's own direction), and which one that is."""
    out: dict[str, dict[str, Any]] = {}
    for metric in spec.metrics:
        d = metric_of(metric)
        candidates = [(value, "chance") for value in [spec.chance.get(metric)] if value is not None]
        candidates += [(b["metrics"][metric], name) for name, b in baselines.items() if metric in b["metrics"]]
        if not candidates or d is None or d.curve:
            continue
        value, source = candidates[0]
        for v, s in candidates[1:]:
            if d.better(v, value):
                value, source = v, s
        out[metric] = {"value": value, "by": source}
    return out
