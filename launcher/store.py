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

from launcher.spec import JobSpec


def state_dir() -> Path:
    """Root of the store (created on demand by writers, never by readers)."""
    explicit = os.environ.get("RLAUNCH_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "rlaunch"


class JobNotFoundError(LookupError):
    """No job with that id (or unique prefix) is in the store."""


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

    def save(self, record: JobRecord) -> None:
        path = Path(record.job_dir) / "record.json"
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(record.to_json(), encoding="utf-8")
        tmp.replace(path)

    def load(self, job_id: str) -> JobRecord:
        """Find a job by id or unique id prefix."""
        path = self.jobs_dir / job_id / "record.json"
        if "/" not in job_id and job_id not in (".", "..") and path.is_file():
            return self._read(path)
        matches = [r for r in self.list() if r.id.startswith(job_id)] if job_id else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise JobNotFoundError(
                f"job {job_id!r} is ambiguous: {', '.join(r.id for r in matches[:5])}"
            )
        raise JobNotFoundError(f"job {job_id!r} is not in the job store ({self.jobs_dir})")

    def list(self, limit: int | None = None) -> list[JobRecord]:
        """Records, newest first."""
        if not self.jobs_dir.is_dir():
            return []
        records = []
        for path in self.jobs_dir.glob("*/record.json"):
            try:
                records.append(self._read(path))
            except (OSError, ValueError, TypeError):
                continue  # a job being created right now, or a damaged record: skip it
        records.sort(key=lambda r: r.created, reverse=True)
        return records[:limit] if limit else records

    @staticmethod
    def _read(path: Path) -> JobRecord:
        return JobRecord(**json.loads(path.read_text(encoding="utf-8")))
