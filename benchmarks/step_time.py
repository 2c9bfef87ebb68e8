"""Time per training step: stm_lab's full path against a raw PyTorch loop, in one process.

For every cell and (B, T, H) in the grid, on the copy task:

(a) raw   : the same model (encoder, core, head built from the same config), Adam, gradient
            clipping at 1.0, one batch made once on the device; zero_grad/forward/loss/
            backward/clip/step in a plain loop.
(b) stm_lab: ``Trainer.fit`` of the ``MemoryModel`` with the ``MemoryDataModule`` (cached splits,
            shuffled batches), torchmetrics, the CSV logger and the default checkpoint callback,
            i.e. the default run minus the progress bar and validation. A callback takes the time
            at every ``on_train_batch_end``; one step is the time between two of them (loading,
            transfer, forward, backward, optimiser, metrics, logging).
(c) ref   : the raw loop of (a) with ``cell.impl=reference`` (the step-by-step equations).

It prints ms/step and the ratios stm_lab/raw and ref/fast. Each path is timed over ``--steps``
steps after ``--warmup`` untimed ones, ``--repeats`` times with the paths interleaved; the
table shows medians. On CUDA every timing point synchronises first.

    python benchmarks/step_time.py                                   # the default grid
    python benchmarks/step_time.py --grid 128x100x128 --cells lstm   # one point
    python benchmarks/step_time.py --precision bf16-mixed --compile  # the options
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import lightning.pytorch as pl  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from cpu_model import cpu_model  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

from stm_lab.build import build_callbacks, build_datamodule, build_model  # noqa: E402
from stm_lab.config import compose  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compose_cfg(cell: str, B: int, T: int, H: int, n_steps: int, out_dir: Path, args: argparse.Namespace,
                impl: str = "fast") -> DictConfig:
    """The real config tree for one grid point: copy task with sequence length T."""
    L = min(10, max(1, T // 4))
    overrides = [
        f"cell={cell}", f"cell.hidden_size={H}", f"cell.impl={impl}",
        f"data.list_length={L}", f"data.delay={T - 2 * L}", f"data.batch_size={B}",
        f"data.n_train={B * (n_steps + 2)}", f"data.n_val={B}", f"data.n_test={B}",
        "logger=csv", "callbacks.progress_bar=null", f"compile={args.compile}",
        f"trainer.precision={args.precision}", f"trainer.accelerator={args.device.type}",
        f"paths.output_dir={out_dir}", "paths.cache_dir=null",
    ]
    return compose(overrides)


def autocast(device: torch.device, precision: str):
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def raw_step_ms(cfg: DictConfig, device: torch.device, args: argparse.Namespace) -> float:
    """(a): the same modules and optimiser, one batch resident on the device, a plain loop."""
    pl.seed_everything(cfg.seed, verbose=False)
    dm = build_datamodule(cfg)
    model = build_model(cfg, dm.spec).to(device)
    encoder, core, readout = model.encoder, model.core, model.head.proj  # the per-step head's linear map
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.optimizer.lr)
    data = dm.task.generate(cfg.data.batch_size, np.random.default_rng(0))
    x, y, mask = (torch.from_numpy(data[k]).to(device) for k in ("x", "y", "mask"))
    clip = cfg.trainer.gradient_clip_val

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, args.precision):
            out = readout(core(encoder(x))[0][mask])
            loss = F.cross_entropy(out.float(), y[mask])
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()

    for _ in range(args.warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    return (time.perf_counter() - t0) * 1e3 / args.steps


class StepTimer(pl.Callback):
    """Wall time between consecutive ``on_train_batch_end`` calls (synchronised on CUDA)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sync(pl_module.device)
        self.stamps.append(time.perf_counter())


