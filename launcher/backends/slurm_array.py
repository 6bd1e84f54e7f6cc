"""A sweep on Slurm: one job array, one `sbatch` call, one `squeue` call for every trial's state.

The array's script is the job's own sbatch script (templates/slurm/sbatch.sh.j2) with its array
block on: task i reads trial i's trainer arguments from the sweep folder's trials.json and keeps
its logs and exit code in `trial-<i>/`; `--requeue` and the checkpoint signal act on each task
alone (a task's SLURM_JOB_ID is its own), so a preempted trial resumes from its own output folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from launcher.backends import base
from launcher.backends.base import BackendError, JobStatus, RenderedJob
from launcher.backends.slurm import (
    CANCELLED_MARK,
    JOB_DIR_PLACEHOLDER,
    SlurmBackend,
    SlurmOptions,
    _first_line,
    _run,
)
from launcher.backends.slurm_state import (
    JOB_ID_RE,
    SLURM_STATES,
    SQUEUE_FORMAT,
    UNKNOWN_JOB_MESSAGE,
    parse_squeue,
)
from launcher.rank_logs import iter_rank_logs, job_messages
from launcher.spec import JobSpec
from launcher.sweep import TRIAL_DIR_PREFIX, TRIALS_FILE
from launcher.templating import render_template


def array_range(trials: int, max_parallel: int) -> str:
    """sbatch's `--array` value: every trial, at most `max_parallel` running at once."""
    return f"0-{trials - 1}%{max_parallel}"


def render_array(backend: SlurmBackend, spec: JobSpec, opts: SlurmOptions, trials_document: str,
                 trials: int, max_parallel: int) -> RenderedJob:
    """Pure: the array script, the trials file and the one sbatch command that submits both.

    `spec` is the sweep's (prepared) spec; each task appends its own `--output-dir` and `--set`
    values, so the script's shared arguments leave the output folder out."""
    context = backend.template_context(spec, opts)
    context["script_args"] = spec.replace(output_dir=None).script_args()
    script = render_template("slurm/sbatch.sh.j2", **context,
                             array=array_range(trials, max_parallel), trials_file=TRIALS_FILE)
    command = [
        "sbatch", "--parsable", f"--chdir={JOB_DIR_PLACEHOLDER}",
        f"--output={JOB_DIR_PLACEHOLDER}/slurm-%A_%a.out",
        *[str(a) for a in spec.scheduler_args],
        f"{JOB_DIR_PLACEHOLDER}/sbatch.sh",
    ]
    return RenderedJob(files={TRIALS_FILE: trials_document, "sbatch.sh": script},
                       submit_command=command)


def array_states(array_id: str, job_dir: Path, trials: int) -> dict[int, JobStatus]:
    """Every trial's state from ONE `squeue` call (each array element on its own line, finished
    ones too while slurmctld remembers them); a task squeue no longer lists is read from its
    trial folder's exit code file, and is UNKNOWN without one."""
    if not JOB_ID_RE.fullmatch(array_id):
        raise BackendError(f"slurm array id {array_id!r} of this sweep is not a job id")
    result = _run(["squeue", "--array", "--noheader", "--states=all", f"--jobs={array_id}",
                   f"--format={SQUEUE_FORMAT}"])
    listed: dict[int, JobStatus] = {}
    if result.returncode == 0:
        task_ids = {f"{array_id}_{index}": index for index in range(trials)}
        for task_id, view in parse_squeue(result.stdout, task_ids).items():
            listed[task_ids[task_id]] = JobStatus(
                SLURM_STATES[view.state],
                detail=f"slurm {view.state}" + (f" ({view.reason})" if view.reason else ""))
    elif UNKNOWN_JOB_MESSAGE not in result.stderr:
        raise BackendError(f"squeue failed: {_first_line(result.stderr)}")
    states = {}
    for index in range(trials):
        folder = job_dir / f"{TRIAL_DIR_PREFIX}{index}"
        code = _exit_code(folder / "exit_code")
        found = listed.get(index)
        if found is not None:
            found.exit_code = code if found.finished else None
            states[index] = found
        elif code != 0 and ((job_dir / CANCELLED_MARK).exists()
                            or (folder / CANCELLED_MARK).exists()):
            states[index] = JobStatus(base.CANCELLED, exit_code=code,
                                      detail="cancelled by the user")
        elif code is not None:
            states[index] = JobStatus(base.COMPLETED if code == 0 else base.FAILED,
                                      exit_code=code, detail="from the trial's exit code file")
        else:
            states[index] = JobStatus(base.UNKNOWN, detail=f"slurm {array_id}_{index} is not known")
    return states


def _exit_code(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() and len(text) < 6 else None


def cancel_array(array_id: str, job_dir: Path, index: int | None = None) -> None:
    """`scancel -- <array id>` (every trial, one call) or `scancel -- <array id>_<i>`; a mark
    in the folder keeps the state CANCELLED once slurmctld has forgotten the tasks."""
    target = array_id if index is None else f"{array_id}_{index}"
    folder = job_dir if index is None else job_dir / f"{TRIAL_DIR_PREFIX}{index}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CANCELLED_MARK).write_text("")
    result = _run(["scancel", "--", target])
    if result.returncode != 0:
        message = _first_line(result.stderr)
        if "already completing or completed" in message or "Invalid job id" in message:
            return
        raise BackendError(f"scancel failed: {message}")


def trial_logs(array_id: str, job_dir: Path, index: int, rank: int | None, follow: bool,
               finished: Callable[[], bool]) -> Iterator[str]:
    """One trial's rank logs, then its task's own output (`slurm-<array>_<i>.out`)."""
    trial_dir = job_dir / f"{TRIAL_DIR_PREFIX}{index}"
    yield from iter_rank_logs(trial_dir / "logs", rank, follow, finished)
    if rank is None:
        yield from job_messages(sorted(job_dir.glob(f"slurm-{array_id}_{index}.out")))
