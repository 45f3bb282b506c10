"""Pareto front of evaluated subnets (accuracy up, SRAM and flash down) and its plot."""
from __future__ import annotations

import io
from pathlib import Path

from common import atomic


def dominates(a: dict, b: dict) -> bool:
    """`a` is at least as good as `b` everywhere and better somewhere."""
    ge = (a["accuracy"] >= b["accuracy"] and a["cost"]["sram"] <= b["cost"]["sram"]
          and a["cost"]["flash"] <= b["cost"]["flash"])
    gt = (a["accuracy"] > b["accuracy"] or a["cost"]["sram"] < b["cost"]["sram"]
          or a["cost"]["flash"] < b["cost"]["flash"])
    return ge and gt


def pareto_front(entries: list) -> list:
    """Entries no other entry dominates, by SRAM ascending."""
    front = [e for e in entries if not any(dominates(o, e) for o in entries)]
    return sorted(front, key=lambda e: (e["cost"]["sram"], e["cost"]["flash"], -e["accuracy"]))


def plot_front(entries: list, front: list, budget, path) -> None:
    """PNG: accuracy vs SRAM and vs flash, every evaluated subnet, the front, the budget lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, limit, label in ((axes[0], "sram", budget.sram, "TFLM arena (KiB)"),
                                  (axes[1], "flash", budget.flash + budget.external_flash,
                                   "flash: model + code (KiB)" + (", internal + external" if budget.external_flash
                                                                  else ""))):
        ax.scatter([e["cost"][key] / 1024 for e in entries], [e["accuracy"] for e in entries],
                   s=10, c="0.6", label="evaluated")
        ordered = sorted(front, key=lambda e: e["cost"][key])
        ax.plot([e["cost"][key] / 1024 for e in ordered], [e["accuracy"] for e in ordered],
                "o-", color="tab:red", ms=4, label="Pareto front")
        ax.axvline(limit / 1024, color="tab:blue", ls="--", label=f"budget {limit / 1024:.0f} KiB")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_ylabel("top-1 (inherited weights, validation)")
    fig.suptitle(f"search under {budget.describe()}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic.write_bytes(Path(path), buffer.getvalue())
