"""Rank-tagged human log lines on stdout and the per-rank JSON-lines metrics file.

Layout (the launcher reads it, see `resnest.contract`): OUT/`metrics_file(rank)`, one JSON object
per line with an "event" key: `EVENT_STEP`, `EVENT_EVAL` and, at the end of training, `EVENT_DONE`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from resnest.contract import metrics_file


class RunLog:
    """Prints `[rank R] ...` lines and appends metrics events for one rank."""

    def __init__(self, rank: int, output_dir: str | Path | None = None, stream: TextIO | None = None) -> None:
        self.rank = rank
        self.stream = stream or sys.stdout
        self.metrics_path: Path | None = None
        if output_dir is not None:
            self.metrics_path = Path(output_dir) / metrics_file(rank)
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)

    def info(self, message: str, all_ranks: bool = False) -> None:
        """Progress goes out on rank 0 only, unless `all_ranks`."""
        if all_ranks or self.rank == 0:
            print(f"[rank {self.rank}] {message}", file=self.stream, flush=True)

    def warning(self, message: str) -> None:
        print(f"[rank {self.rank}] {message}", file=self.stream, flush=True)

    def event(self, event: str, **fields: Any) -> None:
        if self.metrics_path is None:
            return
        record = {"event": event, **fields}
        record.setdefault("time", time.time())
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
