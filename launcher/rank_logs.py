"""Per-rank log files as written by msrun (`worker_R.log`) or the Ascend per-card step.

Layout under a job's log root: `restart-<n>/worker_<rank>.log`, one folder per (re)start, so a
requeued job keeps the logs of its earlier runs. Lines are shown with a `[rank R]` prefix unless
the training already printed one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

WORKER_LOG_RE = re.compile(r"^worker_(\d+)\.log$")
# Lines of the job script's own output worth showing next to the ranks' (the rest of that output
# repeats the rank logs through msrun's tail).
JOB_MESSAGE_PREFIXES = ("rlaunch:", "slurmstepd:", "srun:", "sbatch:", "bash:", "run.sh:",
                        "sbatch.sh:", "/bin/bash:")
RESTART_DIR_RE = re.compile(r"^restart-(\d+)$")


def rank_log_files(log_root: Path, rank: int | None = None) -> list[tuple[int, int, Path]]:
    """(restart, rank, path) for every worker log, in restart then rank order."""
    found = []
    if not log_root.is_dir():
        return []
    for restart_dir in log_root.iterdir():
        restart = RESTART_DIR_RE.match(restart_dir.name)
        if not restart or not restart_dir.is_dir():
            continue
        for path in restart_dir.iterdir():
            worker = WORKER_LOG_RE.match(path.name)
            if worker and (rank is None or int(worker[1]) == rank):
                found.append((int(restart[1]), int(worker[1]), path))
    return sorted(found)


def with_rank_prefix(rank: int, line: str) -> str:
    return line if line.startswith("[rank ") else f"[rank {rank}] {line}"


def iter_rank_logs(
    log_root: Path,
    rank: int | None = None,
    follow: bool = False,
    finished: Callable[[], bool] = lambda: True,
    poll_seconds: float = 0.5,
) -> Iterator[str]:
    """Yield log lines of all ranks (or one); with `follow`, until `finished()` and drained."""
    offsets: dict[Path, int] = {}
    partial: dict[Path, str] = {}
    while True:
        done = finished() if follow else True
        produced = False
        for _, worker_rank, path in rank_log_files(log_root, rank):
            try:
                with path.open("r", encoding="utf-8", errors="replace") as fh:
                    fh.seek(offsets.get(path, 0))
                    chunk = fh.read()
                    offsets[path] = fh.tell()
            except OSError:
                continue
            if not chunk:
                continue
            text = partial.pop(path, "") + chunk
            lines = text.split("\n")
            if not text.endswith("\n"):
                partial[path] = lines.pop()  # an unfinished line: wait for the rest
            else:
                lines.pop()
            for line in lines:
                produced = True
                yield with_rank_prefix(worker_rank, line)
        if not follow or (done and not produced):
            break
        if not produced:
            time.sleep(poll_seconds)
    for path, rest in partial.items():
        if rest:
            match = WORKER_LOG_RE.match(path.name)
            yield with_rank_prefix(int(match[1]) if match else -1, rest)


def job_messages(paths: list[Path]) -> Iterator[str]:
    """`[job] ...` lines: the launcher script's and the scheduler's own messages."""
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(JOB_MESSAGE_PREFIXES):
                yield f"[job] {line}"
