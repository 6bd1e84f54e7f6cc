"""Collect a finished (or running) job's results: checkpoints, logs, accuracy, curves.

Everything is read from the structured files of the trainer's contract (`resnest.contract`),
never from log lines: the final accuracy is the allreduced one in the eval result file, or, while
a job runs, its last eval event; per-epoch numbers are rank 0's eval events, loss its mean step
loss.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from resnest.contract import (
    CHECKPOINT_FILES,
    CHECKPOINTS_DIR,
    EVAL_RESULT_FILE,
    EVENT_EVAL,
    EVENT_STEP,
    METRICS_DIR,
    ContractError,
    metrics_file,
    read_eval_result,
    read_events,
)

FINAL_KEYS = ("top1", "top5", "top1_correct", "top5_correct", "total")


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
    # Device-hours and the attempts they come from (launcher.usage.JobUsage.to_dict).
    usage: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def final_accuracy(outputs: Path, warn: Callable[[str], None] = print) -> dict[str, Any]:
    """The allreduced top-1/top-5: the eval result file, else the last eval event ({} if none).

    A damaged eval result file is reported through `warn` (naming it) and skipped: the
    checkpoints are still worth gathering."""
    try:
        result = read_eval_result(outputs)
    except ContractError as err:
        warn(f"warning: {err}; using the last eval event of the metrics instead")
        result = None
    if result is None:
        evals = [e for e in read_events(outputs / metrics_file(0)) if e.get("event") == EVENT_EVAL]
        result = evals[-1] if evals else {}
    return {k: result[k] for k in FINAL_KEYS if _number(result.get(k))}


def epoch_rows(outputs: Path) -> list[EpochRow]:
    """Per-epoch top-1/top-5 (eval events) and rank 0's mean step loss."""
    events = read_events(outputs / metrics_file(0))
    rows: dict[int, EpochRow] = {}
    losses: dict[int, list[float]] = {}
    for event in events:
        epoch = event.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            continue
        if event.get("event") == EVENT_STEP and _number(event.get("loss")):
            losses.setdefault(epoch, []).append(float(event["loss"]))
        elif event.get("event") == EVENT_EVAL:
            row = rows.setdefault(epoch, EpochRow(epoch))
            row.top1 = event["top1"] if _number(event.get("top1")) else None
            row.top5 = event["top5"] if _number(event.get("top5")) else None
    for epoch, values in losses.items():
        rows.setdefault(epoch, EpochRow(epoch)).loss = sum(values) / len(values)
    return [rows[e] for e in sorted(rows)]


def loss_curve(outputs: Path) -> list[tuple[int, float]]:
    return [
        (int(e["global_step"]), float(e["loss"]))
        for e in read_events(outputs / metrics_file(0))
        if e.get("event") == EVENT_STEP and _number(e.get("loss"))
        and isinstance(e.get("global_step"), int)
    ]


def plot_curves(outputs: Path, rows: list[EpochRow], target: Path) -> Path | None:
    """PNG with the loss per step and top-1/top-5 per epoch; None without any data."""
    steps = loss_curve(outputs)
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


def gather_outputs(outputs: Path, dest: Path, job_id: str, state: str,
                   warn: Callable[[str], None] = print) -> Summary:
    """Copy checkpoints, metrics and the eval result from `outputs` into `dest`, summarize,
    plot."""
    summary = Summary(job_id=job_id, state=state)
    summary.final = final_accuracy(outputs, warn)
    summary.epochs = epoch_rows(outputs)
    ckpt_src = outputs / CHECKPOINTS_DIR
    for name in CHECKPOINT_FILES:
        if (ckpt_src / name).is_file():
            (dest / CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
            shutil.copy2(ckpt_src / name, dest / CHECKPOINTS_DIR / name)
            summary.checkpoints.append(str(dest / CHECKPOINTS_DIR / name))
    if (outputs / METRICS_DIR).is_dir():
        shutil.copytree(outputs / METRICS_DIR, dest / METRICS_DIR, dirs_exist_ok=True)
    if (outputs / EVAL_RESULT_FILE).is_file():
        shutil.copy2(outputs / EVAL_RESULT_FILE, dest / EVAL_RESULT_FILE)
    plot = plot_curves(outputs, summary.epochs, dest / "curves.png")
    summary.plot = str(plot) if plot else None
    (dest / "summary.json").write_text(summary.to_json())
    return summary
