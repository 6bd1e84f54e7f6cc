"""The local job store: one directory per job under the user's state dir (XDG).

Layout: `$RLAUNCH_STATE_DIR` or `$XDG_STATE_HOME/rlaunch` or `~/.local/state/rlaunch`, then
`jobs/<job id>/record.json` plus the rendered files of that job (sbatch script, rank table,
manifests) and whatever the backend keeps there (local: pid file and logs). Records are written
atomically so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from launcher.spec import JobSpec, SpecError


def state_dir() -> Path:
    """Root of the store (created on demand by writers, never by readers)."""
    explicit = os.environ.get("RLAUNCH_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "rlaunch"


class JobNotFoundError(LookupError):
    """No job with that id (or unique prefix) is in the store."""


class StoreError(RuntimeError):
    """A record in the store is damaged (unreadable, truncated, wrong shape); names the file."""


@dataclass
class DamagedRecord:
    """A job directory whose record.json cannot be used; `list` shows it instead of hiding it."""

    id: str
    path: Path
    reason: str

    @property
    def error(self) -> StoreError:
        return StoreError(f"job store record {self.path} is damaged ({self.reason}); "
                          f"move its folder away or delete it")


# record.json fields and their types (a record that does not match them is damaged).
RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "backend": (str,), "spec": (dict,), "job_dir": (str,),
    "output_dir": (str, type(None)), "backend_id": (str, type(None)), "created": (int, float),
    "files": (list,), "last_state": (str,), "extra": (dict,),
}


@dataclass
class JobRecord:
    """What the store remembers about one submitted job."""

    id: str
    backend: str
    spec: dict[str, Any]
    job_dir: str
    output_dir: str | None
    backend_id: str | None = None
    created: float = field(default_factory=time.time)
    files: list[str] = field(default_factory=list)
    # Last state seen by `status` (so `list` needs no scheduler round trip) and backend extras
    # (local: pid; k8s: namespace/context; slurm: nothing more).
    last_state: str = "SUBMITTED"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def job_spec(self) -> JobSpec:
        return JobSpec.from_dict(self.spec)

    @property
    def path(self) -> Path:
        return Path(self.job_dir)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def _not_json_number(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


class JobStore:
    """Create, save, find and list job records."""

    def __init__(self, root: Path | None = None):
        self.root = root or state_dir()
        self.jobs_dir = self.root / "jobs"

    def new_job_id(self, name: str) -> str:
        """`<name>-<6 hex>`: short enough to type, unique in this store."""
        while True:
            job_id = f"{name}-{os.urandom(3).hex()}"
            if not (self.jobs_dir / job_id).exists():
                return job_id

    def create(self, spec: JobSpec, job_id: str | None = None) -> JobRecord:
        """Reserve a directory for a new job and return its (unsaved) record."""
        job_id = job_id or self.new_job_id(spec.name)
        job_dir = self.jobs_dir / job_id
        job_dir.mkdir(parents=True, exist_ok=False)
        return JobRecord(
            id=job_id,
            backend=spec.backend,
            spec=spec.to_dict(),
            job_dir=str(job_dir),
            output_dir=spec.output_dir,
        )

    def discard(self, record: JobRecord) -> None:
        """Remove a job that failed to submit, and the store folders if that leaves them empty
        (a failed first submit leaves nothing behind)."""
        import shutil

        shutil.rmtree(record.job_dir, ignore_errors=True)
        for folder in (self.jobs_dir, self.root):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (other jobs) or already gone

    def save(self, record: JobRecord) -> None:
        path = Path(record.job_dir) / "record.json"
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(record.to_json(), encoding="utf-8")
        tmp.replace(path)

    def load(self, job_id: str) -> JobRecord:
        """Find a job by id or unique id prefix; StoreError when its record is damaged."""
        path = self.jobs_dir / job_id / "record.json"
        if "/" not in job_id and job_id not in (".", "..") and path.is_file():
            found = self._read(path)
            if isinstance(found, DamagedRecord):
                raise found.error
            return found
        matches = [r for r in self.entries() if r.id.startswith(job_id)] if job_id else []
        if len(matches) == 1:
            if isinstance(matches[0], DamagedRecord):
                raise matches[0].error
            return matches[0]
        if len(matches) > 1:
            raise JobNotFoundError(
                f"job {job_id!r} is ambiguous: {', '.join(r.id for r in matches[:5])}"
            )
        raise JobNotFoundError(f"job {job_id!r} is not in the job store ({self.jobs_dir})")

    def entries(self, limit: int | None = None) -> list[JobRecord | DamagedRecord]:
        """Every job directory with a record.json, newest first; damaged ones included."""
        if not self.jobs_dir.is_dir():
            return []
        found = [self._read(path) for path in self.jobs_dir.glob("*/record.json")]

        def newest_first(entry: JobRecord | DamagedRecord) -> float:
            if isinstance(entry, JobRecord):
                return -entry.created
            try:
                return -entry.path.stat().st_mtime
            except OSError:
                return 0.0

        found.sort(key=newest_first)
        return found[:limit] if limit else found

    def list(self, limit: int | None = None) -> list[JobRecord]:
        """Readable records, newest first (`entries` also returns the damaged ones)."""
        return [r for r in self.entries(limit) if isinstance(r, JobRecord)]

    @staticmethod
    def _read(path: Path) -> JobRecord | DamagedRecord:
        job_id = path.parent.name
        from resnest.contract import MAX_SMALL_FILE_BYTES, read_bounded

        try:
            text = read_bounded(path, "record", MAX_SMALL_FILE_BYTES).decode("utf-8")
        except UnicodeDecodeError:
            return DamagedRecord(job_id, path, "not UTF-8 text")
        except OSError as err:
            return DamagedRecord(job_id, path, f"unreadable: {str(err).partition(' ')[2]}")
        try:
            data = json.loads(text, parse_constant=_not_json_number)
        except ValueError:
            return DamagedRecord(job_id, path, "not valid JSON, truncated?")
        if not isinstance(data, dict):
            return DamagedRecord(job_id, path, "not a JSON object")
        missing = [k for k in ("id", "backend", "spec", "job_dir", "output_dir") if k not in data]
        unknown = sorted(set(data) - set(RECORD_TYPES), key=str)
        wrong = [k for k, kinds in RECORD_TYPES.items()
                 if k in data and (not isinstance(data[k], kinds) or isinstance(data[k], bool))]
        if missing or unknown or wrong:
            what = [f"missing {', '.join(missing)}"] if missing else []
            what += [f"unknown {', '.join(map(str, unknown))}"] if unknown else []
            what += [f"wrong type of {', '.join(wrong)}"] if wrong else []
            return DamagedRecord(job_id, path, "; ".join(what))
        if data["id"] != job_id:
            return DamagedRecord(job_id, path, f"its id {data['id']!r} is not its folder's name")
        if data["job_dir"] and Path(data["job_dir"]) != path.parent:
            # Cancel and status act on files in job_dir: only ever on this job's own folder.
            return DamagedRecord(job_id, path, f"its job_dir {data['job_dir']!r} is not its own "
                                 "folder")
        try:
            JobSpec.from_dict(data["spec"])
        except SpecError as err:
            return DamagedRecord(job_id, path, f"its job spec: {err.problems[0]}")
        return JobRecord(**data)
