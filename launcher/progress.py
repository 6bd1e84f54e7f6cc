"""Training progress of a job, read from the metrics JSON-lines its ranks write.

`O/metrics/rank{R}.jsonl` holds {"event": "step", "epoch", "step", "global_step", "loss", ...}
and {"event": "eval", "epoch", "top1", "top5", ...} lines (see the training contract).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def read_events(path: Path) -> list[dict[str, Any]]:
    """Events of one metrics file; a half-written last line is skipped."""
    events = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


@dataclass
class Progress:
    """Where rank 0 is: last step event, and how many epochs the job runs (when known)."""

    epoch: int | None = None
    step: int | None = None
    global_step: int | None = None
    loss: float | None = None
    epochs_total: int | None = None

    def describe(self) -> str:
        if self.epoch is None:
            return "no training step yet"
        total = f"/{self.epochs_total}" if self.epochs_total else ""
        loss = f", loss {self.loss:.4f}" if isinstance(self.loss, (int, float)) else ""
        return f"epoch {self.epoch + 1}{total}, step {self.step} (global {self.global_step}){loss}"


def epochs_total(spec: dict[str, Any]) -> int | None:
    """The `epochs` of the job: a `--set epochs=N` override, else the config file's value."""
    for item in reversed(spec.get("overrides") or []):
        key, _, value = str(item).partition("=")
        if key == "epochs" and value.strip().isdigit():
            return int(value)
    config = spec.get("config")
    if config:
        import yaml

        try:
            data = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return None
        if isinstance(data, dict) and isinstance(data.get("epochs"), int):
            return data["epochs"]
    return None


def read_progress(output_dir: str | None, spec: dict[str, Any]) -> Progress:
    progress = Progress(epochs_total=epochs_total(spec))
    if not output_dir:
        return progress
    steps = [e for e in read_events(Path(output_dir) / "metrics" / "rank0.jsonl")
             if e.get("event") == "step"]
    if steps:
        last = steps[-1]
        progress.epoch, progress.step = last.get("epoch"), last.get("step")
        progress.global_step, progress.loss = last.get("global_step"), last.get("loss")
    return progress
