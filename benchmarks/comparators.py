"""Forward + backward time per batch of the reference comparators against torch.nn.LSTM / GRU.

Cells at equal hidden size H, one layer, batch-first input of ``--input-size`` channels (a
one-hot vocabulary of 16 by default), for each (B, T, H) in the grid:

    lstm, gru          torch.nn (oneDNN on a CPU, cuDNN on a GPU)
    mingru, minlstm    stm_lab.cells.min_rnn, parallel (chunked log-space scan)
    mingru-seq         the same minGRU, step by step (its reference form), for the scan's gain
    attention          stm_lab.cells.attention.CausalAttention: 1 head, no MLP

One timed step is: forward, a weighted sum of all outputs as the loss, backward (gradients
zeroed first). Each cell runs ``--warmup`` untimed steps, then ``--steps`` timed ones; this is
repeated ``--repeats`` times with the cells interleaved, so a change in machine load hits all
of them; the table shows the median ms per batch and the ratio to the LSTM measured in the
same repeat. ``--threads`` fixes torch's intra-op threads (and the printout records
OMP_NUM_THREADS and the load average).

    OMP_NUM_THREADS=1 python benchmarks/comparators.py                   # B=64, T=64/256, H=64/128
    python benchmarks/comparators.py --grid 64x256x128 --cells lstm,mingru --repeats 9
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone

import torch
from torch import nn

from stm_lab import api


def _conf_cell(name: str, **options) -> Callable[[int, int], nn.Module]:
    """A cell as ``cell=<name>`` builds it (conf/cell/<name>.yaml), one layer, width h."""
    return lambda i, h: api.cell(name, input_size=i, hidden_size=h, num_layers=1, **options)


CELLS: dict[str, Callable[[int, int], nn.Module]] = {
    "lstm": lambda i, h: nn.LSTM(i, h, batch_first=True),
    "gru": lambda i, h: nn.GRU(i, h, batch_first=True),
    "mingru": _conf_cell("mingru"),
    "minlstm": _conf_cell("minlstm"),
    "mingru-seq": _conf_cell("mingru", mode="sequential"),
    "attention": _conf_cell("attention"),  # 1 head, no MLP (conf/cell/attention.yaml)
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(model: nn.Module, x: torch.Tensor, weight: torch.Tensor, steps: int) -> float:
    """Seconds per forward+backward, averaged over ``steps``."""
    sync(x.device)
    start = time.perf_counter()
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        out, _ = model(x)
        (out * weight).sum().backward()
    sync(x.device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grid", default="64x64x64,64x64x128,64x256x64,64x256x128", help="BxTxH points")
    p.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated, from {list(CELLS)}")
    p.add_argument("--input-size", type=int, default=16)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="write the raw timings here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cells = args.cells.split(",")
    for c in cells:
        if c not in CELLS:
            raise SystemExit(f"unknown cell {c!r}; choose from {list(CELLS)}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, device {device}, torch threads "
          f"{torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"load average {load}")
    print(f"# warmup {args.warmup}, {args.steps} timed steps x {args.repeats} repeats (interleaved), medians")
    header = f"{'B':>4} {'T':>4} {'H':>4} | " + " | ".join(f"{c:>16}" for c in cells)
    print(header + "\n" + "-" * len(header))
    raw = []
    for point in args.grid.split(","):
        B, T, H = (int(v) for v in point.split("x"))
        torch.manual_seed(0)
        x = torch.randn(B, T, args.input_size, device=device)
        weight = torch.randn(B, T, H, device=device)
        models = {c: CELLS[c](args.input_size, H).to(device) for c in cells}
        for c in cells:
            timed_steps(models[c], x, weight, args.warmup)
        times: dict[str, list[float]] = {c: [] for c in cells}
        for _ in range(args.repeats):
            for c in cells:
                times[c].append(timed_steps(models[c], x, weight, args.steps))
        med = {c: statistics.median(t) * 1e3 for c, t in times.items()}
        base = "lstm" if "lstm" in cells else cells[0]
        # The ratio is the median of per-repeat ratios: both measured under the same load.
        ratio = {c: statistics.median(a / b for a, b in zip(times[c], times[base], strict=True)) for c in cells}
        print(f"{B:>4} {T:>4} {H:>4} | " + " | ".join(f"{med[c]:8.2f} ({ratio[c]:4.2f}x)" for c in cells))
        raw.append({"B": B, "T": T, "H": H, "ms": {c: [t * 1e3 for t in times[c]] for c in cells}})
    print(f"# ms per batch (forward + backward); in brackets: time / {base}'s in the same repeat")
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"# load average after: {load_after}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "load_before": load, "load_after": load_after, "points": raw}, f, indent=1)


if __name__ == "__main__":
    main()
