"""Device-hours of jobs and sweeps, from what each backend's own accounting says.

- Slurm: `sacct --duplicates -X` (every requeued attempt and every array task is its own row):
  ElapsedRaw seconds x the allocated TRES (`cpu=`, `gres/gpu=`, `gres/<ascend gres>=`).
- Kubernetes: each pod's start (status.startTime) to its containers' finish (or now while
  running) x the devices its containers request. Pods deleted by a controller's restart (and
  their time) are no longer visible; the figure is then a lower bound and says so.
- Local: the wall time run.sh recorded in the job folder (`started_at`, `finished_at`) x the
  CPU ranks.

Parsing is pure (`parse_sacct`, `pod_attempts`); `measure(record)` does the asking.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launcher.store import JobRecord

KINDS: tuple[str, ...] = ("gpu", "npu", "cpu")
SACCT_FIELDS = ("JobID", "State", "Start", "End", "ElapsedRaw", "AllocTRES")
SACCT_TIMEOUT_SECONDS = 60


@dataclass
class Attempt:
    """One run: a Slurm attempt or array task, a pod, a local run."""

    label: str
    state: str
    seconds: float
    devices: dict[str, float]  # kind -> how many were allocated
    trial: int | None = None


@dataclass
class JobUsage:
    job_id: str
    backend: str
    source: str  # what the figures were read from
    attempts: list[Attempt] = field(default_factory=list)
    note: str = ""  # why the figure may be short or missing

    def hours(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for attempt in self.attempts:
            for kind, count in attempt.devices.items():
                out[kind] = out.get(kind, 0.0) + attempt.seconds * count / 3600
        return out

    def cost(self, prices: dict[str, float]) -> float:
        return sum(hours * prices.get(kind, 0.0) for kind, hours in self.hours().items())

    def to_dict(self, prices: dict[str, float] | None = None) -> dict[str, Any]:
        data = asdict(self)
        data["device_hours"] = {k: round(v, 6) for k, v in self.hours().items()}
        if prices:
            data["cost"] = round(self.cost(prices), 6)
        return data


class UsageError(ValueError):
    """Bad `--price` / `--since` input (a usage error: exit 2)."""


def parse_prices(values: tuple[str, ...]) -> dict[str, float]:
    prices: dict[str, float] = {}
    for item in values:
        kind, sep, text = item.partition("=")
        if not sep or kind not in KINDS:
            raise UsageError(f"--price {item!r} must be KIND=PRICE with KIND one of "
                             f"{', '.join(KINDS)} (price per device-hour)")
        try:
            price = float(text)
        except ValueError:
            price = -1.0
        if not price >= 0 or price == float("inf"):
            raise UsageError(f"--price {item!r}: the price must be a number >= 0")
        prices[kind] = price
    return prices


def parse_since(text: str) -> float:
    """`2026-12-01`, `2026-12-01T08:00` (local time) or `3d`/`12h` ago -> epoch seconds."""
    import datetime

    text = text.strip()
    if text[:-1].isdigit() and text[-1:] in ("d", "h"):
        return time.time() - int(text[:-1]) * (86400 if text[-1] == "d" else 3600)
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(f"--since {text!r} is not a date (2026-12-01, 2026-12-01T08:00) or an "
                         "age (3d, 12h)") from None


# ---- Slurm ------------------------------------------------------------------------------------


def tres_devices(tres: str, npu_gres: str = "npu") -> dict[str, float]:
    """`billing=16,cpu=16,gres/gpu:a100=8,gres/gpu=8,mem=64G,node=1` -> {"cpu": 16, "gpu": 8}.

    sacct lists a typed gres (`gres/gpu:a100=8`) beside its total (`gres/gpu=8`): only the total
    counts."""
    out: dict[str, float] = {}
    for item in tres.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            continue
        try:
            count = float(value)
        except ValueError:
            continue
        kind = {"cpu": "cpu", "gres/gpu": "gpu", f"gres/{npu_gres}": "npu"}.get(key)
        if kind:
            out[kind] = count
    return out


def parse_sacct(text: str, npu_gres: str = "npu") -> list[Attempt]:
    """`sacct -n -P -X --duplicates -o JobID,State,Start,End,ElapsedRaw,AllocTRES` -> attempts.

    An array task's JobID is `<array>_<index>`: its index is the sweep trial. Lines that do not
    have the six fields or a numeric ElapsedRaw are ignored (sacct's output is untrusted)."""
    attempts: list[Attempt] = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != len(SACCT_FIELDS) or not parts[4].isdigit():
            continue
        job, state, _start, _end, elapsed, tres = parts
        _, under, index = job.partition("_")
        trial = int(index) if under and index.isdigit() else None
        attempts.append(Attempt(job, state.split()[0] if state else "?", float(elapsed),
                                tres_devices(tres, npu_gres), trial))
    return attempts


def sacct_argv(job_id: str) -> list[str]:
    return ["sacct", "-n", "-P", "-X", "--duplicates", "-j", job_id, "-o", ",".join(SACCT_FIELDS)]


def slurm_usage(record: JobRecord) -> JobUsage:
    usage = JobUsage(record.id, "slurm", "sacct --duplicates")
    if not record.backend_id:
        usage.note = "never submitted"
        return usage
    try:
        done = subprocess.run(sacct_argv(record.backend_id), capture_output=True, text=True,
                              check=False, timeout=SACCT_TIMEOUT_SECONDS)
    except (FileNotFoundError, subprocess.TimeoutExpired) as err:
        usage.note = f"sacct could not be run: {err}"
        return usage
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        usage.note = f"sacct failed: {lines[-1] if lines else done.returncode}"
        return usage
    gres = str(record.spec.get("backend_options", {}).get("ascend_gres", "npu"))
    usage.attempts = parse_sacct(done.stdout, gres)
    if not usage.attempts:
        usage.note = "sacct knows no allocation of this job (yet)"
    return usage


# ---- Kubernetes -------------------------------------------------------------------------------


def pod_attempts(pods: list[dict[str, Any]], now: float, trial_of: Any = None) -> list[Attempt]:
    """Pods (plain API JSON) -> attempts: start to the last container's finish, or `now`."""
    import datetime

    def stamp(text: Any) -> float | None:
        try:
            return datetime.datetime.fromisoformat(str(text)).timestamp()
        except ValueError:
            return None

    names = {"nvidia.com/gpu": "gpu", "huawei.com/Ascend910": "npu", "cpu": "cpu"}
    attempts = []
    for pod in pods:
        meta, spec, status = (pod.get(k) or {} for k in ("metadata", "spec", "status"))
        start = stamp(status.get("startTime")) if status.get("startTime") else None
        if start is None:
            continue  # never started: no time on a node
        finishes = [stamp(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
                    for cs in status.get("containerStatuses") or []]
        done = finishes and all(f is not None for f in finishes)
        end = max(f for f in finishes if f is not None) if done else now
        devices: dict[str, float] = {}
        for container in spec.get("containers") or []:
            resources = container.get("resources") or {}
            asked = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
            for resource, kind in names.items():
                if kind == "cpu" and resource in asked:
                    from launcher.preflight.k8s import quantity

                    devices[kind] = devices.get(kind, 0.0) + quantity(asked[resource])
                elif resource in asked:
                    devices[kind] = devices.get(kind, 0.0) + float(str(asked[resource]))
        name = str(meta.get("name", "?"))
        attempts.append(Attempt(name, str(status.get("phase", "?")), max(0.0, end - start),
                                devices, trial_of(meta) if trial_of else None))
    return attempts


def k8s_usage(record: JobRecord) -> JobUsage:
    import json

    from launcher.backends.base import BackendError
    from launcher.backends.k8s_api import api_call
    from launcher.backends.k8s_names import JOB_LABEL

    usage = JobUsage(record.id, "k8s", "pod start/finish times",
                     note="pods removed by a restart or after the TTL are not counted")
    from launcher.backends.k8s import KubernetesBackend, split_backend_id

    sweep = "sweep" in record.extra
    # A sweep's backend id names its runner; its trials' objects are named after the sweep id.
    namespace, name = (None, record.id) if sweep else \
        split_backend_id(record.backend_id or record.id)
    try:
        backend = KubernetesBackend()
        cluster = backend._cluster(backend.options_of(record.job_spec), namespace)
        with api_call(f"listing pods of job {name}", cluster.host):
            response = cluster.core.list_namespaced_pod(
                cluster.namespace, label_selector=JOB_LABEL, _preload_content=False,
                _request_timeout=(10, 60))
        items = json.loads(response.data).get("items") or []
    except (BackendError, ValueError) as err:
        usage.note = f"the pods could not be listed: {err}"
        return usage
    prefix = f"{name}-t"

    def job_of(pod: dict[str, Any]) -> str:
        return str(((pod.get("metadata") or {}).get("labels") or {}).get(JOB_LABEL, ""))

    def trial_of(meta: dict[str, Any]) -> int | None:
        suffix = str((meta.get("labels") or {}).get(JOB_LABEL, ""))[len(prefix):]
        return int(suffix) if sweep and suffix.isdigit() else None

    mine = [p for p in items if isinstance(p, dict) and (
        job_of(p) == name or (sweep and job_of(p).startswith(prefix)
                              and job_of(p)[len(prefix):].isdigit()))]
    usage.attempts = pod_attempts(mine, time.time(), trial_of)
    if record.spec.get("device_kind") == "cpu" and any(
            "cpu" not in a.devices for a in usage.attempts):
        usage.note += "; pods that request no CPU count no cpu-hours (--opt cpu=N requests N)"
    return usage


# ---- local ------------------------------------------------------------------------------------


def _stamp(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


def local_usage(record: JobRecord) -> JobUsage:
    usage = JobUsage(record.id, "local", "wall time x CPU ranks (started_at/finished_at)")
    cpus = float(record.spec.get("devices_per_node") or 1)
    job_dir = Path(record.job_dir)
    runs = [(job_dir, None)]
    if "sweep" in record.extra:
        runs = [(d, int(d.name.rpartition("-")[2])) for d in sorted(job_dir.glob("trial-*"))
                if d.name.rpartition("-")[2].isdigit()]
    for folder, trial in runs:
        start = _stamp(folder / "started_at")
        if start is None:
            continue
        end = _stamp(folder / "finished_at")
        state = "FINISHED" if end is not None else "RUNNING"
        seconds = max(0.0, (end if end is not None else time.time()) - start)
        usage.attempts.append(Attempt(folder.name if trial is not None else "local", state,
                                      seconds, {"cpu": cpus}, trial))
    if not usage.attempts:
        usage.note = "no start time recorded (not started, or submitted before rlaunch " \
                     "recorded one)"
    return usage


def measure(record: JobRecord) -> JobUsage:
    if record.backend == "slurm":
        return slurm_usage(record)
    if record.backend == "k8s":
        return k8s_usage(record)
    return local_usage(record)
