"""The two forgetting curves of the memory-span study side by side, per cell: one network trained
at each delay (results/memory_span) and one network trained at delay 10 tested at every delay
(results/forgetting). Each with its 95% interval over seeds; chance and floor dashed.

    python experiments/memory_span/plot.py <per-delay aggregate.csv> <eval aggregate.csv> <out.png>
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def main(per_delay: str, evals: str, out: str) -> None:
    a, b = pd.read_csv(per_delay), pd.read_csv(evals)
    cells = sorted(set(a["cell.name"]) | set(b["cell.name"]))
    fig, axes = plt.subplots(1, len(cells), figsize=(4.2 * len(cells), 3.6), sharey=True, squeeze=False)
    for ax, cell in zip(axes[0], cells, strict=True):
        for frame, label, style in ((a, "trained at each delay", "o-"), (b, "trained at delay 10, tested at each", "s--")):
            g = frame[frame["cell.name"] == cell].sort_values("data.delay")
            err = [(g["mean"] - g["ci_low"]).fillna(0), (g["ci_high"] - g["mean"]).fillna(0)]
            ax.errorbar(g["data.delay"], g["mean"], yerr=err, fmt=style, capsize=3, ms=4, label=label)
        ax.axhline(float(a["chance"].max()), color="grey", ls=":", lw=1, label="chance")
        ax.axhline(float(a["floor"].max()), color="grey", ls="--", lw=1, label="memoryless floor")
        ax.axvline(10, color="grey", ls=(0, (1, 3)), lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks([5, 10, 20, 40, 80, 160])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_title(cell)
        ax.set_xlabel("delay (steps)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy, recall window (mean, 95% CI)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
