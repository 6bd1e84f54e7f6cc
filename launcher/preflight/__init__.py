"""Preflight checks: what would make a job fail after it waited in the queue, found before.

One module per area (`data`, `job`, `slurm`, `k8s`). Each has a side that gathers facts
(filesystem, `scontrol`/`sinfo`/`sacctmgr`/`srun`, the Kubernetes API) into plain dataclasses and
a pure `decide(...) -> list[Check]` over those facts, so the decisions are tested with recorded
scheduler output. `run_checks` picks the areas a spec needs; `cluster=False` leaves out the
folder and cluster checks (what `submit --dry-run` runs).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launcher.spec import JobSpec

PASS = "pass"
FAIL = "fail"
# Could not be decided here (no accounting to ask, a path that only exists inside a pod):
# said plainly, never counted as passed or failed.
SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One check's outcome: `name` is `area.what`; `message` says what was found and, for a
    failure, what to do."""

    name: str
    status: str
    message: str

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def line(self) -> str:
        return f"{self.status.upper():4}  {self.name:<22} {self.message}"


def passed(name: str, message: str) -> Check:
    return Check(name, PASS, message)


def failed(name: str, message: str) -> Check:
    return Check(name, FAIL, message)


def skipped(name: str, message: str) -> Check:
    return Check(name, SKIP, message)


def run_checks(spec: JobSpec, opts: Any, cluster: bool = True, deep: bool = False,
               device_memory_gib: float | None = None) -> list[Check]:
    """Every check that applies to `spec` and its backend's parsed options `opts` (both
    validated and prepared by the backend, as `checked_spec` returns them).

    `cluster`: also look at the folders and ask the scheduler / API server; without it only
    the job's own checks run (`submit --dry-run`: a dry run prints what would be sent, from
    anywhere, and the folders may exist only on the cluster). `deep`: on Slurm, also run a
    tiny `srun` probe on the nodes to see that the data, output and job folders are shared.
    `device_memory_gib`: one card's memory, when the default for the device kind is wrong.
    """
    from launcher.preflight import data, job

    checks = job.decide(job.gather(spec, opts, device_memory_gib))
    if not cluster:
        return checks
    if spec.backend == "k8s":
        # Both are paths inside the pods (volumes); k8s.*_claim checks the claims behind them.
        checks += [skipped("data.layout", f"{spec.data_dir!r} is a path inside the pods: not "
                           "visible from here"),
                   skipped("data.output", f"{spec.output_dir!r} is a path inside the pods: not "
                           "visible from here")]
    else:
        checks += data.decide(data.gather(spec))
    if spec.backend == "slurm":
        from launcher.preflight import slurm

        checks += slurm.decide(spec, opts, slurm.gather(spec))
        if deep:
            checks += data.decide_shared(data.probe_shared(spec))
    elif spec.backend == "k8s":
        from launcher.preflight import k8s

        checks += k8s.decide(spec, opts, k8s.gather(spec, opts))
    return checks


def to_json(checks: list[Check]) -> str:
    return json.dumps({"ok": not any(c.failed for c in checks),
                       "checks": [asdict(c) for c in checks]}, indent=2)
