"""What the launcher (`rlaunch`) and the trainer (`resnest.train`/`eval`) agree on.

Both packages import this module and nothing else spells these names or numbers. It imports only
the standard library: the launcher reads it without paying for MindSpore.

- Exit codes: a rank that was asked to stop saves a checkpoint and exits `REQUEUE_EXIT_CODE`;
  usage errors exit `USAGE_EXIT_CODE`. Launchers whose rank runner hides that code (msrun turns
  any rank's non-zero exit into its own 1) set `REQUEUE_MARKER_ENV` to a path: rank 0 creates
  that file once the stop's checkpoint is published, meaning "requeue me".
- Files under a job's output dir: `metrics/rank{R}.jsonl` (one JSON event per line, see
  `EVENT_*`), `eval.json` (the allreduced evaluation, `EvalResult`), `config.json`,
  `checkpoints/{last,best}.ckpt` and `checkpoints/manifest.json`.
- The device handshake: the launcher exports `DEVICE_KIND_ENV` (`gpu|ascend|cpu`); the trainer
  runs on that device or fails clearly (`TARGET_OF_DEVICE_KIND` maps it to MindSpore's name).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# EX_TEMPFAIL: "stopped on request, checkpoint saved, run me again".
REQUEUE_EXIT_CODE = 75
USAGE_EXIT_CODE = 2
REQUEUE_MARKER_ENV = "RLAUNCH_REQUEUE_MARKER"

# ---- numbers written as text (--set, command-line flags, files read back) -----------------
# ASCII digits only (Python's int() and float() also take '٣', '1_0', ' 5', 'nan' and 'inf'),
# no leading zero (YAML 1.1 reads 010 as 8), finite. Launcher and trainer say the same words.
INTEGER_TEXT_RE = re.compile(r"-?(0|[1-9][0-9]{0,17})")
NUMBER_TEXT_RE = re.compile(r"-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,3})?"
                            r"|-?\.[0-9]{1,30}([eE][-+]?[0-9]{1,3})?")
INTEGER_WORDS = "an integer (ASCII digits, no leading zero)"
NUMBER_WORDS = "a finite number (ASCII digits, e.g. 0.1 or 1e-4)"


def integer_from_text(text: str) -> int | None:
    """`text` as an integer by INTEGER_TEXT_RE, else None."""
    return int(text) if INTEGER_TEXT_RE.fullmatch(text) else None


def number_from_text(text: str) -> float | None:
    """`text` as a finite number by NUMBER_TEXT_RE, else None (1e999 overflows to inf)."""
    if not NUMBER_TEXT_RE.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


# ---- the device handshake ------------------------------------------------------------------
DEVICE_KIND_ENV = "RLAUNCH_DEVICE_KIND"
DEVICE_KINDS: tuple[str, ...] = ("gpu", "ascend", "cpu")
TARGET_OF_DEVICE_KIND: dict[str, str] = {"gpu": "GPU", "ascend": "Ascend", "cpu": "CPU"}

def device_target_contradiction(config_target: str, kind: str) -> str | None:
    """Why a config's `device_target` cannot run on devices of `kind`; None when it can. The
    launcher (at submit) and the trainer (at start) say the same."""
    target = TARGET_OF_DEVICE_KIND[kind]
    if config_target in ("auto", target):
        return None
    return (f"device_target={config_target} contradicts the job's device kind {kind} "
            f"({DEVICE_KIND_ENV}={kind}); drop device_target or make it auto or {target}")


# ---- files in the output dir ---------------------------------------------------------------
# The data layout both sides agree on: DATA/{train,val}/<class>/<image>, these suffixes
# (any case): the trainer reads them, `rlaunch check` looks for them before queueing.
DATA_SPLITS = ("train", "val")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp")

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


# ---- reading files back: bounded, regular files only ---------------------------------------
# Everything we read back (job files, configs, rank tables, records, metrics, exit codes) may be
# damaged or not ours: a FIFO or device would hang or never end, a huge file fill memory.
MAX_SMALL_FILE_BYTES = 1 << 20
MAX_METRICS_FILE_BYTES = 64 << 20


class UnreadableFile(OSError):
    """A file that is not there, not a regular file, or too large; str() is one line."""


def read_bounded(path: Path | str, what: str, limit: int = MAX_SMALL_FILE_BYTES) -> bytes:
    """The bytes of regular file `path`, at most `limit`; `UnreadableFile` naming `what` and
    the path otherwise. Opened without blocking, so a FIFO is refused at once, never read."""
    import os
    import stat

    shown = f"{what} {str(path)!r}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as err:
        raise UnreadableFile(f"{shown} cannot be read: {err.strerror or err}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket")
            raise UnreadableFile(f"{shown} is {kind}, not a regular file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except UnreadableFile:
        raise
    except OSError as err:
        raise UnreadableFile(f"{shown} cannot be read: {err.strerror or err}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise UnreadableFile(f"{shown} is larger than {limit} bytes")
    return b"".join(chunks)


def metrics_file(rank: int) -> str:
    """Path of rank `rank`'s metrics file, relative to the output dir."""
    return f"{METRICS_DIR}/rank{rank}.jsonl"


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events of one metrics file; a half-written last line (a running job) is skipped."""
    try:
        text = read_bounded(path, "metrics file", MAX_METRICS_FILE_BYTES).decode("utf-8", "replace")
    except OSError:
        return []
    events = []
    for line in text.splitlines():
        try:
            # A diverged loss is written as NaN, which JSON does not have: read it as null.
            event = json.loads(line, parse_constant=lambda name: None)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


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
    if not path.exists() and not path.is_symlink():
        return None
    try:
        text = read_bounded(path, "eval result").decode("utf-8")
    except UnreadableFile as err:
        raise ContractError(str(err)) from None
    except UnicodeDecodeError:
        raise ContractError(f"{path} is not UTF-8 text") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except ValueError:
        raise ContractError(f"{path} is not valid JSON (damaged or half-written)") from None
    counts = ("top1_correct", "top5_correct", "total")
    if not isinstance(data, dict) or any(not isinstance(data.get(k), int) for k in counts):
        raise ContractError(f"{path} lacks the integer fields {', '.join(counts)}")
    return data
