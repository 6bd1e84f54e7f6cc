"""Hostile input through the whole path: quotes, $(...), backticks, ';', spaces, newlines.

Values either arrive byte-for-byte at the training command line / environment, or are refused
with one clear line; nothing is ever executed. The rendered scripts are really run, with stand-in
`msrun` / `srun` / `scontrol` programs that record what they were given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from launcher.backends import get_backend
from launcher.spec import JobSpec

from .conftest import HOSTILE, rlaunch

RECORDER = """#!{python}
import json, os, sys
with open(os.environ["RECORD_TO"], "a") as fh:
    fh.write(json.dumps({{"prog": os.path.basename(sys.argv[0]), "argv": sys.argv[1:],
                         "env": dict(os.environ)}}) + "\\n")
"""
FAKE_SRUN = """#!/bin/bash
# Drop srun's own options, run the command as node 0.
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
SLURM_NODEID=0 SLURM_PROCID=0 SLURM_LOCALID=0 exec "$@"
"""
FAKE_SCONTROL = """#!/bin/bash
[ "$1 $2" = "show hostnames" ] && echo node0
"""


def fake_bin(tmp_path: Path) -> Path:
    """A bin dir with python (the real one), a recording msrun, and srun/scontrol stand-ins."""
    bin_dir = tmp_path / "fake bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    for name, text in {"msrun": RECORDER.format(python=sys.executable), "srun": FAKE_SRUN,
                       "scontrol": FAKE_SCONTROL, "scancel": "#!/bin/bash\n"}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def hostile_dirs(tmp_path: Path) -> list[str]:
    """One existing data dir per hostile string that a path can hold (no newline)."""
    made = []
    for index, text in enumerate(h for h in HOSTILE if "\n" not in h):
        path = tmp_path / f"d{index} {text}"
        path.mkdir()
        made.append(str(path))
    return made


def assert_nothing_executed(*roots: Path) -> None:
    for root in roots:
        assert not list(root.rglob("PWNED")), f"a hostile value was executed under {root}"


def test_local_submit_passes_hostile_values_verbatim(tmp_path: Path, state_dir: Path) -> None:
    bin_dir = fake_bin(tmp_path)
    record_to = tmp_path / "calls.jsonl"
    code_dir = tmp_path / "code $(touch PWNED)"
    code_dir.mkdir()
    for data_dir in hostile_dirs(tmp_path):
        job = tmp_path / "job.yaml"
        job.write_text(yaml.safe_dump({"python": str(bin_dir / "python"), "code_dir": str(code_dir)}))
        output_dir = data_dir + " out"
        env_value = HOSTILE[len(data_dir) % len(HOSTILE)]
        result = rlaunch(
            "submit", "--backend", "local", "--cpus", "2", "--file", str(job),
            "--data-dir", data_dir, "--output-dir", output_dir, "--set", f"net_name={data_dir}",
            "--arg", env_value, "--env", f"HOSTILE={env_value}",
            env={"RLAUNCH_STATE_DIR": str(state_dir), "RECORD_TO": str(record_to)},
        )
        job_id = result.stdout.strip().splitlines()[-1]
        exit_file = state_dir / "jobs" / job_id / "exit_code"
        deadline = time.monotonic() + 30
        while not exit_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert exit_file.read_text().strip() == "0"
        call = json.loads(record_to.read_text().splitlines()[-1])
        assert call["argv"][call["argv"].index("--join=True") + 1] == "resnest/train.py"
        assert call["argv"][-7:] == ["--data-dir", data_dir, "--output-dir", output_dir, "--set",
                                     f"net_name={data_dir}", env_value]
        assert call["env"]["HOSTILE"] == env_value
        assert rlaunch("status", job_id, env={"RLAUNCH_STATE_DIR": str(state_dir)}
                       ).stdout.split()[3] == "COMPLETED"
    assert_nothing_executed(tmp_path, state_dir, Path.cwd())


@pytest.mark.parametrize("kind", ["gpu", "ascend"])
def test_sbatch_script_passes_hostile_values_verbatim(tmp_path: Path, kind: str) -> None:
    bin_dir = fake_bin(tmp_path)
    record_to = tmp_path / "calls.jsonl"
    hostile_path = "/data/" + "".join(h for h in HOSTILE if "\n" not in h)
    spec = JobSpec(
        backend="slurm", device_kind=kind, devices_per_node=2, data_dir=hostile_path,
        output_dir=hostile_path + "/o", overrides=[f"k={HOSTILE[0]}"], args=HOSTILE,
        env={"H": HOSTILE[2] + HOSTILE[6]}, python=str(bin_dir / "python"),
        code_dir=str(tmp_path),
        backend_options={"hccn_conf": str(tmp_path / "hccn.conf")} if kind == "ascend" else {},
    ).validate()
    (tmp_path / "hccn.conf").write_text("address_0=192.168.0.1\naddress_1=192.168.0.2\n")
    backend = get_backend("slurm")
    script = backend.render(spec, backend.options_of(spec)).files["sbatch.sh"]
    job_dir = tmp_path / "job dir"
    job_dir.mkdir()
    (job_dir / "sbatch.sh").write_text(script)
    if kind == "ascend":  # the per-card processes are `python train.py`: record them instead
        (tmp_path / "resnest").mkdir()
        (tmp_path / "resnest" / "train.py").write_text(RECORDER.format(python=sys.executable))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD_TO": str(record_to),
           "SLURM_JOB_ID": "123", "SLURM_JOB_NODELIST": "node0", "PYTHONPATH": os.getcwd()}
    done = subprocess.run(["bash", "sbatch.sh"], cwd=job_dir, env=env, capture_output=True, check=False,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    call = json.loads(record_to.read_text().splitlines()[-1])
    expected = ["--data-dir", hostile_path, "--output-dir", hostile_path + "/o", "--set",
                f"k={HOSTILE[0]}", *HOSTILE]
    assert call["argv"][-len(expected):] == expected
    assert call["env"]["H"] == HOSTILE[2] + HOSTILE[6]
    if kind == "ascend":
        assert call["env"]["RANK_ID"] == "0" and call["env"]["DEVICE_ID"] == "0"
        table = json.loads((job_dir / "rank_table.json").read_text())
        assert table["server_list"][0]["device"][1]["device_ip"] == "192.168.0.2"
    else:
        assert "--node_rank=0" in call["argv"] and "--worker_num=2" in call["argv"]
    assert_nothing_executed(tmp_path)


def test_hostile_names_and_newline_paths_rejected_before_anything(state_dir: Path) -> None:
    for name in HOSTILE:
        result = rlaunch("submit", "--backend", "slurm", "--name", name, "--data-dir", "/d",
                         "--output-dir", "/o", env={"RLAUNCH_STATE_DIR": str(state_dir)},
                         check=False)
        assert result.returncode == 2 and "is not a valid job name" in result.stderr
    result = rlaunch("submit", "--backend", "slurm", "--data-dir", "/a\nb", "--output-dir", "/o",
                     env={"RLAUNCH_STATE_DIR": str(state_dir)}, check=False)
    assert result.returncode == 2 and "contains a newline" in result.stderr
    assert not state_dir.exists()
