"""Bounded submission of a sweep's trials, for backends without job arrays (local, Kubernetes).

`python -m launcher.sweep_runner SWEEP_DIR` runs detached on the submitting machine (started by
`rlaunch sweep`): it submits the trials in order, each exactly as rendered into its folder at
submit time, so that at most `max_parallel` of them are unfinished at once, and ends when every
trial is submitted and finished, or when the sweep is cancelled (its `cancelled` file, or TERM).
A trial that fails to submit gets a `submit_error` file and counts as failed.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from launcher.backends import get_backend
from launcher.backends.base import BackendError, RenderedJob
from launcher.store import DamagedRecord, JobStore
from launcher.sweep_jobs import (
    CANCELLED_FILE,
    SKIP_FILE,
    SUBMITTED_FILE,
    sweep_info,
    trial_dir,
    trial_record,
)

# Seconds between looks at the running trials (RLAUNCH_SWEEP_POLL overrides; the local
# backend's checks are file reads, Kubernetes' one GET per running trial).
DEFAULT_POLL = {"local": 1.0, "k8s": 10.0}


def run(sweep_dir: Path) -> int:
    record = JobStore._read(sweep_dir / "record.json")
    if isinstance(record, DamagedRecord):
        print(f"rlaunch sweep runner: {record.error}", file=sys.stderr)
        return 1
    info = sweep_info(record)
    backend = get_backend(record.backend)
    poll = float(os.environ.get("RLAUNCH_SWEEP_POLL") or DEFAULT_POLL.get(record.backend, 5.0))
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    waiting = [t.index for t in info.trials
               if not (trial_dir(record, t.index) / SUBMITTED_FILE).exists()]
    active: list[int] = [t.index for t in info.trials if t.index not in waiting]
    def unfinished(index: int) -> bool:
        try:
            return not backend.status(trial_record(record, index)).finished
        except BackendError as err:  # a cluster that does not answer for a while
            print(f"rlaunch sweep runner: trial {index}: {err}", file=sys.stderr, flush=True)
            return True

    while not stopping and not (sweep_dir / CANCELLED_FILE).exists():
        active = [i for i in active if unfinished(i)]
        while waiting and len(active) < info.max_parallel and not stopping:
            index = waiting.pop(0)
            folder = trial_dir(record, index)
            if (folder / SKIP_FILE).exists():
                continue
            trial = trial_record(record, index)
            rendered = RenderedJob(files={name: (folder / name).read_text(encoding="utf-8")
                                          for name in info.trial_files})
            try:
                backend_id = backend.submit(trial.job_spec, rendered, folder)
            except (BackendError, OSError) as err:
                (folder / "submit_error").write_text(str(err).splitlines()[0] + "\n")
                print(f"rlaunch sweep runner: trial {index}: {err}", file=sys.stderr, flush=True)
                continue
            (folder / SUBMITTED_FILE).write_text(backend_id + "\n")
            print(f"rlaunch sweep runner: started trial {index} ({backend_id})", file=sys.stderr,
                  flush=True)
            active.append(index)
        if not waiting and not active:
            print("rlaunch sweep runner: every trial finished", file=sys.stderr, flush=True)
            return 0
        time.sleep(poll)
    print("rlaunch sweep runner: cancelled; starting no more trials", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m launcher.sweep_runner SWEEP_DIR", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(run(Path(sys.argv[1])))
