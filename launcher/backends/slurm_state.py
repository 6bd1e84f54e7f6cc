"""What Slurm says about jobs, asked as its documentation asks clients to: one `squeue` call for
every job wanted, one `sacct` call for those slurmctld has already forgotten (squeue.1
PERFORMANCE: no client commands in tight loops), and followers that back off.

Everything read back is untrusted text: a line counts only when its job id was asked about and
is a plain number (or an array task's `<array>_<index>`), and its state a known Slurm state word.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from launcher.backends import base
from launcher.backends.base import BackendError, JobStatus

# Slurm's job states (job_state_codes.shtml) in rlaunch's scheduler-neutral ones.
SLURM_STATES: dict[str, str] = {
    "PENDING": base.PENDING,
    "CONFIGURING": base.PENDING,
    "RESV_DEL_HOLD": base.PENDING,
    # Held after a requeue until a user or admin releases it: not final, the reason says why.
    "REQUEUE_HOLD": base.PENDING,
    "SPECIAL_EXIT": base.PENDING,
    "RUNNING": base.RUNNING,
    "COMPLETING": base.RUNNING,
    "SUSPENDED": base.RUNNING,
    "STOPPED": base.RUNNING,
    "SIGNALING": base.RUNNING,
    "STAGE_OUT": base.RUNNING,
    "RESIZING": base.RUNNING,
    "REQUEUED": base.REQUEUED,
    "REQUEUE_FED": base.REQUEUED,
    # A job requeued by preemption leaves PREEMPTED at once (job_mgr.c `_job_requeue_op` sets it
    # for the accounting record only, then REQUEUE): a PREEMPTED job that stays so was ended by
    # preemption (PreemptMode=CANCEL) and will not run again.
    "PREEMPTED": base.FAILED,
    "COMPLETED": base.COMPLETED,
    "CANCELLED": base.CANCELLED,
    "FAILED": base.FAILED,
    "TIMEOUT": base.FAILED,
    "NODE_FAIL": base.FAILED,
    "OUT_OF_MEMORY": base.FAILED,
    "BOOT_FAIL": base.FAILED,
    "DEADLINE": base.FAILED,
    "REVOKED": base.CANCELLED,
}
HELD_STATES = frozenset({"REQUEUE_HOLD", "SPECIAL_EXIT"})
SHOWN_AS_DETAIL = {"SUSPENDED": "suspended", "STOPPED": "stopped"}

SQUEUE_FORMAT = "%i|%T|%r"
SACCT_FIELDS = "JobIDRaw,State,ExitCode"
JOB_ID_RE = re.compile(r"[0-9]{1,12}")
# What squeue --array lists for one element of a job array: `<array id>_<task index>`.
LISTED_ID_RE = re.compile(r"[0-9]{1,12}(_[0-9]{1,10})?")
EXIT_CODE_RE = re.compile(r"([0-9]{1,3}):([0-9]{1,3})")
REASON_RE = re.compile(r"[A-Za-z0-9_(),.:/ -]{0,120}")
# squeue's answer for a single id slurmctld no longer holds (a list of ids is filtered instead).
UNKNOWN_JOB_MESSAGE = "Invalid job id specified"


@dataclass(frozen=True)
class SlurmJobView:
    """One job as squeue or sacct reported it."""

    job_id: str
    state: str
    reason: str = ""
    exit_code: int | None = None
    source: str = "squeue"


def _run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise BackendError(f"{argv[0]} is not installed or not on PATH") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"{argv[0]} did not answer within {timeout:.0f} s") from None


def _state_word(text: str) -> str | None:
    """`CANCELLED by 1000` -> CANCELLED; None unless it is a state this module knows."""
    words = text.split()
    return words[0] if words and words[0] in SLURM_STATES else None


def parse_squeue(text: str, wanted: Iterable[str]) -> dict[str, SlurmJobView]:
    """Lines of `squeue -h -o '%i|%T|%r'` (with `--array`, one line per array task) for the
    wanted ids; anything else is ignored."""
    wanted = set(wanted)
    found: dict[str, SlurmJobView] = {}
    for line in text.splitlines():
        job_id, _, rest = line.strip().partition("|")
        state_text, _, reason = rest.partition("|")
        state = _state_word(state_text)
        if job_id not in wanted or not LISTED_ID_RE.fullmatch(job_id) or state is None:
            continue
        reason = reason.strip() if REASON_RE.fullmatch(reason.strip()) else ""
        found[job_id] = SlurmJobView(job_id, state, "" if reason == "None" else reason)
    return found


def parse_sacct(text: str, wanted: Iterable[str]) -> dict[str, SlurmJobView]:
    """Lines of `sacct -n -P -X -o JobIDRaw,State,ExitCode`; without --duplicates sacct shows
    the latest run of a requeued job, and the last line per id wins."""
    wanted = set(wanted)
    found: dict[str, SlurmJobView] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 3:
            continue
        job_id, state_text, exit_text = fields
        state = _state_word(state_text)
        if job_id not in wanted or not JOB_ID_RE.fullmatch(job_id) or state is None:
            continue
        code = EXIT_CODE_RE.fullmatch(exit_text.strip())
        found[job_id] = SlurmJobView(job_id, state, exit_code=int(code[1]) if code else None,
                                     source="sacct")
    return found


@dataclass
class SlurmAnswer:
    """What one poll learnt: jobs squeue or sacct knows, and whether accounting answered."""

    jobs: dict[str, SlurmJobView]
    accounting: bool


def query_jobs(job_ids: Iterable[str],
               run: Callable[[list[str]], subprocess.CompletedProcess[str]] = _run) -> SlurmAnswer:
    """One squeue call for all ids (finished jobs included while slurmctld keeps them), then one
    sacct call for the ids it did not list. Raises BackendError when slurmctld cannot answer."""
    ids = sorted({i for i in job_ids if JOB_ID_RE.fullmatch(i)}, key=int)
    if not ids:
        return SlurmAnswer({}, accounting=False)
    listed = run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", SQUEUE_FORMAT])
    if listed.returncode != 0 and UNKNOWN_JOB_MESSAGE not in listed.stderr:
        message = (listed.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BackendError(f"squeue failed: {message}")
    jobs = parse_squeue(listed.stdout if listed.returncode == 0 else "", ids)
    forgotten = [i for i in ids if i not in jobs]
    if not forgotten:
        return SlurmAnswer(jobs, accounting=True)
    try:
        accounted = run(["sacct", "-n", "-P", "-X", "-j", ",".join(forgotten), "-o", SACCT_FIELDS])
    except BackendError:
        return SlurmAnswer(jobs, accounting=False)
    if accounted.returncode != 0:  # e.g. "Slurm accounting storage is disabled"
        return SlurmAnswer(jobs, accounting=False)
    jobs.update(parse_sacct(accounted.stdout, forgotten))
    return SlurmAnswer(jobs, accounting=True)


def restarts_started(job_dir: Path) -> int:
    """How often the job was started again: its script opens logs/restart-<SLURM_RESTART_COUNT>
    at every start, so the highest such directory counts them (squeue does not print it)."""
    highest = 0
    log_root = job_dir / "logs"
    if log_root.is_dir():
        for path in log_root.iterdir():
            found = re.fullmatch(r"restart-([0-9]{1,6})", path.name)
            if found and path.is_dir():
                highest = max(highest, int(found[1]))
    return highest


def exit_code_file(job_dir: Path) -> int | None:
    """The code the batch script wrote when its step ended; None when absent or damaged."""
    try:
        text = (job_dir / "exit_code").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if re.fullmatch(r"[0-9]{1,3}", text) else None


def job_status(job_id: str, job_dir: Path, answer: SlurmAnswer) -> JobStatus:
    """The neutral status of one job from one poll's answer and its job directory."""
    restarts = restarts_started(job_dir)
    script_code = exit_code_file(job_dir)
    view = answer.jobs.get(job_id)
    if view is None:
        if script_code is not None:
            return JobStatus(base.COMPLETED if script_code == 0 else base.FAILED, restarts,
                             "from the job's exit code file (no longer known to slurm)",
                             exit_code=script_code)
        # slurmctld keeps an ended job MinJobAge seconds (300 by default) and a live one always:
        # gone from squeue (and sacct) means it ended long ago without its script writing an exit
        # code, which a cancel, a time limit or a node failure all do.
        where = "squeue or sacct" if answer.accounting else "squeue (and no accounting)"
        return JobStatus(base.FAILED, restarts,
                         f"slurm job {job_id} is no longer known to {where} and left no exit "
                         "code: it was cancelled, hit its time limit or lost its node")
    state = SLURM_STATES[view.state]
    detail = f"{view.source} {view.state}"
    if view.state in HELD_STATES:
        detail += " (held: `scontrol release` lets it run again)"
    elif view.state in SHOWN_AS_DETAIL:
        detail = f"{view.source} {view.state} ({SHOWN_AS_DETAIL[view.state]})"
    if view.reason and view.state not in SHOWN_AS_DETAIL:
        detail += f" ({view.reason})"
    exit_code = script_code if script_code is not None else view.exit_code
    if state not in base.FINAL_STATES:
        exit_code = None
    return JobStatus(state, restarts, detail, exit_code=exit_code)


class BackoffPoll:
    """`finished()` for a follower: asks the scheduler at most every `interval` seconds, the
    interval doubling up to `longest` while the job runs; between asks the last answer stands."""

    def __init__(self, status: Callable[[], JobStatus], first: float = 2.0,
                 longest: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._status = status
        self._interval = first
        self._longest = longest
        self._clock = clock
        self._next = clock()
        self._finished = False
        self.asked = 0

    def finished(self) -> bool:
        if self._finished or self._clock() < self._next:
            return self._finished
        self.asked += 1
        self._finished = self._status().finished
        self._next = self._clock() + self._interval
        self._interval = min(self._interval * 2, self._longest)
        return self._finished