def stm_lab_step_ms(cfg: DictConfig, device: torch.device, args: argparse.Namespace) -> float:
    """(b): the full stm_lab path, as ``stm_lab.run.train`` builds it, timed from inside."""
    pl.seed_everything(cfg.seed, verbose=False)
    dm = build_datamodule(cfg)
    dm.setup()
    model = build_model(cfg, dm.spec)
    timer = StepTimer()
    callbacks = [*build_callbacks(cfg, model.selection), timer]
    loggers = [instantiate(c) for c in cfg.logger.values() if "_target_" in c]
    n = args.warmup + args.steps + 1
    with open_dict(cfg):
        cfg.trainer.max_steps = n
        cfg.trainer.max_epochs = -1
        cfg.trainer.limit_val_batches = 0
        cfg.trainer.num_sanity_val_steps = 0
        cfg.trainer.enable_progress_bar = False
    trainer = instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    trainer.fit(model, datamodule=dm)
    stamps = timer.stamps[args.warmup:]  # steps + 1 stamps bound the timed steps
    return (stamps[-1] - stamps[0]) * 1e3 / (len(stamps) - 1)


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    cpu = cpu_model()
    return f"{cpu}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads"


def parse_grid(text: str) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in point.split("x")) for point in text.split(",")]  # type: ignore[misc]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda")
    p.add_argument("--cells", default="rnn,lstm,gru")
    p.add_argument("--grid", default="32x50x64,128x100x128", help="BxTxH points, comma separated")
    p.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, default=8, help="untimed steps (TorchScript optimises the "
                   "reference loop during its first few calls)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", default="32-true", help="32-true | bf16-mixed (trainer.precision)")
    p.add_argument("--compile", action="store_true", help="torch.compile the core (compile=true)")
    p.add_argument("--paths", default="raw,stm_lab,reference", help="which of raw, stm_lab, reference")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    args.device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                               else "cpu" if args.device == "auto" else args.device)
    paths = args.paths.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {machine()} · torch {torch.__version__}"
          f" · lightning {pl.__version__} · precision {args.precision} · compile {args.compile}")
    print(f"# {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}")
    header = f"{'cell':5} {'B':>4} {'T':>4} {'H':>4} | {'raw ms':>8} {'stm_lab ms':>10} {'ratio':>6} | {'ref ms':>8} {'ref/fast':>8}"
    print(header)
    print("-" * len(header))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for cell in args.cells.split(","):
            for B, T, H in parse_grid(args.grid):
                row = {"cell": cell, "B": B, "T": T, "H": H, "raw_ms": [], "stm_lab_ms": [], "ref_ms": []}
                # Repeats interleave the paths, so a change in the machine's load hits all of them.
                for r in range(args.repeats):
                    run_dir = Path(tmp) / f"{cell}-{B}-{T}-{H}-{r}"
                    n = args.warmup + args.steps
                    if "raw" in paths or "reference" in paths:
                        row["raw_ms"].append(raw_step_ms(compose_cfg(cell, B, T, H, n, run_dir / "raw", args),
                                                         args.device, args))
                    if "stm_lab" in paths:
                        row["stm_lab_ms"].append(stm_lab_step_ms(
                            compose_cfg(cell, B, T, H, n, run_dir / "pl", args), args.device, args))
                    if "reference" in paths:
                        row["ref_ms"].append(raw_step_ms(
                            compose_cfg(cell, B, T, H, n, run_dir / "ref", args, "reference"), args.device, args))
                med = {k: statistics.median(v) for k, v in row.items() if k.endswith("_ms") and v}
                ratio = med["stm_lab_ms"] / med["raw_ms"] if "stm_lab_ms" in med else float("nan")
                ref = med["ref_ms"] / med["raw_ms"] if "ref_ms" in med else float("nan")
                print(f"{cell:5} {B:4} {T:4} {H:4} | {med.get('raw_ms', float('nan')):8.2f} "
                      f"{med.get('stm_lab_ms', float('nan')):10.2f} {ratio:6.3f} | "
                      f"{med.get('ref_ms', float('nan')):8.2f} {ref:8.2f}", flush=True)
                results.append({**row, "stm_lab_over_raw": ratio, "ref_over_fast": ref})
    if args.json:
        args.json.write_text(json.dumps({"device": str(args.device), "machine": machine(),
                                         "precision": args.precision, "compile": args.compile,
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()
