"""Collect a finished (or running) job's results: checkpoints, logs, accuracy, curves.

The accuracy reported is the allreduced one: the seed's `after allreduce eval: top1_correct=N,
tot=T, acc=XX.XX%(TOP1)` log lines (and TOP5), which every rank prints with the same numbers.
Per-epoch numbers come from the metrics files' eval events; loss is rank 0's mean step loss.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from launcher.progress import read_events

ALLREDUCE_RE = re.compile(
    r"after allreduce eval: top(?P<k>[15])_correct=(?P<correct>\d+), tot=(?P<total>\d+), "
    r"acc=(?P<acc>[0-9.]+)%\(TOP(?P=k)\)"
)
CHECKPOINT_FILES = ("last.ckpt", "best.ckpt", "manifest.json")


@dataclass
class EpochRow:
    epoch: int
    top1: float | None = None
    top5: float | None = None
    loss: float | None = None


@dataclass
class Summary:
    job_id: str
    state: str
    final: dict[str, Any] = field(default_factory=dict)
    epochs: list[EpochRow] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    plot: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def allreduced_accuracy(lines: list[str]) -> dict[str, Any]:
    """The last allreduced top-1/top-5 found in log lines ({} when none)."""
    found: dict[str, Any] = {}
    for line in lines:
        match = ALLREDUCE_RE.search(line)
        if match:
            k = match["k"]
            found[f"top{k}"] = float(match["acc"])
            found[f"top{k}_correct"] = int(match["correct"])
            found["total"] = int(match["total"])
    return found


def epoch_rows(metrics_dir: Path) -> list[EpochRow]:
    """Per-epoch top-1/top-5 (eval events) and rank 0's mean step loss."""
    events = read_events(metrics_dir / "rank0.jsonl")
    rows: dict[int, EpochRow] = {}
    losses: dict[int, list[float]] = {}
    for event in events:
        epoch = event.get("epoch")
        if not isinstance(epoch, int):
            continue
        if event.get("event") == "step" and isinstance(event.get("loss"), (int, float)):
            losses.setdefault(epoch, []).append(float(event["loss"]))
        elif event.get("event") == "eval":
            row = rows.setdefault(epoch, EpochRow(epoch))
            row.top1, row.top5 = event.get("top1"), event.get("top5")
    for epoch, values in losses.items():
        rows.setdefault(epoch, EpochRow(epoch)).loss = sum(values) / len(values)
    return [rows[e] for e in sorted(rows)]


def loss_curve(metrics_dir: Path) -> list[tuple[int, float]]:
    return [
        (int(e["global_step"]), float(e["loss"]))
        for e in read_events(metrics_dir / "rank0.jsonl")
        if e.get("event") == "step" and isinstance(e.get("loss"), (int, float))
        and isinstance(e.get("global_step"), int)
    ]


def plot_curves(metrics_dir: Path, rows: list[EpochRow], target: Path) -> Path | None:
    """PNG with the loss per step and top-1/top-5 per epoch; None without any data."""
    steps = loss_curve(metrics_dir)
    evals = [r for r in rows if r.top1 is not None]
    if not steps and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    if steps:
        ax_loss.plot([s for s, _ in steps], [v for _, v in steps])
    ax_loss.set(title="training loss (rank 0)", xlabel="global step", ylabel="loss")
    if evals:
        ax_acc.plot([r.epoch + 1 for r in evals], [r.top1 for r in evals], marker="o", label="top-1")
        ax_acc.plot([r.epoch + 1 for r in evals], [r.top5 for r in evals], marker="s", label="top-5")
        ax_acc.legend()
    ax_acc.set(title="allreduced accuracy", xlabel="epoch", ylabel="%", ylim=(0, 100))
    from matplotlib.ticker import MaxNLocator

    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


def gather_outputs(outputs: Path, log_lines: list[str], dest: Path, job_id: str,
                   state: str) -> Summary:
    """Copy checkpoints and metrics from `outputs` into `dest`, summarize, plot."""
    summary = Summary(job_id=job_id, state=state)
    ckpt_src = outputs / "checkpoints"
    for name in CHECKPOINT_FILES:
        if (ckpt_src / name).is_file():
            (dest / "checkpoints").mkdir(parents=True, exist_ok=True)
            shutil.copy2(ckpt_src / name, dest / "checkpoints" / name)
            summary.checkpoints.append(str(dest / "checkpoints" / name))
    if (outputs / "metrics").is_dir():
        shutil.copytree(outputs / "metrics", dest / "metrics", dirs_exist_ok=True)
    if (outputs / "eval.json").is_file():
        shutil.copy2(outputs / "eval.json", dest / "eval.json")
    summary.final = allreduced_accuracy(log_lines)
    if not summary.final and (outputs / "eval.json").is_file():
        data = json.loads((outputs / "eval.json").read_text())
        summary.final = {k: data[k] for k in ("top1", "top5", "top1_correct", "top5_correct",
                                              "total") if k in data}
    summary.epochs = epoch_rows(outputs / "metrics")
    plot = plot_curves(outputs / "metrics", summary.epochs, dest / "curves.png")
    summary.plot = str(plot) if plot else None
    (dest / "summary.json").write_text(summary.to_json())
    return summary
