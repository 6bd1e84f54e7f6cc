"""rlaunch against TorchX (0.7.0), same machine, same run; plus rank tables and Slurm latency.

1. CLI wall time (median of N runs, fresh processes): `rlaunch --help` vs `torchx --help`, and
   `rlaunch submit --backend slurm --gpus 8 --dry-run` vs
   `torchx run --dryrun -s slurm dist.ddp -j 1x8 --script train.py`. TorchX lives in its own
   venv (.venv-torchx, created here on first use) so it never touches the project's.
2. HCCL rank table for 4,096 servers x 8 devices: generation (build + render) and validation.
3. Submit-to-running latency on the local one-node Slurm (scripts/slurm_cluster.sh up first):
   from starting `rlaunch submit` to squeue saying RUNNING. Skipped with --no-slurm.

    .venv/bin/python benchmarks/cli_latency.py [--runs 15] [--no-slurm] [--json out.json]
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

REPO = Path(__file__).resolve().parents[1]
RLAUNCH = str(Path(sys.executable).parent / "rlaunch")
TORCHX_VENV = REPO / ".venv-torchx"
TORCHX = str(TORCHX_VENV / "bin" / "torchx")


def ensure_torchx() -> None:
    if Path(TORCHX).exists():
        return
    print("setting up .venv-torchx with torchx==0.7.0 ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(TORCHX_VENV)], check=True)
    subprocess.run([str(TORCHX_VENV / "bin" / "pip"), "install", "-q",
                    "--disable-pip-version-check", "torchx==0.7.0"], check=True)


def wall_times(argv: list[str], runs: int, cwd: str) -> list[float]:
    subprocess.run(argv, cwd=cwd, capture_output=True, check=True)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def cli_latency(runs: int) -> dict[str, dict[str, float]]:
    work = tempfile.mkdtemp(prefix="rlaunch-bench-")
    Path(work, "train.py").write_text("print('hello')\n")
    env_state = tempfile.mkdtemp(prefix="rlaunch-bench-state-")
    os.environ["RLAUNCH_STATE_DIR"] = env_state
    floor = wall_times([sys.executable, "-c", "pass"], runs, work)
    pairs = {
        "help": ([RLAUNCH, "--help"], [TORCHX, "--help"]),
        "slurm dry-run 1x8": (
            [RLAUNCH, "submit", "--backend", "slurm", "--gpus", "8", "--data-dir", "/data",
             "--output-dir", "/out", "--dry-run"],
            [TORCHX, "run", "--dryrun", "-s", "slurm", "dist.ddp", "-j", "1x8",
             "--script", "train.py"],
        ),
    }
    results = {}
    for label, (ours, peer) in pairs.items():
        # Interleave so both see the same load on this shared machine.
        mine, theirs = [], []
        for _ in range(runs):
            mine += wall_times(ours, 1, work)
            theirs += wall_times(peer, 1, work)
        results[label] = {
            "rlaunch_s": statistics.median(mine),
            "torchx_s": statistics.median(theirs),
            "speedup": statistics.median(theirs) / statistics.median(mine),
        }
    results["python -c pass"] = {"rlaunch_s": statistics.median(floor), "torchx_s": float("nan"),
                                 "speedup": float("nan")}
    return results


def rank_table_timing(servers: int = 4096, devices: int = 8) -> dict[str, float]:
    sys.path.insert(0, str(REPO))
    from launcher.ranktable import build_rank_table, check_rank_table

    ips = {
        f"10.{s // 65536}.{(s // 256) % 256}.{s % 256}": {
            d: f"172.{16 + s // 8192}.{(s * devices + d) // 256 % 256}.{(s * devices + d) % 256}"
            for d in range(devices)
        }
        for s in range(servers)
    }
    start = time.perf_counter()
    text = build_rank_table(ips, list(range(devices))).render()
    generated = time.perf_counter() - start
    start = time.perf_counter()
    problems = check_rank_table(json.loads(text))
    validated = time.perf_counter() - start
    assert problems == [], problems[:3]
    return {"servers": servers, "devices": servers * devices, "generate_s": generated,
            "validate_s": validated, "bytes": len(text)}


def wait_until_running(slurm_id: str) -> None:
    while True:
        state = subprocess.run(["squeue", "-h", "-j", slurm_id, "-o", "%T"],
                               capture_output=True, text=True, check=False).stdout.strip()
        if state in ("RUNNING", "COMPLETING", "") or state.startswith("COMPLETED"):
            return
        time.sleep(0.02)


def cancel_and_drain(slurm_id: str) -> None:
    """Cancel and wait until the node is free again, so the next job does not queue behind it."""
    subprocess.run(["scancel", slurm_id], check=False)
    while subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                         check=False).stdout.strip():
        time.sleep(0.05)


def slurm_submit_to_running(repeats: int) -> dict[str, float]:
    up = subprocess.run(["bash", str(REPO / "scripts" / "slurm_cluster.sh"), "up"],
                        capture_output=True, text=True, check=False)
    if up.returncode != 0:
        raise SystemExit(f"could not start the local Slurm: {up.stderr.strip()}")
    data = tempfile.mkdtemp(prefix="rlaunch-bench-data-")
    submit_s, running_s, raw_s = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run(
            [RLAUNCH, "submit", "--backend", "slurm", "--cpus", "1", "--name", "bench",
             "--data-dir", data, "--output-dir", data + "/out", "--json"],
            capture_output=True, text=True, check=True,
        )
        submit_s.append(time.perf_counter() - start)
        slurm_id = json.loads(out.stdout)["backend_id"]
        wait_until_running(slurm_id)
        running_s.append(time.perf_counter() - start)
        cancel_and_drain(slurm_id)
        # The floor: plain sbatch of a one-line script, same wait.
        start = time.perf_counter()
        slurm_id = subprocess.run(
            ["sbatch", "--parsable", "--output=/dev/null", "--wrap", "sleep 30"],
            capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
        wait_until_running(slurm_id)
        raw_s.append(time.perf_counter() - start)
        cancel_and_drain(slurm_id)
    return {"repeats": repeats, "submit_command_s": statistics.median(submit_s),
            "submit_to_running_s": statistics.median(running_s),
            "submit_to_running_max_s": max(running_s),
            "plain_sbatch_to_running_s": statistics.median(raw_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-slurm", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    ensure_torchx()
    results: dict[str, object] = {"cli": cli_latency(args.runs),
                                  "rank_table": rank_table_timing()}
    if not args.no_slurm:
        results["slurm"] = slurm_submit_to_running(5)

    print(f"{'command':<20} {'rlaunch':>10} {'torchx 0.7.0':>13} {'speed-up':>9}")
    for label, row in results["cli"].items():  # type: ignore[union-attr]
        print(f"{label:<20} {row['rlaunch_s'] * 1000:>8.0f} ms {row['torchx_s'] * 1000:>10.0f} ms "
              f"{row['speedup']:>8.1f}x")
    rt = results["rank_table"]
    print(f"rank table {rt['servers']} servers x 8 ({rt['devices']} ranks, {rt['bytes'] / 1e6:.1f} MB):"
          f" generate {rt['generate_s']:.2f} s, validate {rt['validate_s']:.2f} s")
    if "slurm" in results:
        sl = results["slurm"]
        print(f"local Slurm: submit command {sl['submit_command_s'] * 1000:.0f} ms, "
              f"submit-to-RUNNING median {sl['submit_to_running_s']:.2f} s "
              f"(max {sl['submit_to_running_max_s']:.2f} s, {sl['repeats']} jobs); plain "
              f"`sbatch --wrap` to RUNNING {sl['plain_sbatch_to_running_s']:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
