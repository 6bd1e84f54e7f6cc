"""Training progress of a job, read from the metrics JSON-lines its ranks write.

The file names and the event format are the trainer's contract (`resnest.contract`): rank 0's
metrics file holds `EVENT_STEP` events (epoch, step, global_step, loss, ...) and `EVENT_EVAL`
events (epoch, top1, top5, the allreduced counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnest.contract import EVENT_STEP, metrics_file, read_events


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
    """The `epochs` the job trains for, as the trainer will compute it: defaults, then the
    config file (when it is on this machine), then the `--set` overrides (`resnest.config`,
    which imports only yaml). None when that config cannot be loaded here."""
    from resnest.config import ConfigError, load_config, parse_set_overrides

    config = spec.get("config")
    overrides = spec.get("overrides") or []
    local = config if isinstance(config, str) and Path(config).is_file() else None
    try:
        parsed = parse_set_overrides([str(o) for o in overrides])
        if config and local is None and "epochs" not in parsed:
            return None  # the config is only on the cluster (a pod's path): epochs unknown here
        return load_config(local, parsed).epochs
    except (ConfigError, OSError, ValueError):
        return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_progress(output_dir: str | None, spec: dict[str, Any]) -> Progress:
    """Progress from rank 0's metrics file (fields of the wrong type are left out)."""
    progress = Progress(epochs_total=epochs_total(spec))
    if not output_dir:
        return progress
    steps = [e for e in read_events(Path(output_dir) / metrics_file(0))
             if e.get("event") == EVENT_STEP]
    if steps:
        last = steps[-1]
        progress.epoch = _int_or_none(last.get("epoch"))
        progress.step = _int_or_none(last.get("step"))
        progress.global_step = _int_or_none(last.get("global_step"))
        loss = last.get("loss")
        number = isinstance(loss, (int, float)) and not isinstance(loss, bool)
        progress.loss = float(loss) if number else None
    return progress
