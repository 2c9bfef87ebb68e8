"""Decoder throughput of the encoder–decoder head (``head=seq2seq``) on SCAN: tokens per second for
training and for greedy decoding, and the head's per-token overhead against a bare loop.

For each cell and attention, on batches of the SCAN training split (``--split``):

- **train, forced**: a full training step (forward, loss, backward, Adam) with every sequence
  teacher-forced (``teacher_forcing=1``): without additive attention the decoder runs the whole
  target in one call.
- **train, 0.5**: the same with ``teacher_forcing=0.5`` (Lake & Baroni's setting): the decoder steps
  token by token.
- **greedy**: validation-time decoding (no gradients) of the same batches, up to the task's longest
  target + 1, stopping when every sequence has ended (checked every 8 tokens).
- **bare**: the same greedy decoding written as the shortest loop over the head's weights
  (embedding, torch's fused one-step kernel per layer, output layer, arg-max; ``attention=none``
  only): what any decoder must do per token. ``greedy ÷ bare`` (time per token) is the head's per-token overhead.
- **module step** (``train 0.5`` and ``greedy`` again, in brackets): the head stepping its
  ``torch.nn`` module with a length-1 sequence instead of torch's fused one-step kernels (the
  fallback for a cell without such a kernel): what the fused kernels save.

Training throughput counts the scored target tokens (end of sequence included); decoding counts
decoder steps × batch rows (the work done, whether or not a row has already ended).

    python benchmarks/decoder.py                                   # lstm, gru, rnn; none, additive
    python benchmarks/decoder.py --cells lstm --hidden 200 --layers 2 --batch 32
    python benchmarks/decoder.py --attention none,dot,additive --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from stm_lab.build import build_datamodule, build_model  # noqa: E402
from stm_lab.cells import run_core  # noqa: E402
from stm_lab.config import compose  # noqa: E402
from stm_lab.tasks.seq2seq import TGT_BOS, TGT_EOS  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from step_time import machine, sync  # noqa: E402


def compose_cfg(cell: str, attention: str, teacher_forcing: float, args: argparse.Namespace) -> DictConfig:
    return compose([
        "data=scan", "head=seq2seq", f"data.split={args.split}", f"data.batch_size={args.batch}",
        f"cell={cell}", f"cell.hidden_size={args.hidden}", f"cell.num_layers={args.layers}",
        f"embedding_dim={args.hidden}", f"head.attention={attention}", f"head.teacher_forcing={teacher_forcing}",
        f"trainer.accelerator={args.device.type}", "logger=none", "paths.cache_dir=null",
    ])


def batches(cfg: DictConfig, device: torch.device, n: int) -> list[dict[str, torch.Tensor]]:
    """The first ``n`` shuffled training batches, on the device."""
    dm = build_datamodule(cfg)
    dm.setup()
    out = []
    for batch in dm.train_dataloader():
        out.append({k: v.to(device) for k, v in batch.items()})
        if len(out) == n:
            break
    return out


def time_per_batch(fn, data: list[dict[str, torch.Tensor]], device: torch.device, warmup: int) -> float:
    for batch in data[:warmup]:
        fn(batch)
    sync(device)
    t0 = time.perf_counter()
    for batch in data[warmup:]:
        fn(batch)
    sync(device)
    return (time.perf_counter() - t0) / (len(data) - warmup)


def train_step(model, optimizer):
    def step(batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = model.head.loss(model(batch))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    return step


def greedy(model):
    @torch.no_grad()
    def decode(batch) -> None:
        states = run_core(model.core, model.encoder(batch["x"]), batch["length"])
        model.head.generate(states, batch)
    return decode


def bare(model, steps: int):
    """Greedy decoding as the shortest loop over the head's weights (attention none): embedding,
    torch's fused one-step kernel per layer, output layer, arg-max; the same end check every 8 steps."""
    head = model.head
    rnn, embed, out, cell = head.decoder.rnn, head.embed, head.out, head._cell_fn
    layers = [tuple(getattr(rnn, f"{w}_l{k}") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
              for k in range(head.decoder_layers)]

    @torch.no_grad()
    def decode(batch) -> None:
        states = run_core(model.core, model.encoder(batch["x"]), batch["length"])
        state = head.initial_state(states.final)  # one entry per layer: h, or (h, c)
        h = [layer[0] for layer in state] if head.cell_state else list(state)
        c = [layer[1] for layer in state] if head.cell_state else None
        token = torch.full((len(batch["x"]),), TGT_BOS, dtype=torch.long, device=batch["x"].device)
        ended = torch.zeros_like(token, dtype=torch.bool)
        for t in range(steps):
            x = embed(token)
            for k, w in enumerate(layers):
                if c is not None:
                    h[k], c[k] = cell(x, (h[k], c[k]), *w)
                else:
                    h[k] = cell(x, h[k], *w)
                x = h[k]
            token = out(x).argmax(-1)
            ended |= token == TGT_EOS
            if (t + 1) % 8 == 0 and bool(ended.all()):
                break
    return decode


def decode_steps(model, data) -> float:
    """Mean decoder steps × rows per batch of greedy decoding."""
    total = 0
    with torch.no_grad():
        for batch in data:
            states = run_core(model.core, model.encoder(batch["x"]), batch["length"])
            scores, _ = model.head.generate(states, batch)
            total += scores.shape[0] * scores.shape[1]
    return total / len(data)


def measure(cell: str, attention: str, args: argparse.Namespace) -> dict:
    row: dict = {"cell": cell, "attention": attention, "forced_tok_s": [], "half_tok_s": [], "greedy_tok_s": [],
                 "bare_tok_s": [], "half_module_tok_s": [], "greedy_module_tok_s": []}
    n = args.warmup + args.batches
    for tf, key in ((1.0, "forced_tok_s"), (0.5, "half_tok_s")):
        cfg = compose_cfg(cell, attention, tf, args)
        pl.seed_everything(0, verbose=False)
        model = build_model(cfg, build_datamodule(cfg).spec).to(args.device).train()
        data = batches(cfg, args.device, n)
        tokens = statistics.mean(float(b["mask"].sum()) for b in data[args.warmup:])
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        fused = model.head._cell_fn
        for _ in range(args.repeats):  # interleaved: a change of machine load hits both
            row[key].append(tokens / time_per_batch(train_step(model, optimizer), data, args.device, args.warmup))
            if tf < 1:
                model.head._cell_fn = None
                row["half_module_tok_s"].append(
                    tokens / time_per_batch(train_step(model, optimizer), data, args.device, args.warmup))
                model.head._cell_fn = fused
    model.eval()
    work = decode_steps(model, data[args.warmup:])
    for _ in range(args.repeats):
        row["greedy_tok_s"].append(work / time_per_batch(greedy(model), data, args.device, args.warmup))
        model.head._cell_fn = None
        row["greedy_module_tok_s"].append(work / time_per_batch(greedy(model), data, args.device, args.warmup))
        model.head._cell_fn = fused
        if attention == "none":
            row["bare_tok_s"].append(work / time_per_batch(bare(model, model.spec.positions), data, args.device,
                                                           args.warmup))
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda")
    p.add_argument("--cells", default="lstm,gru,rnn")
    p.add_argument("--attention", default="none,additive", help="none, dot, additive (comma separated)")
    p.add_argument("--split", default="simple")
    p.add_argument("--hidden", type=int, default=200, help="units per layer (encoder and decoder)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=10, help="timed batches per repeat")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    args.device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                               else "cpu" if args.device == "auto" else args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {machine()} · torch {torch.__version__}"
          f" · load {load:.1f}")
    print(f"# {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}")
    print(f"# SCAN {args.split}, batch {args.batch}, {args.layers} x {args.hidden}; tokens/s, medians of "
          f"{args.repeats} repeats")
    header = (f"{'cell':5} {'attention':9} | {'train forced':>12} {'train 0.5 (module step)':>23} | "
              f"{'greedy (module step)':>20} {'bare':>7} {'greedy÷bare':>11}")
    print(header)
    print("-" * len(header))
    results = []
    for cell in args.cells.split(","):
        for attention in args.attention.split(","):
            row = measure(cell, attention, args)
            med = {k: statistics.median(v) if v else float("nan") for k, v in row.items() if k.endswith("tok_s")}
            row["median"] = med
            results.append(row)
            print(f"{cell:5} {attention:9} | {med['forced_tok_s']:12,.0f} "
                  f"{med['half_tok_s']:12,.0f} ({med['half_module_tok_s']:7,.0f}) | "
                  f"{med['greedy_tok_s']:9,.0f} ({med['greedy_module_tok_s']:7,.0f}) {med['bare_tok_s']:7,.0f} "
                  f"{med['bare_tok_s'] / med['greedy_tok_s']:11.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=2))


if __name__ == "__main__":
    main()
