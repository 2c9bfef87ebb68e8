"""The cost of the fresh-data regime: drawing an epoch of new training sequences (held out from
validation and test) against the epoch's training time.

    OMP_NUM_THREADS=1 python benchmarks/fresh_data.py            # every generated task, default sizes
    OMP_NUM_THREADS=1 python benchmarks/fresh_data.py --train copy --epochs 3

For each generated task at its conf/data/<task>.yaml sizes: the median time of
``MemoryDataModule.fresh_tensors(epoch)`` over several epochs. With ``--train TASK``, also the
median wall time of a training epoch of the default model in each regime (fixed and fresh,
same config), so the generation share of an epoch is measured, not inferred. Prints a table
and writes JSON with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402

from stm_lab.build import build  # noqa: E402
from stm_lab.config import compose, conf_dir  # noqa: E402
from stm_lab.tasks import TASKS  # noqa: E402


def generation_ms(task_name: str, repeats: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as out:
        cfg = compose([f"data={task_name}", "data.on_device=false", "paths.cache_dir=null"], output_dir=out)
        dm = build(cfg).datamodule
    dm.setup()
    times = []
    for epoch in range(1, repeats + 1):
        t0 = time.perf_counter()
        dm.fresh_tensors(epoch)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), dm.sizes["train"]


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.times.append(time.perf_counter() - self.t0)


def epoch_seconds(task_name: str, regime: str, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        cfg = compose([f"data={task_name}", f"data.regime={regime}", f"trainer.max_epochs={epochs}",
                       "+trainer.limit_val_batches=0", "logger=none", "callbacks.progress_bar=null",
                       "+trainer.enable_progress_bar=false", "paths.cache_dir=null"], output_dir=out)
        timer = EpochTimer()
        parts = build(cfg, callbacks=[timer])
        parts.trainer.fit(parts.model, datamodule=parts.datamodule)
    return statistics.median(timer.times[1:] or timer.times)  # the first epoch pays for start-up


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--train", default=None, help="also time training epochs of this task in both regimes")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    load_before = os.getloadavg()
    rows = {}
    for name in TASKS.names():
        if not TASKS.get(name).held_out or not (conf_dir() / "data" / f"{name}.yaml").exists():
            continue
        ms, n = generation_ms(name, args.repeats)
        rows[name] = {"generate_ms": round(ms, 2), "n_train": n}
        print(f"{name:24s} {n:7d} sequences: {ms:8.1f} ms per epoch")
    result = {"generation": rows}
    if args.train:
        fixed, fresh = (epoch_seconds(args.train, r, args.epochs) for r in ("fixed", "fresh"))
        gen = rows[args.train]["generate_ms"] / 1e3
        result["epochs"] = {"task": args.train, "fixed_s": round(fixed, 3), "fresh_s": round(fresh, 3),
                            "generation_share_of_fresh_epoch": round(gen / fresh, 4)}
        print(f"{args.train}: training epoch {fixed:.2f} s fixed, {fresh:.2f} s fresh; "
              f"drawing the epoch's data is {100 * gen / fresh:.1f}% of a fresh epoch")
    result["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                         "torch_threads": torch.get_num_threads(), "load_before": load_before,
                         "load_after": os.getloadavg(), "torch": torch.__version__}
    print(json.dumps(result["machine"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
