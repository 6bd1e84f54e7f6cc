"""Submitting a 100-trial sweep to Slurm: `rlaunch sweep` (one job array, one sbatch call) against
the naive way in the same run (one sbatch call per trial, as tools without arrays do, and one
`rlaunch submit` per trial). Wall time from starting the command(s) until every trial is queued.

Every job is submitted held (`--hold`) and cancelled right after, so nothing trains; the one-node
test Slurm must be up:

    flock -o /tmp/rlaunch-slurm.lock sh -c 'bash scripts/slurm_cluster.sh up >/dev/null &&
        .venv/bin/python benchmarks/sweep_submit.py; bash scripts/slurm_cluster.sh down'
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RLAUNCH = str(Path(sys.executable).parent / "rlaunch")
TINY = ["--set", "epochs=1", "--set", "batch_size=2"]


def queued_tasks(job_ids: list[str]) -> int:
    """Array elements / jobs squeue lists for these ids (one squeue call)."""
    out = subprocess.run(["squeue", "--array", "--noheader", f"--jobs={','.join(job_ids)}",
                          "--format=%i"], capture_output=True, text=True, check=True).stdout
    return len(out.split())


def cancel(job_ids: list[str]) -> None:
    subprocess.run(["scancel", "--", *job_ids], check=False, capture_output=True)


def rlaunch_sweep(trials: int, work: Path, env: dict[str, str]) -> tuple[float, list[str]]:
    values = ",".join(f"{0.001 * (i + 1):.3f}" for i in range(trials))
    start = time.perf_counter()
    done = subprocess.run(
        # --no-check here and below: what is timed is the queueing; the data folder is an
        # empty stand-in (nothing trains), which the preflight's data check would refuse.
        [RLAUNCH, "sweep", "--no-check", "--backend", "slurm", "--cpus", "1", "--data-dir",
         str(work),
         "--output-dir", str(work / "out"), *TINY, "--grid", f"lr={values}",
         "--max-parallel", "8", "--scheduler-arg=--hold", "--json"],
        capture_output=True, text=True, env=env, check=True)
    elapsed = time.perf_counter() - start
    return elapsed, [json.loads(done.stdout)["backend_id"]]


def sbatch_each(trials: int, work: Path, env: dict[str, str]) -> tuple[float, list[str]]:
    """The naive way: the job's own rendered script, one sbatch call per trial."""
    script = subprocess.run(
        [RLAUNCH, "submit", "--backend", "slurm", "--cpus", "1", "--data-dir", str(work),
         "--output-dir", str(work / "out"), *TINY, "--dry-run"],
        capture_output=True, text=True, env=env, check=True).stdout
    body = script.split("# ---- sbatch.sh ----\n", 1)[1].split("# ---- submit ----", 1)[0]
    path = work / "sbatch.sh"
    path.write_text(body)
    ids = []
    start = time.perf_counter()
    for _ in range(trials):
        done = subprocess.run(["sbatch", "--parsable", "--hold", f"--chdir={work}",
                               f"--output={work}/slurm-%j.out", str(path)],
                              capture_output=True, text=True, check=True)
        ids.append(done.stdout.strip().split(";")[0])
    return time.perf_counter() - start, ids


def submit_each(trials: int, work: Path, env: dict[str, str]) -> tuple[float, list[str]]:
    """The naive way through rlaunch: one `rlaunch submit` per trial."""
    ids = []
    start = time.perf_counter()
    for index in range(trials):
        done = subprocess.run(
            [RLAUNCH, "submit", "--no-check", "--backend", "slurm", "--cpus", "1", "--data-dir",
             str(work), "--output-dir", str(work / f"out-{index}"), *TINY, "--set",
             f"lr={0.001 * (index + 1):.3f}", "--scheduler-arg=--hold", "--json"],
            capture_output=True, text=True, env=env, check=True)
        ids.append(json.loads(done.stdout)["backend_id"])
    return time.perf_counter() - start, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3, help="repeats of the sweep (median)")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    results: dict[str, dict[str, float | int]] = {}
    with tempfile.TemporaryDirectory(prefix="rlaunch-bench-sweep-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "RLAUNCH_STATE_DIR": str(work / "state")}
        ways = [("rlaunch sweep (1 array, 1 sbatch)", rlaunch_sweep, args.runs),
                ("sbatch per trial", sbatch_each, 1),
                ("rlaunch submit per trial", submit_each, 1)]
        for label, way, runs in ways:
            times = []
            for _ in range(runs):
                elapsed, ids = way(args.trials, work, env)
                queued = queued_tasks(ids)
                cancel(ids)
                if queued != args.trials:
                    raise SystemExit(f"{label}: {queued} of {args.trials} trials queued")
                times.append(elapsed)
            results[label] = {"seconds": statistics.median(times), "runs": runs,
                              "sbatch_calls": 1 if "sweep" in label else args.trials}
            print(f"{label:36s} {args.trials} trials queued in {statistics.median(times):7.2f} s "
                  f"(median of {runs})", flush=True)
    load = os.getloadavg()[0]
    print(f"load average {load:.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"results": results, "load": load}, indent=2))


if __name__ == "__main__":
    main()
