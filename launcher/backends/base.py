"""The one small interface every backend implements.

`render(spec)` is pure: it turns a validated `JobSpec` into the files a submission needs and the
command that would submit them, touching nothing (this is `--dry-run`). `submit` performs the side
effect and returns the backend's own job id. `status`, `logs`, `cancel` and `fetch_outputs` take
the `JobRecord` the job store kept, so they work from a later process.
"""

from __future__ import annotations

import abc
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from launcher.options import LocalOptions

if TYPE_CHECKING:
    from launcher.spec import JobSpec
    from launcher.store import JobRecord

# Scheduler-neutral job states.
PENDING = "PENDING"
RUNNING = "RUNNING"
REQUEUED = "REQUEUED"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
UNKNOWN = "UNKNOWN"
FINAL_STATES: frozenset[str] = frozenset({COMPLETED, FAILED, CANCELLED})


def signal_window_problems(spec: JobSpec, option: str, seconds: int, told: str) -> list[str]:
    """A `--time` no longer than the checkpoint signal window `option` (`seconds`): the job would
    be told to checkpoint before it starts."""
    from launcher.spec import time_limit_seconds

    limit = time_limit_seconds(spec.time_limit)
    if limit is None or limit > seconds:
        return []
    return [(f"{spec.label('time_limit')} {spec.time_limit} ({limit} s) is not longer than "
             f"{spec.option_label(option)} {seconds}: {told} before it starts; give a longer "
             f"time or a smaller {option}")]


class BackendError(RuntimeError):
    """A backend operation failed; the message is one line meant for the user."""


@dataclass
class RenderedJob:
    """What a submission consists of: files by name, plus the submitting command.

    `files` maps a file name (relative to the job's directory) to its text; `submit_command` is
    the argv that would submit them (for display; `{job_dir}` stands for the job directory).
    `stdout_document` is what `--dry-run` prints when the backend has a natural single stream
    (e.g. a multi-document YAML for `kubectl apply -f -`); otherwise all files are shown.
    """

    files: dict[str, str]
    submit_command: list[str] = field(default_factory=list)
    stdout_document: str | None = None

    def dry_run_text(self) -> str:
        """Human-readable dry run: every file with a header, then the command."""
        if self.stdout_document is not None:
            return self.stdout_document
        import shlex

        parts = [f"# ---- {name} ----\n{text.rstrip()}\n" for name, text in self.files.items()]
        if self.submit_command:
            parts.append(f"# ---- submit ----\n{shlex.join(self.submit_command)}\n")
        return "\n".join(parts)

    def write(self, job_dir: Path) -> list[Path]:
        """Write every file under `job_dir` (scripts executable), returning the paths."""
        written = []
        for name, text in self.files.items():
            path = job_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if name.endswith(".sh"):
                path.chmod(0o755)
            written.append(path)
        return written


@dataclass
class JobStatus:
    """A backend's view of one job, in scheduler-neutral states (see FINAL_STATES)."""

    state: str
    restarts: int = 0
    detail: str = ""
    exit_code: int | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


