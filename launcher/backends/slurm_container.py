"""Run one Slurm task inside an OCI bundle with runc (the container runtime that runs here).

    python -m launcher.backends.slurm_container runc --bundle DIR --cwd PATH [--bind PATH]... -- CMD...

`DIR` is an OCI runtime bundle (`config.json` + `rootfs/`, the layout `umoci unpack` makes from
the image `rlaunch build` built) on a shared path. The task's config is the bundle's, changed so
that the container behaves like the HPC runtimes (pyxis/enroot, Apptainer): the node's network,
pid and IPC namespaces (msrun's ranks reach each other; slurmstepd tracks and signals them),
the submitting user, the bound paths at the same place, the task's environment over the image's,
and the CPUs Slurm bound the task to (a new cpuset cgroup would otherwise widen them). Runs
`runc run` in the foreground and returns its exit code; TERM/USR1 are for the ranks (slurmstepd
signals every process of the step), so this wrapper ignores them and keeps waiting.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# The image decides these; the host's values point at host paths (its venv, home).
HOST_ONLY_ENV = frozenset({"PATH", "HOME", "PWD", "OLDPWD", "SHELL", "LD_LIBRARY_PATH",
                           "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "TMPDIR"})
# Namespaces the task keeps from its node (runtime-spec config-linux.md: a namespace type left
# out of linux.namespaces is inherited from the runtime's own).
SHARED_NAMESPACES = frozenset({"network", "pid", "ipc", "uts", "cgroup", "user"})


def merged_env(image_env: list[str], host_env: dict[str, str]) -> list[str]:
    """The image's variables, overridden by the task's (Slurm's, MindSpore's, --env)."""
    env = dict(item.split("=", 1) for item in image_env if "=" in item)
    env.update({k: v for k, v in host_env.items() if k not in HOST_ONLY_ENV})
    return [f"{k}={v}" for k, v in env.items()]


def task_config(bundle_config: dict[str, Any], rootfs: Path, cwd: str, binds: list[str],
                command: list[str], host_env: dict[str, str], uid: int, gid: int,
                cpus: set[int]) -> dict[str, Any]:
    """The bundle's config.json for one task (pure)."""
    config = copy.deepcopy(bundle_config)
    process = config.setdefault("process", {})
    process["terminal"] = False
    process["args"] = list(command)
    process["cwd"] = cwd
    process["env"] = merged_env(process.get("env", []), host_env)
    process["user"] = {"uid": uid, "gid": gid}
    config["root"] = {"path": str(rootfs), "readonly": True}
    config.pop("hostname", None)
    linux = config.setdefault("linux", {})
    linux["namespaces"] = [ns for ns in linux.get("namespaces", [])
                           if ns.get("type") not in SHARED_NAMESPACES]
    linux.pop("uidMappings", None)
    linux.pop("gidMappings", None)
    linux["resources"] = {"cpu": {"cpus": ",".join(str(c) for c in sorted(cpus))}}
    # The rootfs is read-only (one bundle serves every task): a private /tmp, then the binds
    # (which may lie under /tmp) on top.
    mounts = [m for m in config.get("mounts", [])
              if m.get("destination") not in {*binds, "/tmp"}]
    mounts.append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "mode=1777"]})
    for path in binds:
        mounts.append({"destination": path, "type": "bind", "source": path,
                       "options": ["rbind", "rw"]})
    for path in ("/etc/hosts", "/etc/resolv.conf"):  # the node's names, as the host sees them
        if os.path.exists(path):
            mounts.append({"destination": path, "type": "bind", "source": path,
                           "options": ["rbind", "ro"]})
    config["mounts"] = mounts
    return config


def run_runc(bundle: Path, cwd: str, binds: list[str], command: list[str]) -> int:
    try:
        bundle_config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        print(f"rlaunch: {bundle} is not an OCI bundle (config.json: {err})", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("rlaunch: container_runtime=runc runs only as root (rootless runc would leave "
              "Slurm's cgroup); use apptainer or pyxis", file=sys.stderr)
        return 1
    rootfs = bundle / str(bundle_config.get("root", {}).get("path", "rootfs"))
    missing = [path for path in binds if not os.path.exists(path)]
    if missing:  # a bind of nothing would leave the ranks writing into the container's /tmp
        print(f"rlaunch: cannot bind {missing[0]!r} into the container: no such path on "
              f"{socket.gethostname()}", file=sys.stderr)
        return 1
    config = task_config(bundle_config, rootfs.resolve(), cwd, binds, command, dict(os.environ),
                         os.getuid(), os.getgid(), os.sched_getaffinity(0))
    job = os.environ.get("SLURM_JOB_ID", "0")
    step = os.environ.get("SLURM_STEP_ID", "0")
    restart = os.environ.get("SLURM_RESTART_COUNT", "0")
    container_id = f"rlaunch-{job}.{step}-{restart}-{socket.gethostname()}-{os.getpid()}"
    workdir = Path(tempfile.mkdtemp(prefix="rlaunch-runc-"))
    try:
        (workdir / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_IGN)
        try:
            done = subprocess.run(["runc", "run", "--bundle", str(workdir), container_id],
                                  check=False)
        except FileNotFoundError:
            print("rlaunch: runc is not installed on this node", file=sys.stderr)
            return 1
        return done.returncode
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.backends.slurm_container")
    parser.add_argument("runtime", choices=["runc"])
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--cwd", required=True)
    parser.add_argument("--bind", action="append", default=[])
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        parser.error("give the command after --")
    split = argv.index("--")
    args, command = parser.parse_args(argv[:split]), argv[split + 1:]
    return run_runc(args.bundle, args.cwd, [str(Path(b)) for b in args.bind], command)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
