"""Operations on a submitted sweep: its trials' records, states, logs and cancellation.

A sweep is one record in the job store (`extra["sweep"]` lists its trials); its trials are not
store entries of their own (a hundred trials do not flood `rlaunch list`). Each trial has a
folder `trial-<i>/` in the sweep's job folder. Two modes:

- `array` (Slurm): one job array; the states of all trials come from one `squeue` call.
- `bounded` (local, Kubernetes): each trial is a normal job of its backend, rendered into its
  folder at submit time; `launcher.sweep_runner`, a detached process on this machine, submits
  them so that at most `max_parallel` run at once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from launcher.backends import base
from launcher.backends.base import JobStatus
from launcher.store import JobRecord, StoreError
from launcher.sweep import TRIAL_DIR_PREFIX, Trial, trial_job_id, trial_spec

if TYPE_CHECKING:
    from launcher.backends.base import Backend

MODES = ("array", "bounded")
SUBMITTED_FILE = "submitted"  # bounded mode: the trial's backend id, once the runner started it
SKIP_FILE = "skip"  # bounded mode: cancelled before it started; the runner passes over it
CANCELLED_FILE = "cancelled"  # in the sweep folder: the whole sweep was cancelled
RUNNER_PID_FILE = "runner.pid"


@dataclass(frozen=True)
class SweepInfo:
    """The checked `extra["sweep"]` of a sweep record (it is read back: untrusted)."""

    parameters: list[str]
    trials: list[Trial]
    max_parallel: int
    mode: str
    trial_files: list[str]


def is_sweep(record: JobRecord) -> bool:
    return "sweep" in record.extra


def sweep_info(record: JobRecord) -> SweepInfo:
    """The sweep part of a record; StoreError naming the file when it is damaged."""
    data = record.extra.get("sweep")

    def damaged(what: str) -> StoreError:
        return StoreError(f"job store record {record.path / 'record.json'} is damaged "
                          f"(its sweep {what}); move its folder away or delete it")

    if not isinstance(data, dict):
        raise damaged("is not an object")
    params, trials = data.get("parameters"), data.get("trials")
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        raise damaged("parameters are not a list of names")
    if not isinstance(trials, list) or not trials:
        raise damaged("has no list of trials")
    parsed = []
    for position, trial in enumerate(trials):
        values = trial.get("values") if isinstance(trial, dict) else None
        if (not isinstance(values, dict) or trial.get("index") != position
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())):
            raise damaged(f"trial {position} is not an index with text values")
        parsed.append(Trial(position, dict(values)))
    parallel, mode = data.get("max_parallel"), data.get("mode")
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        raise damaged("max_parallel is not a positive integer")
    if mode not in MODES:
        raise damaged(f"mode {mode!r} is not one of {', '.join(MODES)}")
    files = data.get("trial_files", [])
    if not isinstance(files, list) or not all(
            isinstance(f, str) and "/" not in f and f not in ("", ".", "..") for f in files):
        raise damaged("trial_files are not plain file names")
    return SweepInfo(params, parsed, parallel, mode, files)


def trial_dir(record: JobRecord, index: int) -> Path:
    return record.path / f"{TRIAL_DIR_PREFIX}{index}"


def check_trial(record: JobRecord, index: int) -> Trial:
    """Trial `index` of the sweep; TrialError (a usage error) when it has none."""
    trials = sweep_info(record).trials
    if not 0 <= index < len(trials):
        raise TrialError(f"sweep {record.id} has {len(trials)} trials (0-{len(trials) - 1}); "
                         f"there is no trial {index}")
    return trials[index]


class TrialError(LookupError):
    """A `--trial` the sweep does not have, or `--trial` on a job that is not a sweep."""


def trial_record(record: JobRecord, index: int) -> JobRecord:
    """A job record for one trial (bounded mode: a normal job of the sweep's backend)."""
    trial = check_trial(record, index)
    spec = trial_spec(record.job_spec, trial, record.id)
    folder = trial_dir(record, index)
    submitted = _read_small(folder / SUBMITTED_FILE)
    return JobRecord(id=trial_job_id(record.id, index), backend=record.backend,
                     spec=spec.to_dict(), job_dir=str(folder), output_dir=spec.output_dir,
                     backend_id=submitted, created=record.created)


def _read_small(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) < 512 and text.isprintable() else None


def trial_states(record: JobRecord, backend: Backend) -> dict[int, JobStatus]:
    """Every trial's state: Slurm from one squeue call, Kubernetes from one list call, local
    from each trial's own files."""
    info = sweep_info(record)
    if info.mode == "array":
        from launcher.backends.slurm_array import array_states

        return array_states(record.backend_id or "", record.path, len(info.trials))
    cancelled = (record.path / CANCELLED_FILE).exists()
    states: dict[int, JobStatus] = {}
    started: list[int] = []
    for trial in info.trials:
        folder = trial_dir(record, trial.index)
        error = _read_small(folder / "submit_error")
        if error is not None:
            states[trial.index] = JobStatus(base.FAILED, detail=f"not submitted: {error}")
        elif (folder / SUBMITTED_FILE).exists():
            started.append(trial.index)
        elif cancelled or (folder / SKIP_FILE).exists():
            states[trial.index] = JobStatus(base.CANCELLED, detail="cancelled before it started")
        elif runner_alive(record):
            states[trial.index] = JobStatus(
                base.PENDING, detail=f"waiting for a slot (at most {info.max_parallel} at once)")
        else:
            states[trial.index] = JobStatus(
                base.FAILED, detail="never submitted: the sweep's runner is not running "
                "(see runner.log in the sweep's folder)")
    records = {i: trial_record(record, i) for i in started}
    many = getattr(backend, "many_states", None)
    if callable(many) and records:
        found = many(list(records.values()))  # one list call (Kubernetes)
        states.update({i: found[r.id] for i, r in records.items()})
    else:
        states.update({i: backend.status(r) for i, r in records.items()})
    for index in started:
        # A cancelled trial's objects are deleted (Kubernetes): gone is what cancelling means.
        if states[index].state == base.UNKNOWN and (
                cancelled or (trial_dir(record, index) / SKIP_FILE).exists()):
            states[index] = JobStatus(base.CANCELLED, detail="cancelled: " + states[index].detail)
    return dict(sorted(states.items()))


def cancel_sweep(record: JobRecord, backend: Backend, index: int | None = None) -> None:
    """Cancel every trial (Slurm: one scancel) or trial `index`."""
    info = sweep_info(record)
    if index is not None:
        check_trial(record, index)
    if info.mode == "array":
        from launcher.backends.slurm_array import cancel_array

        cancel_array(record.backend_id or "", record.path, index)
        return
    if index is not None:
        (trial_dir(record, index) / SKIP_FILE).write_text("")
        targets = [index]
    else:
        (record.path / CANCELLED_FILE).write_text("")
        stop_runner(record)
        targets = [t.index for t in info.trials]
    started = [i for i in targets if (trial_dir(record, i) / SUBMITTED_FILE).exists()]
    if not started:
        return
    # Finished trials keep their objects (Kubernetes: a deleted JobSet takes its logs along).
    states = trial_states(record, backend)
    started = [trial_record(record, i) for i in started if not states[i].finished]
    if not started:
        return
    # Every trial at once: each gets its stop signal, then the grace periods run side by side.
    with ThreadPoolExecutor(max_workers=min(16, len(started))) as pool:
        for future in [pool.submit(backend.cancel, r) for r in started]:
            future.result()


def _runner_process(record: JobRecord) -> tuple[int, int | None] | None:
    """(pid, start time) of the sweep's runner from its pid file, None without one."""
    parts = (_read_small(record.path / RUNNER_PID_FILE) or "").split()
    if not parts or not parts[0].isdigit():
        return None
    return int(parts[0]), (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None)


def runner_alive(record: JobRecord) -> bool:
    from launcher.backends.local import process_alive

    found = _runner_process(record)
    return found is not None and process_alive(*found)


def stop_runner(record: JobRecord, timeout: float = 10.0) -> None:
    """TERM the sweep's runner (it starts nothing after that) and wait for it to end."""
    from launcher.backends.local import process_alive

    found = _runner_process(record)
    if found is None or not process_alive(*found):
        return
    pid, start = found
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process_alive(pid, start):
        time.sleep(0.1)


def trial_logs(record: JobRecord, backend: Backend, index: int, rank: int | None = None,
               follow: bool = False) -> Iterator[str]:
    """One trial's logs, like `rlaunch logs` of a single job."""
    info = sweep_info(record)
    check_trial(record, index)
    if info.mode == "array":
        from launcher.backends.slurm_array import trial_logs as array_trial_logs

        def finished() -> bool:
            return trial_states(record, backend)[index].finished

        yield from array_trial_logs(record.backend_id or "", record.path, index, rank, follow,
                                    finished)
        return
    if not (trial_dir(record, index) / SUBMITTED_FILE).exists():
        yield f"[sweep] trial {index} has not started yet"
        return
    yield from backend.logs(trial_record(record, index), rank=rank, follow=follow)


def sweep_state(states: dict[int, JobStatus]) -> str:
    """One word for the whole sweep: RUNNING while any trial runs or waits, then COMPLETED when
    all completed, else FAILED / CANCELLED."""
    values = [s.state for s in states.values()]
    if any(v not in base.FINAL_STATES for v in values):
        return base.RUNNING if any(v == base.RUNNING for v in values) else base.PENDING
    for final in (base.FAILED, base.CANCELLED):
        if final in values:
            return final
    return base.COMPLETED

