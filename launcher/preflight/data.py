"""Data and output folders: the layout training reads, an output folder it can write, and (on
Slurm, `--deep`) that the compute nodes see the same folders as this machine.

The layout is the contract's: DATA/train/<class>/<image> and DATA/val/<class>/<image>
(`resnest.contract.DATA_SPLITS`, `IMAGE_SUFFIXES`), classes in sorted folder order.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from launcher.preflight import Check, failed, passed, skipped
from resnest.contract import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from launcher.spec import JobSpec

# Splits each task reads (export reads no data).
SPLITS_OF_TASK: dict[str, tuple[str, ...]] = {"train": ("train", "val"), "eval": ("val",),
                                              "export": ()}
# Slurm: how long the probe may wait for nodes (`srun --immediate`) and run.
PROBE_WAIT_SECONDS = 60
PROBE_TIMEOUT_SECONDS = 180


@dataclass
class SplitFacts:
    """One split folder: its class folders and which of them hold no image."""

    exists: bool
    classes: list[str] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)
    loose_images: int = 0  # images directly in the split folder (not in a class folder)


@dataclass
class DataFacts:
    task: str
    data_dir: str | None
    data_is_dir: bool
    splits: dict[str, SplitFacts]
    output_dir: str | None
    # None: writable; else why not.
    output_problem: str | None
    # The classes the training config expects (None: could not be read).
    num_classes: int | None


def _has_image(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES
                       for e in entries)
    except OSError:
        return False


def gather_split(split_dir: Path) -> SplitFacts:
    if not split_dir.is_dir():
        return SplitFacts(exists=False)
    classes, loose = [], 0
    with os.scandir(split_dir) as entries:
        for entry in entries:
            if entry.is_dir():
                classes.append(entry.name)
            elif entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                loose += 1
    classes.sort()
    empty = [c for c in classes if not _has_image(split_dir / c)]
    return SplitFacts(True, classes, empty, loose)


def output_problem(output_dir: str) -> str | None:
    """Why the output folder cannot be written (None: it can). A missing folder is fine when its
    nearest existing parent is writable (the trainer creates it). Writes and removes a probe
    file rather than trusting permission bits (root, read-only mounts, ACLs)."""
    path = Path(output_dir)
    while not path.exists():
        if path.parent == path:
            return "no parent folder exists"
        path = path.parent
    if not path.is_dir():
        return f"{str(path)!r} is not a folder"
    probe = path / f".rlaunch-check-{secrets.token_hex(4)}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        return f"cannot write in {str(path)!r}: {err.strerror or err}"
    return None


def training_num_classes(spec: JobSpec) -> int | None:
    """num_classes of the config the job loads (its file if readable here, plus --set)."""
    from resnest.config import ConfigError, load_config, parse_set_overrides

    local = spec.config if spec.config and Path(spec.config).is_file() else None
    try:
        return load_config(local, parse_set_overrides(spec.overrides)).num_classes
    except (ConfigError, OSError):
        return None


def gather(spec: JobSpec) -> DataFacts:
    splits = SPLITS_OF_TASK.get(spec.task, ())
    data = Path(spec.data_dir) if spec.data_dir else None
    data_is_dir = bool(data and data.is_dir())
    return DataFacts(
        task=spec.task,
        data_dir=spec.data_dir,
        data_is_dir=data_is_dir,
        splits={s: gather_split(data / s) for s in splits} if data and data_is_dir else {},
        output_dir=spec.output_dir,
        output_problem=output_problem(spec.output_dir) if spec.output_dir else None,
        num_classes=training_num_classes(spec) if splits else None,
    )


def decide(facts: DataFacts) -> list[Check]:
    """data.layout and data.output from the gathered facts."""
    checks: list[Check] = []
    wanted = SPLITS_OF_TASK.get(facts.task, ())
    if not wanted:
        checks.append(skipped("data.layout", f"a {facts.task} job reads no data set"))
    elif not facts.data_dir:
        checks.append(failed("data.layout", f"a {facts.task} job needs --data-dir"))
    elif not facts.data_is_dir:
        checks.append(failed("data.layout", f"--data-dir {facts.data_dir!r} is not a folder "
                             "here: give the folder holding train/ and val/"))
    else:
        checks.append(_layout(facts, wanted))
    if facts.output_dir is None:
        checks.append(skipped("data.output", "no --output-dir"))
    elif facts.output_problem:
        checks.append(failed("data.output", f"--output-dir {facts.output_dir!r}: "
                             f"{facts.output_problem}; pick a folder you can write"))
    else:
        checks.append(passed("data.output", f"{facts.output_dir!r} is writable"))
    return checks


def _layout(facts: DataFacts, wanted: tuple[str, ...]) -> Check:
    where = facts.data_dir
    found = []
    for name in wanted:
        split = facts.splits[name]
        if not split.exists:
            return failed("data.layout", f"{where!r} has no {name}/ folder: training reads "
                          f"{'/ and '.join(wanted)}/ with one folder per class")
        if not split.classes:
            loose = f" ({split.loose_images} images lie directly in it)" if split.loose_images \
                else ""
            return failed("data.layout", f"{where!r}: {name}/ has no class folders{loose}; put "
                          f"each class's images in {name}/<class>/")
        if split.empty_classes:
            shown = ", ".join(split.empty_classes[:3])
            more = f" and {len(split.empty_classes) - 3} more" if len(split.empty_classes) > 3 \
                else ""
            return failed("data.layout", f"{where!r}: class folder(s) {shown}{more} of {name}/ "
                          f"hold no image ({', '.join(IMAGE_SUFFIXES)}): add images or remove "
                          "the folder")
        found.append(f"{name}/ {len(split.classes)} classes")
    if "train" in facts.splits and "val" in facts.splits:
        train, val = facts.splits["train"].classes, facts.splits["val"].classes
        if train != val:
            only = sorted(set(train) ^ set(val))[:3]
            return failed("data.layout", f"{where!r}: train/ and val/ have different classes "
                          f"(e.g. {', '.join(only)}); labels follow sorted folder names, so both "
                          "need the same class folders")
    classes = len(facts.splits[wanted[0]].classes)
    # The trainer refuses more class folders than outputs (resnest/data/pipeline.py); fewer
    # is allowed (a 1000-way head fine-tuned on a subset).
    if facts.num_classes is not None and classes > facts.num_classes:
        return failed("data.layout", f"{where!r} has {classes} classes but the training config "
                      f"has num_classes={facts.num_classes}: --set num_classes={classes}")
    return passed("data.layout", f"{where!r}: {', '.join(found)}, every class has images")


# ---- Slurm: do the nodes share these folders? -------------------------------------------------

# Runs on each node as `sh -c PROBE sh DATA OUTPUT_MARKER JOB_MARKER TOKEN`: the values arrive
# as arguments, never pasted into the script. Prints "host|data|output|jobdir" with ok/missing.
PROBE_SCRIPT = r"""
d=missing; o=missing; j=missing
if [ -z "$1" ] || { [ -d "$1/train" ] || [ -d "$1/val" ]; }; then d=ok; fi
if [ -z "$2" ] || [ "$(cat "$2" 2>/dev/null)" = "$4" ]; then o=ok; fi
if [ "$(cat "$3" 2>/dev/null)" = "$4" ]; then j=ok; fi
echo "$(hostname)|$d|$o|$j"
"""


@dataclass
class SharedFacts:
    """What each node saw. `error`: the probe itself could not run (then nodes is empty)."""

    data_dir: str | None
    output_dir: str | None
    job_root: str
    nodes: dict[str, tuple[str, str, str]]
    error: str | None = None


def probe_argv(spec: JobSpec, data: str, output_marker: str, job_marker: str,
               token: str) -> list[str]:
    """The `srun` command of the probe (one task on each of the job's nodes, no devices)."""
    argv = ["srun", f"--nodes={spec.nodes}", "--ntasks-per-node=1", "--time=1",
            f"--immediate={PROBE_WAIT_SECONDS}", "--job-name=rlaunch-check"]
    argv += [f"--{flag}={value}" for flag, value in
             (("partition", spec.partition), ("account", spec.account), ("qos", spec.qos))
             if value]
    return argv + ["/bin/sh", "-c", PROBE_SCRIPT, "sh", data, output_marker, job_marker, token]


def probe_shared(spec: JobSpec) -> SharedFacts:
    """Write a marker here into the output folder and the job store, then ask every node of a
    tiny allocation to read them back and to look at the data folder."""
    from launcher.store import JobStore

    token = secrets.token_hex(8)
    job_root = JobStore().jobs_dir
    facts = SharedFacts(spec.data_dir, spec.output_dir, str(job_root), {})
    markers: list[Path] = []
    try:
        job_root.mkdir(parents=True, exist_ok=True)
        job_marker = job_root / f".rlaunch-check-{token}"
        job_marker.write_text(token)
        markers.append(job_marker)
        output_marker = ""
        if spec.output_dir and Path(spec.output_dir).is_dir():
            path = Path(spec.output_dir) / f".rlaunch-check-{token}"
            path.write_text(token)
            markers.append(path)
            output_marker = str(path)
        argv = probe_argv(spec, spec.data_dir or "", output_marker, str(job_marker), token)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=PROBE_TIMEOUT_SECONDS)
        except FileNotFoundError:
            facts.error = "srun is not installed or not on PATH"
            return facts
        except subprocess.TimeoutExpired:
            facts.error = f"the probe did not finish within {PROBE_TIMEOUT_SECONDS} s"
            return facts
        facts.nodes = parse_probe_output(done.stdout)
        if done.returncode != 0 or not facts.nodes:
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
            facts.error = lines[-1] if lines else f"srun exited {done.returncode}"
        return facts
    except OSError as err:
        facts.error = f"cannot write the probe's marker file: {err.strerror or err}"
        return facts
    finally:
        for path in markers:
            path.unlink(missing_ok=True)


