"""The sweep's picture: final top-1 against each swept value, and every trial's curves overlaid.

matplotlib is imported only when a plot is drawn (the CLI never pays for it otherwise).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def plot_sweep(parameters: list[str], trials: list[dict[str, Any]], target: Path) -> Path | None:
    """PNG: one panel per swept key (top-1 of each trial at its value; a log axis when the
    values span more than a factor of 20), then the loss per step and top-1 per epoch of every
    trial. None when no trial has any number to show."""
    scored = [t for t in trials if "top1" in t["final"]]
    if not scored and not any(t["curve"] or t["epochs"] for t in trials):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(parameters) + 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4), squeeze=False)
    for ax, key in zip(axes[0], parameters, strict=False):
        texts = [t["values"].get(key, "") for t in scored]
        numbers = [_number(x) for x in texts]
        tops = [t["final"]["top1"] for t in scored]
        if texts and all(n is not None for n in numbers):
            ax.scatter(numbers, tops)
            positive = [n for n in numbers if n is not None and n > 0]
            if len(positive) == len(numbers) and max(positive) / min(positive) > 20:
                ax.set_xscale("log")
        else:
            labels = sorted(set(texts))
            ax.scatter([labels.index(x) for x in texts], tops)
            ax.set_xticks(range(len(labels)), labels)
        ax.set(title=f"top-1 by {key}", xlabel=key, ylabel="allreduced top-1 %", ylim=(0, 100))
    ax_loss, ax_acc = axes[0][-2], axes[0][-1]
    last_epoch = 1
    for t in trials:
        label = f"{t['trial']}: " + ", ".join(f"{k}={v}" for k, v in t["values"].items())
        if t["curve"]:
            ax_loss.plot([s for s, _ in t["curve"]], [v for _, v in t["curve"]], label=label)
        evals = [e for e in t["epochs"] if e.get("top1") is not None]
        if evals:
            last_epoch = max(last_epoch, *[e["epoch"] + 1 for e in evals])
            ax_acc.plot([e["epoch"] + 1 for e in evals], [e["top1"] for e in evals], marker="o",
                        label=label)
    ax_loss.set(title="training loss (rank 0)", xlabel="global step", ylabel="loss")
    ax_acc.set(title="top-1 per epoch", xlabel="epoch", ylabel="%", ylim=(0, 100),
               xlim=(0.5, last_epoch + 0.5))
    if len(trials) <= 12:
        ax_acc.legend(fontsize="small")
    from matplotlib.ticker import MaxNLocator

    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(target, dpi=90)
    plt.close(fig)
    return target