class Backend(abc.ABC):
    """A place jobs run. One module per backend; see `launcher.backends.BACKENDS`."""

    name: ClassVar[str]
    # The dataclass declaring this backend's `--opt` options (launcher/options.py).
    options_type: ClassVar[type] = LocalOptions
    # JobSpec fields this backend ignores: setting one to anything but its default is an error
    # naming the backend, not silence. `unused_reasons` may say why (shown in parentheses).
    unused_fields: ClassVar[tuple[str, ...]] = ()
    unused_reasons: ClassVar[dict[str, str]] = {}

    def parse_options(self, spec: JobSpec) -> tuple[Any, list[str]]:
        """`spec.backend_options` as this backend's typed options, and every problem with them."""
        from launcher.options import parse_options

        return parse_options(self.options_type, spec, self.name)

    def options_of(self, spec: JobSpec) -> Any:
        """The typed options of a spec that was checked at submit (a stored job's): a problem
        now means the record was changed since, which is a `BackendError`."""
        opts, problems = self.parse_options(spec)
        if problems:
            raise BackendError(f"the job's backend options are not valid: {problems[0]}")
        return opts

    def problems(self, spec: JobSpec, opts: Any) -> list[str]:
        """Backend-specific validation, one line per problem (the spec and the options' own
        declarations are checked first)."""
        return self.unused_field_problems(spec)

    def unused_field_problems(self, spec: JobSpec) -> list[str]:
        """One line per field in `unused_fields` that the spec sets (non-default value)."""
        from launcher.spec import cli_fields, field_defaults

        defaults, flags = field_defaults(), cli_fields()
        out = []
        for name in self.unused_fields:
            if getattr(spec, name) == defaults[name]:
                continue
            label = spec.label(name) if name in spec.origin else (
                flags[name].flag if name in flags else name)
            reason = self.unused_reasons.get(name)
            out.append(f"{label} is not used by the {self.name} backend"
                       + (f" ({reason})" if reason else ""))
        return out

    def prepare(self, spec: JobSpec, opts: Any) -> tuple[JobSpec, Any]:
        """Fill in machine-dependent defaults (paths, ports) before `render`. Default: none."""
        return spec, opts

    @abc.abstractmethod
    def render(self, spec: JobSpec, opts: Any) -> RenderedJob:
        """Pure: the files and command that would submit `spec`. No side effects."""

    @abc.abstractmethod
    def submit(self, spec: JobSpec, rendered: RenderedJob, job_dir: Path) -> str:
        """Submit (files already written to `job_dir`); return the backend's job id."""

    @abc.abstractmethod
    def status(self, record: JobRecord) -> JobStatus:
        """Current state of the job."""

    def statuses(self, records: list[JobRecord]) -> dict[str, JobStatus]:
        """The states of several jobs by record id; backends that can ask for all of them at
        once (one scheduler call) override this."""
        return {record.id: self.status(record) for record in records}

    @abc.abstractmethod
    def logs(self, record: JobRecord, rank: int | None = None, follow: bool = False) -> Iterator[str]:
        """Log lines (without trailing newline), all ranks prefixed `[rank R]` or one rank.

        With `follow`, keep yielding until the job reaches a final state.
        """

    @abc.abstractmethod
    def cancel(self, record: JobRecord) -> None:
        """Stop the job; a job already finished is not an error."""

    def fetch_outputs(self, record: JobRecord, dest: Path) -> Path:
        """Bring the job's output dir (checkpoints, metrics, eval result) to this machine.

        Returns a local directory holding them. The default suits a shared filesystem: the output
        dir is already local, so nothing is copied. Remote backends (k8s) override this.
        """
        out = Path(record.output_dir or "")
        if not out.is_dir():
            raise BackendError(f"output dir {str(out)!r} of job {record.id} does not exist here")
        return out

    def fetch_logs(self, record: JobRecord, dest: Path) -> list[Path]:
        """Copy per-rank log files into `dest`; default: write the merged log stream."""
        dest.mkdir(parents=True, exist_ok=True)
        merged = dest / "job.log"
        with merged.open("w", encoding="utf-8") as fh:
            for line in self.logs(record):
                fh.write(line + "\n")
        return [merged]


def read_exit_code(job_dir: Path) -> int | None:
    """The job script's `exit_code` file: None when it is not written yet; BackendError naming
    the file when it is damaged (not 0-255 in ASCII digits, a FIFO, too large)."""
    from resnest.contract import integer_from_text, read_bounded

    path = job_dir / "exit_code"
    if not path.exists() and not path.is_symlink():
        return None
    try:
        text = read_bounded(path, "exit code file", 64).decode("ascii").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise BackendError(f"exit code file {str(path)!r} is damaged: {err}") from None
    code = integer_from_text(text)
    if code is None or not 0 <= code <= 255:
        raise BackendError(f"exit code file {str(path)!r} is damaged: {text[:20]!r} is not an "
                           "exit code 0-255")
    return code


def with_paths_of_this_machine(spec: JobSpec) -> JobSpec:
    """For backends that share this machine's filesystem (local, slurm): absolute data/output/
    config paths, this checkout as code dir, this interpreter (its bin/ holds msrun)."""
    import importlib.util
    import os
    import sys

    def absolute(path: str | None) -> str | None:
        return os.path.abspath(os.path.expanduser(path)) if path else path

    code_dir = spec.code_dir
    if code_dir is None:
        found = importlib.util.find_spec("resnest")
        if found is None or not found.submodule_search_locations:
            raise BackendError("the resnest package is not importable: cannot locate train.py")
        code_dir = str(Path(next(iter(found.submodule_search_locations))).parent)
    return spec.replace(
        data_dir=absolute(spec.data_dir),
        output_dir=absolute(spec.output_dir),
        config=absolute(spec.config),
        code_dir=code_dir,
        python=spec.python or sys.executable,
    )


def copy_job_dir_logs(record: JobRecord, dest: Path) -> list[Path]:
    """Per-rank logs (`logs/restart-N/*.log`) and scheduler/launcher output of a job dir."""
    job_dir = Path(record.job_dir)
    copied = copy_tree_files(job_dir / "logs", dest, "*.log")
    for pattern in ("slurm-*.out", "launcher.log"):
        for path in sorted(job_dir.glob(pattern)):
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / path.name)
            copied.append(dest / path.name)
    return copied


def copy_tree_files(src: Path, dest: Path, pattern: str = "*") -> list[Path]:
    """Copy files matching `pattern` (recursively) from `src` into `dest`, keeping layout."""
    copied = []
    for path in sorted(src.rglob(pattern)):
        if path.is_file():
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            copied.append(target)
    return copied
