"""What the launcher (`rlaunch`) and the trainer (`resnest.train`/`eval`) agree on.

Both packages import this module and nothing else spells these names or numbers. It imports only
the standard library: the launcher reads it without paying for MindSpore.

- Exit codes: a rank that was asked to stop saves a checkpoint and exits `REQUEUE_EXIT_CODE`;
  usage errors exit `USAGE_EXIT_CODE`. Launchers whose rank runner hides that code (msrun turns
  any rank's non-zero exit into its own 1) set `REQUEUE_MARKER_ENV` to a path: rank 0 creates
  that file once every rank has saved, meaning "requeue me".
- Files under a job's output dir: `metrics/rank{R}.jsonl` (one JSON event per line, see
  `EVENT_*`), `eval.json` (the allreduced evaluation, `EvalResult`), `config.json`,
  `checkpoints/{last,best}.ckpt` and `checkpoints/manifest.json`.
- The device handshake: the launcher exports `DEVICE_KIND_ENV` (`gpu|ascend|cpu`); the trainer
  runs on that device or fails clearly (`TARGET_OF_DEVICE_KIND` maps it to MindSpore's name).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# EX_TEMPFAIL: "stopped on request, checkpoint saved, run me again".
REQUEUE_EXIT_CODE = 75
USAGE_EXIT_CODE = 2
REQUEUE_MARKER_ENV = "RLAUNCH_REQUEUE_MARKER"

# ---- the device handshake ------------------------------------------------------------------
DEVICE_KIND_ENV = "RLAUNCH_DEVICE_KIND"
DEVICE_KINDS: tuple[str, ...] = ("gpu", "ascend", "cpu")
TARGET_OF_DEVICE_KIND: dict[str, str] = {"gpu": "GPU", "ascend": "Ascend", "cpu": "CPU"}

# ---- files in the output dir ---------------------------------------------------------------
METRICS_DIR = "metrics"
EVAL_RESULT_FILE = "eval.json"
CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"
CHECKPOINT_MANIFEST = "manifest.json"
CHECKPOINT_FILES: tuple[str, ...] = (LAST_CHECKPOINT, BEST_CHECKPOINT, CHECKPOINT_MANIFEST)

# Metrics events ("event" key of each JSON line):
EVENT_STEP = "step"  # epoch, step, global_step, loss, lr, img_per_s, time
EVENT_EVAL = "eval"  # epoch, top1, top5, top1_correct, top5_correct, total
EVENT_DONE = "done"  # epoch, global_step, param_checksum


def metrics_file(rank: int) -> str:
    """Path of rank `rank`'s metrics file, relative to the output dir."""
    return f"{METRICS_DIR}/rank{rank}.jsonl"


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events of one metrics file; a half-written last line (a running job) is skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


class ContractError(ValueError):
    """A file of the contract is there but damaged; the message names the file."""


@dataclass
class EvalResult:
    """The allreduced evaluation, as `eval.json` holds it (percentages for top1/top5)."""

    top1_correct: int
    top5_correct: int
    total: int
    expected_total: int

    @property
    def top1(self) -> float:
        return 100.0 * self.top1_correct / self.total if self.total else 0.0

    @property
    def top5(self) -> float:
        return 100.0 * self.top5_correct / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "top1": self.top1, "top5": self.top5}

    def seed_log_lines(self) -> list[str]:
        """The seed's log lines, kept verbatim for users' existing log scrapers."""
        return [
            (f"after allreduce eval: top1_correct={self.top1_correct}, tot={self.total}, "
             f"acc={self.top1:.2f}%(TOP1)"),
            (f"after allreduce eval: top5_correct={self.top5_correct}, tot={self.total}, "
             f"acc={self.top5:.2f}%(TOP5)"),
        ]


def write_eval_result(output_dir: Path, result: EvalResult, **extra: Any) -> Path:
    """Write `eval.json` atomically (a reader never sees half of it)."""
    path = Path(output_dir) / EVAL_RESULT_FILE
    tmp = path.with_name(f".{EVAL_RESULT_FILE}.tmp")
    tmp.write_text(json.dumps({**result.to_dict(), **extra}, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path


def read_eval_result(output_dir: Path) -> dict[str, Any] | None:
    """`eval.json` as a dict; None when the job has not written it; ContractError if damaged."""
    path = Path(output_dir) / EVAL_RESULT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise ContractError(f"{path} cannot be read: {err}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ContractError(f"{path} is not valid JSON (damaged or half-written)") from None
    counts = ("top1_correct", "top5_correct", "total")
    if not isinstance(data, dict) or any(not isinstance(data.get(k), int) for k in counts):
        raise ContractError(f"{path} lacks the integer fields {', '.join(counts)}")
    return data
