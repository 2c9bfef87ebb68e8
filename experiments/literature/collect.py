"""Collect the literature-check runs into results/literature/literature.csv."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

from stm_lab.data import build_task

ROOT = Path(__file__).resolve().parents[2]


def main(out: str) -> None:
    rows = []
    for path in sorted(Path(out).glob("**/summary.json")):
        s = json.loads(path.read_text())
        m, d = s["metrics"], s["config"]["data"]
        task = s["task"]
        if task == "copy":
            setting = f"T={d['delay']} L={d['list_length']} S={d['num_symbols']}"
            # Cross-entropy on the recall window only: the memoryless baseline is ln S.
            metric, value, baseline = "test/loss (CE, recall window)", m["test/loss"], math.log(d["num_symbols"])
            extra = m["test/acc"]
        elif task == "adding":
            setting = f"T={d['length']}"
            # The baseline on this very test split: MSE of always predicting 1 (1/6 in expectation).
            test = build_task(d).make_split("test", d["n_test"], s["seed"])
            baseline = float(np.mean((test["y"][:, -1, 0] - 1.0) ** 2))
            metric, value, extra = "test/mse", m["test/mse"], None
        elif task == "memory_capacity":
            head = s["config"]["head"]["name"]
            setting = (f"K={d['max_delay']} scale={d['input_scale']} "
                       f"readout={'ridge, frozen untrained net' if head == 'ridge' else 'trained end to end'}")
            metric, value, baseline, extra = "test/mc", m["test/mc"], s["chance"], None
        else:
            setting = f"mode={d['mode']} permute={d['permute']}"
            metric, value, baseline, extra = "test/acc", m["test/acc"], s["chance"], None
        rows.append({"task": task, "cell": s["cell"], "setting": setting,
                     "hidden": s["config"]["cell"]["hidden_size"],
                     "epochs": s["config"]["trainer"]["max_epochs"],
                     "n_train": d["n_train"], "metric": metric, "value": f"{value:.5g}",
                     "baseline": f"{baseline:.5g}", "test_acc": "" if extra is None else f"{extra:.4f}",
                     "wall_time_s": s["wall_time_s"]})
    dest = ROOT / "results" / "literature" / "literature.csv"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(dest.read_text())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "outputs/literature")