def parse_probe_output(text: str) -> dict[str, tuple[str, str, str]]:
    """node -> (data, output, jobdir) from the probe's lines; other lines are ignored."""
    nodes: dict[str, tuple[str, str, str]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4 and all(p in ("ok", "missing") for p in parts[1:]):
            nodes[parts[0]] = (parts[1], parts[2], parts[3])
    return nodes


def decide_shared(facts: SharedFacts) -> list[Check]:
    """data.shared: every probed node sees the data, the output marker and the job marker."""
    if facts.error:
        return [failed("data.shared", f"the srun probe failed: {facts.error}; run "
                       "`rlaunch check --deep` again when the partition has a free node")]
    what = (("the data folder", facts.data_dir), ("the output folder", facts.output_dir),
            ("the job store", facts.job_root))
    blind: list[str] = []
    for index, (label, path) in enumerate(what):
        nodes = sorted(n for n, seen in facts.nodes.items() if seen[index] != "ok")
        if nodes:
            blind.append(f"{label} {path!r} is not shared with {', '.join(nodes)}")
    if blind:
        return [failed("data.shared", "; ".join(blind) + ": use folders on the cluster's shared "
                       "filesystem (set RLAUNCH_STATE_DIR for the job store)")]
    return [passed("data.shared", f"{len(facts.nodes)} node(s) ({', '.join(sorted(facts.nodes))})"
                   " see the data, output and job folders")]
