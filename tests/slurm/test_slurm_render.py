"""Rendering of the Slurm backend's new parts (no cluster): CPU requests and their hand-over to
srun, the GPU request forms, container runtimes (golden files), option errors, the Ascend rank
lookup and the runc task config.

Regenerate the golden files after an intended change, then review the diff:
    RLAUNCH_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/slurm/test_slurm_render.py
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from launcher.backends import get_backend
from launcher.backends import slurm as slurm_module
from launcher.backends.slurm import _parse_gres_count, cpus_per_device_from_sinfo
from launcher.backends.slurm_container import merged_env, task_config
from launcher.backends.slurm_rank import RankLookupError, rank_and_card
from launcher.ranktable import build_rank_table
from launcher.spec import JobSpec
from tests.launcher.test_golden import BASE, check_golden

CONTAINER_CASES = {
    "slurm_pyxis_gpu2x8.sh": JobSpec(
        name="rn50", backend="slurm", device_kind="gpu", nodes=2, devices_per_node=8,
        image="nvcr.io#myorg/rlaunch-gpu:0.1.0", master_port=29500,
        backend_options={"container_runtime": "pyxis", "cpus_per_gpu": 8},
        **{**BASE, "code_dir": "/opt/venv"}),
    "slurm_apptainer_gpu8.sh": JobSpec(
        name="rn50", backend="slurm", device_kind="gpu", devices_per_node=8,
        image="/shared/images/rlaunch-gpu.sif",
        backend_options={"container_runtime": "apptainer", "cpus_per_gpu": 6,
                         "gpu_request": "gres"},
        **{**BASE, "code_dir": "/opt/venv"}),
    "slurm_apptainer_ascend8.sh": JobSpec(
        name="rn50-npu", backend="slurm", device_kind="ascend", nodes=2, devices_per_node=8,
        image="/shared/images/rlaunch-ascend.sif",
        backend_options={"container_runtime": "apptainer", "cpus_per_gpu": 24},
        **{**BASE, "code_dir": "/opt/venv"}),
}


@pytest.mark.parametrize("name", sorted(CONTAINER_CASES))
def test_container_rendering_matches_golden(name: str) -> None:
    spec = CONTAINER_CASES[name].validate()
    backend = get_backend("slurm")
    opts = backend.options_of(spec)
    assert backend.problems(spec, opts) == []
    script = backend.render(spec, opts).files["sbatch.sh"]
    check_golden(name, script)


def rendered_job(spec: JobSpec):
    backend = get_backend("slurm")
    return backend.render(spec, backend.options_of(spec))


def render(**fields) -> str:
    spec = JobSpec(backend="slurm", **{**BASE, **fields}).validate()
    backend = get_backend("slurm")
    opts = backend.options_of(spec)
    assert backend.problems(spec, opts) == []
    return backend.render(spec, opts).files["sbatch.sh"]


def test_gpu_job_asks_cpus_per_gpu_and_hands_them_to_srun() -> None:
    script = render(device_kind="gpu", devices_per_node=8, backend_options={"cpus_per_gpu": 6})
    assert "#SBATCH --cpus-per-task=48\n" in script
    assert "export SRUN_CPUS_PER_TASK=48\n" in script
    assert "srun --ntasks-per-node=1 --cpus-per-task=48 " in script
    assert "export OMP_NUM_THREADS=6\n" in script
    assert "#SBATCH --gpus-per-node=8\n" in script and "--gres" not in script


def test_default_cpus_per_gpu_without_sinfo() -> None:
    script = render(device_kind="gpu", devices_per_node=2)
    per_task = 2 * slurm_module.DEFAULT_CPUS_PER_DEVICE
    assert f"#SBATCH --cpus-per-task={per_task}\n" in script


def test_gres_request_for_sites_without_cons_tres() -> None:
    script = render(device_kind="gpu", devices_per_node=4,
                    backend_options={"gpu_request": "gres", "cpus_per_gpu": 2})
    assert "#SBATCH --gres=gpu:4\n" in script and "--gpus-per-node" not in script


def test_ascend_ranks_come_from_the_table_and_one_failure_ends_the_step() -> None:
    script = render(device_kind="ascend", devices_per_node=8, nodes=2,
                    backend_options={"cpus_per_gpu": 3})
    assert '"$SUBMITTED/slurm_rank.py" run "$RANK_TABLE_FILE" "$LOG_DIR" "$NODES_FILE" --' in script
    assert "--kill-on-bad-exit=1" in script
    assert "SLURM_PROCID" not in script.split('slurm_rank.py" table')[1]
    assert "#SBATCH --cpus-per-task=3\n" in script
    assert "--exclusive" not in script  # 8 cards: the gres is the whole server's cards
    part = render(device_kind="ascend", devices_per_node=4, device_ids=[4, 5, 6, 7])
    assert "#SBATCH --exclusive\n" in part  # cards named by number: only the whole node is sure
    # ... and all its cards: an --exclusive job's steps get only the GRES it asked for, and
    # ConstrainDevices would hide cards 4-7 from a step holding 4 cards of Slurm's choice.
    assert "#SBATCH --gres=npu:8\n" in part and "--gres=npu:4" not in part


def test_sinfo_gres_parsing() -> None:
    assert _parse_gres_count("gpu:8", "gpu") == 8
    assert _parse_gres_count("gpu:a100:4(S:0-1),gpu:v100:2", "gpu") == 6
    assert _parse_gres_count("gpu:8,npu:8", "npu") == 8
    assert _parse_gres_count("(null)", "gpu") == 0


def test_cpus_per_device_from_sinfo_takes_the_smallest_node(monkeypatch) -> None:
    out = "64|gpu:8|a\n2|gpu:8,npu:8|a\n128|(null)|a\n"
    monkeypatch.setattr(slurm_module, "_run", lambda argv, timeout=30:
                        subprocess.CompletedProcess(argv, 0, out, ""))
    assert cpus_per_device_from_sinfo("gpu", None) == 1  # 2 CPUs / 8 GPUs, at least 1
    out = "64|gpu:8|p\n96|gpu:8|p\n"
    assert cpus_per_device_from_sinfo("gpu", "p") == 8
    assert cpus_per_device_from_sinfo("npu", None) is None


def test_cpus_per_device_without_partition_looks_at_the_default_one(monkeypatch) -> None:
    """sbatch puts a job without --partition in the default partition (sinfo's '*')."""
    out = "16|gpu:8|debug\n64|gpu:8|gpu*\n64|gpu:8|gpu*\n"
    monkeypatch.setattr(slurm_module, "_run", lambda argv, timeout=30:
                        subprocess.CompletedProcess(argv, 0, out, ""))
    assert cpus_per_device_from_sinfo("gpu", None) == 8


def backend_problems(spec: JobSpec) -> list[str]:
    """What `rlaunch submit` reports at the backend's stages: its options, then its rules."""
    backend = get_backend("slurm")
    opts, problems = backend.parse_options(spec)
    return problems or backend.problems(spec, opts)


@pytest.mark.parametrize(("kind", "opts", "message"), [
    ("gpu", {"cpus_per_gpu": 0}, "--opt cpus_per_gpu 0 is not an integer from 1 to 1024"),
    ("gpu", {"cpus_per_gpu": "many"}, "--opt cpus_per_gpu 'many' is not a whole number"),
    ("gpu", {"gpu_request": "gpus"}, "--opt gpu_request 'gpus' is not one of gpus-per-node, gres"),
    ("gpu", {"container_runtime": "docker"}, ("--opt container_runtime 'docker' is not one of "
                                              "pyxis, apptainer, runc")),
    ("gpu", {"container_runtime": "pyxis"},
     "--opt container_runtime is not used by this job: it only applies with --image"),
    ("gpu", {"signal_seconds": "017"}, "--opt signal_seconds '017' is not a whole number"),
    ("gpu", {"signal_seconds": "1:30"}, "--opt signal_seconds '1:30' is not a whole number"),
    ("gpu", {"hccn_conf": "/etc/hccn.conf"}, "--opt hccn_conf is not used by gpu jobs"),
    ("cpu", {"cpus_per_gpu": "4"}, "--opt cpus_per_gpu is not used by cpu jobs"),
    ("ascend", {"gpu_request": "gres"}, "--opt gpu_request is not used by ascend jobs"),
    ("ascend", {"hccn_conf": "/etc/a,b"}, "'/etc/a,b' is not an absolute path without ',' or"),
    ("gpu", {"signal_second": "60"}, "(did you mean signal_seconds?"),
])
def test_bad_options_are_one_clear_line(kind: str, opts: dict, message: str) -> None:
    spec = JobSpec(backend="slurm", device_kind=kind, devices_per_node=2, backend_options=opts,
                   **BASE)
    problems = backend_problems(spec)
    assert len(problems) == 1 and message in problems[0], problems


def test_runc_needs_a_bundle_path(tmp_path: Path) -> None:
    spec = JobSpec(backend="slurm", image="rlaunch-cpu:1", devices_per_node=2,
                   backend_options={"container_runtime": "runc"}, **BASE)
    assert any("absolute path of an OCI bundle" in p for p in backend_problems(spec))
    spec = spec.replace(image=str(tmp_path))
    assert any("is not an OCI bundle here" in p for p in backend_problems(spec))
    spec = spec.replace(image=str(tmp_path), data_dir="/data/a,b")
    (tmp_path / "config.json").write_text("{}")
    assert any("',' or ':'" in p for p in backend_problems(spec))


# ---- the Ascend rank lookup ---------------------------------------------------------------


def two_server_table() -> dict:
    ips = {"10.0.0.12": {0: "192.168.0.1", 1: "192.168.0.2"},
           "10.0.0.11": {0: "192.168.1.1", 1: "192.168.1.2"}}
    return json.loads(build_rank_table(ips, [0, 1]).render())


def test_rank_lookup_uses_the_nodes_own_entry_not_slurm_order() -> None:
    table = two_server_table()
    # Slurm's node 0 is 10.0.0.12, the table's second server: its cards are ranks 2 and 3.
    assert rank_and_card(table, {"node0", "10.0.0.12"}, 0) == ("2", "0")
    assert rank_and_card(table, {"node0", "10.0.0.12"}, 1) == ("3", "1")
    assert rank_and_card(table, {"10.0.0.11"}, 1) == ("1", "1")


def test_rank_lookup_by_host_ip_or_name() -> None:
    table = {"server_list": [
        {"server_id": "node_0", "host_ip": "10.1.0.5",
         "device": [{"device_id": "4", "rank_id": "0"}, {"device_id": "5", "rank_id": "1"}]},
    ]}
    assert rank_and_card(table, {"10.1.0.5"}, 1) == ("1", "5")
    assert rank_and_card(table, {"node_0"}, 0) == ("0", "4")


def test_rank_lookup_errors_name_the_node() -> None:
    table = two_server_table()
    with pytest.raises(RankLookupError, match="no entry for this node"):
        rank_and_card(table, {"10.0.0.99"}, 0)
    with pytest.raises(RankLookupError, match="lists 2 cards; task 2"):
        rank_and_card(table, {"10.0.0.11"}, 2)


# ---- the runc task config -------------------------------------------------------------------


def test_runc_task_config_shares_node_namespaces_and_keeps_cpu_binding(tmp_path: Path) -> None:
    bundle = {
        "process": {"args": ["/entry", "--help"], "cwd": "/home/u", "terminal": True,
                    "user": {"uid": 1000, "gid": 1000},
                    "env": ["PATH=/opt/venv/bin:/usr/bin", "HOME=/home/u", "A=image"]},
        "root": {"path": "rootfs"},
        "hostname": "umoci",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts",
                                                      "mount")]},
    }
    out = tmp_path / "out"
    out.mkdir()
    config = task_config(bundle, tmp_path / "rootfs", "/opt/venv", [str(out)], ["bash", "-c", "x"],
                         {"PATH": "/host/venv/bin", "A": "task", "SLURM_NODEID": "1"}, 0, 0,
                         {2, 3})
    assert [ns["type"] for ns in config["linux"]["namespaces"]] == ["mount"]
    assert config["linux"]["resources"]["cpu"]["cpus"] == "2,3"
    assert config["process"]["args"] == ["bash", "-c", "x"]
    assert config["process"]["user"] == {"uid": 0, "gid": 0}
    assert config["root"] == {"path": str(tmp_path / "rootfs"), "readonly": True}
    destinations = [m["destination"] for m in config["mounts"]]
    assert destinations.index("/tmp") < destinations.index(str(out))
    env = dict(e.split("=", 1) for e in config["process"]["env"])
    assert env["PATH"] == "/opt/venv/bin:/usr/bin" and env["A"] == "task"
    assert env["SLURM_NODEID"] == "1"
    assert bundle["process"]["args"] == ["/entry", "--help"]  # the bundle's config is unchanged


def test_merged_env_keeps_image_paths() -> None:
    merged = dict(e.split("=", 1) for e in merged_env(["PATH=/img", "HOME=/h"],
                                                       {"PATH": "/host", "HOME": "/root",
                                                        "MS_ROLE": "MS_WORKER"}))
    assert merged == {"PATH": "/img", "HOME": "/h", "MS_ROLE": "MS_WORKER"}


def test_runc_refuses_to_bind_a_missing_path(tmp_path: Path, capsys) -> None:
    from launcher.backends.slurm_container import run_runc

    (tmp_path / "config.json").write_text(json.dumps({"root": {"path": "rootfs"}}))
    assert run_runc(tmp_path, "/", [str(tmp_path / "nope")], ["true"]) == 1
    assert "cannot bind" in capsys.readouterr().err


def test_container_jobs_make_the_output_dir_before_mounting_it() -> None:
    script = render(device_kind="gpu", devices_per_node=2, image="img:1",
                    backend_options={"container_runtime": "pyxis", "cpus_per_gpu": 1})
    assert "mkdir -p '/scratch/run 1' || exit 1\n" in script
    assert "cd /opt/rlaunch" not in script  # the code is the image's


# ---- --scheduler-arg: what the job sets itself is refused, with the flag that sets it --------


@pytest.mark.parametrize(("arg", "pointer"), [
    ("--array=0-3", "one job per setting"),
    ("--nodes=4", "use --nodes"),
    ("-N4", "use --nodes"),
    ("--ntasks-per-node=8", "use --gpus/--ascend/--cpus"),
    ("--ntasks-per", "use --gpus/--ascend/--cpus"),  # getopt takes a unique prefix
    ("--output=/tmp/x.out", "job dir"),
    ("-o", "job dir"),
    ("--chdir=/tmp", "job dir"),
    ("--signal=USR1@60", "--opt signal_seconds"),
    ("--no-requeue", "--max-restarts 0"),
    ("--partition=gpu", "use --partition"),
    ("--gres=gpu:a100:8", "use --gpus"),
    ("--mem=64G", "use --opt mem"),
    ("--mem-per-gpu=80G", "use --opt mem (per node)"),
])
def test_scheduler_args_rlaunch_sets_itself_are_refused(arg: str, pointer: str) -> None:
    spec = JobSpec(backend="slurm", device_kind="gpu", devices_per_node=8,
                   scheduler_args=[arg], **BASE)
    problems = backend_problems(spec)
    assert len(problems) == 1, problems
    assert repr(arg) in problems[0] and "which the job sets or refuses itself" in problems[0]
    assert pointer in problems[0]


@pytest.mark.parametrize("arg", ["--exclude=node[01-02]", "--reservation=maint", "--exclusive",
                                 "--mail-type=END,FAIL", "--dependency=afterok:12", "-x",
                                 "--comment=sweep 3", "--nice=10"])
def test_other_sbatch_options_pass(arg: str) -> None:
    spec = JobSpec(backend="slurm", device_kind="gpu", devices_per_node=8,
                   scheduler_args=[arg], **BASE)
    assert backend_problems(spec) == []
    assert rendered_job(spec.validate()).submit_command[-2] == arg


# ---- image references as each runtime reads them ---------------------------------------------


@pytest.mark.parametrize(("image", "pyxis", "apptainer"), [
    ("registry.example.com/team/rlaunch-gpu:0.1", "registry.example.com#team/rlaunch-gpu:0.1",
     "docker://registry.example.com/team/rlaunch-gpu:0.1"),
    ("host:5000/x:1", "host:5000#x:1", "docker://host:5000/x:1"),
    ("localhost/rlaunch-cpu:1", "localhost#rlaunch-cpu:1", "docker://localhost/rlaunch-cpu:1"),
    ("nvcr.io#nvidia/pytorch:24.01", "nvcr.io#nvidia/pytorch:24.01",
     "docker://nvcr.io/nvidia/pytorch:24.01"),
    ("team/rlaunch:1", "team/rlaunch:1", "docker://team/rlaunch:1"),  # Docker Hub
    ("/shared/images/rlaunch.sqsh", "/shared/images/rlaunch.sqsh", "/shared/images/rlaunch.sqsh"),
])
def test_image_reference_per_runtime(image: str, pyxis: str, apptainer: str) -> None:
    assert slurm_module.image_for_runtime(image, "pyxis") == pyxis
    assert slurm_module.image_for_runtime(image, "apptainer") == apptainer


def test_registry_image_reaches_apptainer_and_pyxis_in_their_forms() -> None:
    image = "registry.example.com/team/rlaunch-gpu:0.1"
    script = render(device_kind="gpu", devices_per_node=2, image=image,
                    backend_options={"container_runtime": "apptainer", "cpus_per_gpu": 1})
    assert " docker://registry.example.com/team/rlaunch-gpu:0.1 " in script
    script = render(device_kind="gpu", devices_per_node=2, image=image,
                    backend_options={"container_runtime": "pyxis", "cpus_per_gpu": 1})
    assert "'--container-image=registry.example.com#team/rlaunch-gpu:0.1' " in script


def test_runc_is_refused_for_other_users_than_root(tmp_path: Path, monkeypatch, capsys) -> None:
    from launcher.backends import slurm_container

    (tmp_path / "config.json").write_text("{}")
    spec = JobSpec(backend="slurm", image=str(tmp_path), devices_per_node=2,
                   backend_options={"container_runtime": "runc"}, **BASE)
    monkeypatch.setattr(slurm_module.os, "geteuid", lambda: 1000)
    problems = backend_problems(spec)
    assert problems == [("container_runtime=runc runs only as root (this project's test "
                         "clusters); use apptainer or pyxis")]
    assert slurm_container.run_runc(tmp_path, "/", [], ["true"]) == 1
    assert "runs only as root" in capsys.readouterr().err


# ---- the batch script run with stand-in Slurm commands ---------------------------------------
# Only the batch shell is real here: `scontrol show node` answers from a file, `srun` records
# its arguments. The real daemons run the same script in tests/slurm/test_multinode_*.py.

FAKE_SCONTROL = """#!/bin/bash
if [ "$1 $2" = "show node" ]; then cat "$FAKE_NODES"; exit 0; fi
if [ "$1 $2" = "show job" ]; then cat "$FAKE_JOB" 2>/dev/null; exit 0; fi
echo "scontrol $*" >> "$FAKE_LOG"
[ "$1" != requeue ]  # a requeue "fails": the script would otherwise wait for its end
"""
# The rank step: with $FAKE_STOP set, it stops as stopped ranks do (rank 0's requeue marker),
# after sending the batch shell $FAKE_STOP unless that is "steps-only".
FAKE_SRUN = """#!/bin/bash
printf '%s\\n' "srun $*" >> "$FAKE_LOG"
if [ -n "$FAKE_STOP" ] && [[ "$*" == *msrun* ]]; then
    [ "$FAKE_STOP" = steps-only ] || kill -s "$FAKE_STOP" "$PPID"
    sleep 0.2; touch "$RLAUNCH_REQUEUE_MARKER"; exit 1
fi
"""
FAKE_GETENT = """#!/bin/bash
# getent ahostsv4 NAME, from $FAKE_HOSTS lines "IP NAME"
awk -v n="$2" '$2 == n { print $1 "  STREAM " n }' "$FAKE_HOSTS"
"""


def run_batch_script(tmp_path: Path, script: str, nodes: str, hosts: str = "",
                     node_name: str = "gpu-a01",
                     node_count: int = 2, extra_env: dict[str, str] | None = None,
                     ) -> tuple[subprocess.CompletedProcess, str]:
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, text in (("scontrol", FAKE_SCONTROL), ("srun", FAKE_SRUN),
                       ("getent", FAKE_GETENT)):
        (fake / name).write_text(text)
        (fake / name).chmod(0o755)
    (tmp_path / "nodes").write_text(nodes)
    (tmp_path / "hosts").write_text(hosts)
    job_dir = tmp_path / "job"
    (job_dir / "code").mkdir(parents=True)  # the code snapshot `submit` makes
    (job_dir / "sbatch.sh").write_text(script)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "FAKE_NODES": str(tmp_path / "nodes"),
           "FAKE_HOSTS": str(tmp_path / "hosts"), "FAKE_LOG": str(tmp_path / "log"),
           "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu-a[01-02]",
           "SLURM_JOB_NUM_NODES": str(node_count), "SLURMD_NODENAME": node_name,
           "FAKE_JOB": str(tmp_path / "job_view"), **(extra_env or {})}
    done = subprocess.run(["bash", "sbatch.sh"], cwd=job_dir, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    log = (tmp_path / "log").read_text() if (tmp_path / "log").exists() else ""
    return done, log


NODE_LINES = ("NodeName=gpu-a01 Arch=x86_64 CoresPerSocket=16 NodeAddr=10.20.0.7 "
              "NodeHostName=gpu-a01 State=ALLOCATED\n"
              "NodeName=gpu-a02 Arch=x86_64 CoresPerSocket=16 NodeAddr=10.20.0.8 "
              "NodeHostName=gpu-a02 State=ALLOCATED\n")


def msrun_flag(log: str, flag: str) -> str:
    (line,) = [x for x in log.splitlines() if x.startswith("srun ") and "msrun" in x]
    return line.split(f"--{flag}=")[1].split()[0]


@pytest.mark.parametrize(("stop", "job_view", "requeued", "said"), [
    # The user's own scancel (as seen: the job COMPLETING, not requeued, not preempted).
    ("TERM", "JobId=4242 JobState=COMPLETING Restarts=0 PreemptTime=None", False,
     "cancelled with scancel; not requeued"),
    # PreemptMode=REQUEUE: Slurm requeued the job before the TERM; not spent from the budget.
    ("TERM", "JobId=4242 JobState=COMPLETING Restarts=1 PreemptTime=None", True,
     "ranks saved (step exit 1); requeueing job 4242"),
    # PreemptMode=CANCEL with GraceTime: TERM to the steps only, PreemptTime set, still running.
    ("steps-only", "JobId=4242 JobState=RUNNING Restarts=0 PreemptTime=2026-12-03T18:14:14",
     True, "preempted (TERM to the ranks only)"),
    # A stop nobody announced spends the user's budget, here 0.
    ("steps-only", "JobId=4242 JobState=RUNNING Restarts=0 PreemptTime=None", False,
     "stopped with no restarts left (0/0)"),
    # slurmctld did not answer: a TERM is taken as a preemption, as before.
    ("TERM", "", True, "ranks saved (step exit 1); requeueing job 4242"),
])
def test_who_stopped_the_ranks_decides_the_requeue(tmp_path: Path, stop: str, job_view: str,
                                                   requeued: bool, said: str) -> None:
    script = render(device_kind="gpu", devices_per_node=2, code_dir=str(tmp_path),
                    max_restarts=0, backend_options={"cpus_per_gpu": 1})
    (tmp_path / "job_view").write_text(job_view + "\n")
    done, log = run_batch_script(tmp_path, script, NODE_LINES, extra_env={"FAKE_STOP": stop})
    assert done.returncode == 75, done.stderr
    assert f"rlaunch: {said}" in done.stderr
    assert ("scontrol requeue 4242" in log) is requeued


def test_master_address_is_the_nodes_slurm_address_not_its_host_name(tmp_path: Path) -> None:
    """Node names that are not host names: the address comes from NodeAddr."""
    script = render(device_kind="gpu", devices_per_node=2, code_dir=str(tmp_path),
                    backend_options={"cpus_per_gpu": 1})
    done, log = run_batch_script(tmp_path, script, NODE_LINES)
    assert done.returncode == 0, done.stderr
    assert msrun_flag(log, "master_addr") == "10.20.0.7"
    assert (tmp_path / "job" / "nodes-0").read_text() == "gpu-a01 10.20.0.7\ngpu-a02 10.20.0.8\n"


def test_node_addr_by_name_skips_the_loopback_answer(tmp_path: Path) -> None:
    """NodeAddr a host name that resolves to 127.0.1.1 first (Debian's /etc/hosts) and then
    to its real address: the real one."""
    nodes = NODE_LINES.replace("NodeAddr=10.20.0.7", "NodeAddr=gpu-a01")
    script = render(device_kind="gpu", devices_per_node=2, code_dir=str(tmp_path),
                    backend_options={"cpus_per_gpu": 1})
    done, log = run_batch_script(tmp_path, script, nodes,
                                 hosts="127.0.1.1 gpu-a01\n10.20.0.7 gpu-a01\n")
    assert done.returncode == 0, done.stderr
    assert msrun_flag(log, "master_addr") == "10.20.0.7"


def test_a_master_with_only_a_loopback_address_fails_in_one_line(tmp_path: Path) -> None:
    nodes = NODE_LINES.replace("NodeAddr=10.20.0.7", "NodeAddr=gpu-a01")
    script = render(device_kind="gpu", devices_per_node=2, code_dir=str(tmp_path),
                    backend_options={"cpus_per_gpu": 1})
    done, log = run_batch_script(tmp_path, script, nodes, hosts="127.0.1.1 gpu-a01\n")
    assert done.returncode == 1
    assert "rlaunch: no address other nodes can reach for gpu-a01" in done.stderr
    assert "msrun" not in log  # nothing started


def test_a_one_node_job_may_use_loopback(tmp_path: Path) -> None:
    """One node whose name resolves only to 127.0.1.1: msrun's ranks are all local."""
    nodes = "NodeName=vm Arch=x86_64 NodeAddr=vm NodeHostName=vm State=ALLOCATED\n"
    script = render(device_kind="gpu", devices_per_node=2, code_dir=str(tmp_path),
                    backend_options={"cpus_per_gpu": 1})
    done, log = run_batch_script(tmp_path, script, nodes, hosts="127.0.1.1 vm\n",
                                 node_name="vm", node_count=1)
    assert done.returncode == 0, done.stderr
    assert msrun_flag(log, "master_addr") == "127.0.0.1"


def test_master_port_is_below_the_ephemeral_range(tmp_path: Path) -> None:
    script = render(device_kind="gpu", devices_per_node=2, code_dir=str(tmp_path),
                    backend_options={"cpus_per_gpu": 1})
    done, log = run_batch_script(tmp_path, script, NODE_LINES)
    assert done.returncode == 0, done.stderr
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert 20000 <= int(msrun_flag(log, "master_port")) < low


def test_a_failed_node_ends_the_msrun_step() -> None:
    script = render(device_kind="gpu", devices_per_node=2, backend_options={"cpus_per_gpu": 1})
    (line,) = [x for x in script.splitlines() if x.startswith("srun ")]
    assert "--kill-on-bad-exit=1 --wait=120 " in line


# ---- Ascend steps on the nodes: the job dir's copy, the ranks' Python -------------------------


def test_ascend_container_steps_use_the_images_python_not_this_machines() -> None:
    spec = CONTAINER_CASES["slurm_apptainer_ascend8.sh"].validate()
    rendered = rendered_job(spec)
    script = rendered.files["sbatch.sh"]
    assert set(rendered.files) == {"sbatch.sh", "slurm_rank.py", "rank_entry.py"}
    assert str(spec.python) not in script.split("trap 'on_signal USR1' USR1")[1]
    for step in ("register", "table", "run"):
        (line,) = [x for x in script.splitlines() if f'slurm_rank.py" {step} ' in x]
        assert "apptainer exec" in line.split("slurm_rank.py")[0]
        assert ' python "$SUBMITTED/slurm_rank.py"' in line


def test_ascend_apptainer_works_in_a_writable_dir_and_binds_only_present_host_paths() -> None:
    script = rendered_job(CONTAINER_CASES["slurm_apptainer_ascend8.sh"].validate()).files[
        "sbatch.sh"]
    assert '--pwd "$JOB_DIR/work"' in script and "--pwd /opt/venv" not in script
    assert " python /opt/venv/resnest/train.py " in script  # by path: the cwd is the work dir
    assert 'if [ -e "$path" ]; then host_binds="$host_binds,$path"; fi' in script
    assert "/usr/local/bin/npu-smi" in script and "/usr/local/dcmi" in script
    assert "/dev/davinci" not in script  # Apptainer binds /dev whole


def test_shipped_helpers_build_the_same_table_as_rlaunch_ranktable(tmp_path: Path) -> None:
    """The job dir's slurm_rank.py, run by a bare python3 outside this package (-E -s: no
    PYTHONPATH, no site-packages), registers two nodes and builds the table `rlaunch ranktable` would."""
    spec = JobSpec(backend="slurm", device_kind="ascend", nodes=2, devices_per_node=2,
                   **BASE).validate()
    job = tmp_path / "job"
    rendered_job(spec).write(job)
    (job / "nodes-0").write_text("rlnode0 10.0.0.12\nrlnode1 10.0.0.11\n")
    hccn = {"rlnode0": "address_0=192.168.0.1\naddress_1=192.168.0.2\n",
            "rlnode1": "address_0=192.168.1.1\naddress_1=192.168.1.2\n"}
    (job / "hccn-0").mkdir()
    for node, text in hccn.items():
        conf = tmp_path / f"{node}.conf"
        conf.write_text(text)
        done = subprocess.run(["python3", "-E", "-s", str(job / "slurm_rank.py"), "register",
                               str(job / "hccn-0"), str(conf), str(job / "nodes-0")],
                              env={"SLURMD_NODENAME": node}, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, done.stderr
    done = subprocess.run(["python3", "-E", "-s", str(job / "slurm_rank.py"), "table",
                           str(job / "hccn-0"), "0,1", "2", str(job / "rank_table.json")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    expected = build_rank_table({"10.0.0.12": {0: "192.168.0.1", 1: "192.168.0.2"},
                                 "10.0.0.11": {0: "192.168.1.1", 1: "192.168.1.2"}}, [0, 1])
    assert json.loads((job / "rank_table.json").read_text()) == json.loads(expected.render())


def test_table_step_fails_when_a_node_did_not_register(tmp_path: Path) -> None:
    from launcher.backends.slurm_rank import write_table

    (tmp_path / "10.0.0.11.conf").write_text("address_0=192.168.1.1\n")
    with pytest.raises(RankLookupError, match="1 of 2 nodes registered"):
        write_table(tmp_path, [0], 2, tmp_path / "t.json")


def test_register_refuses_a_loopback_node_address(tmp_path: Path) -> None:
    from launcher.backends.slurm_rank import register

    (tmp_path / "nodes").write_text("n1 127.0.1.1\nn2 10.0.0.2\n")
    (tmp_path / "hccn.conf").write_text("address_0=192.168.1.1\n")
    with pytest.raises(RankLookupError, match="loopback address 127.0.1.1"):
        register(tmp_path, tmp_path / "hccn.conf", tmp_path / "nodes", "n1")


# ---- the environment the ranks see inside an image ---------------------------------------------


def test_env_wins_over_the_images_own_values() -> None:
    env = {"PYTHONUNBUFFERED": "0", "NCCL_DEBUG": "INFO"}
    pyxis = render(device_kind="gpu", devices_per_node=2, image="img:1", env=env,
                   backend_options={"container_runtime": "pyxis", "cpus_per_gpu": 1})
    assert "--container-env=PYTHONUNBUFFERED,NCCL_DEBUG " in pyxis
    apptainer = render(device_kind="gpu", devices_per_node=2, image="img:1", env=env,
                       backend_options={"container_runtime": "apptainer", "cpus_per_gpu": 1})
    assert "export APPTAINERENV_PYTHONUNBUFFERED=0\n" in apptainer
    assert "export APPTAINERENV_NCCL_DEBUG=INFO\n" in apptainer


def test_users_local_site_packages_stay_out() -> None:
    for image in (None, "img:1"):
        opts = {"cpus_per_gpu": 1, **({"container_runtime": "apptainer"} if image else {})}
        script = render(device_kind="gpu", devices_per_node=2, image=image,
                        backend_options=opts)
        assert "export PYTHONNOUSERSITE=1\n" in script


def test_sbatch_variables_of_the_user_do_not_override_the_script(tmp_path: Path,
                                                                  monkeypatch) -> None:
    """sbatch reads SBATCH_* over #SBATCH lines: those that contradict the job are left out of
    sbatch's environment; a default partition stays when the job names none."""
    seen: dict[str, str] = {}

    def fake_run(argv, timeout=30, env=None):
        seen.update(env or {})
        return subprocess.CompletedProcess(argv, 0, "77\n", "")

    monkeypatch.setattr(slurm_module, "_run", fake_run)
    for name, value in {"SBATCH_NO_REQUEUE": "1", "SBATCH_SIGNAL": "USR2@10",
                        "SBATCH_OPEN_MODE": "truncate", "SBATCH_GPUS_PER_NODE": "1",
                        "SBATCH_ACCOUNT": "other", "SBATCH_PARTITION": "debug",
                        "SLURM_CONF": "/etc/slurm/x.conf"}.items():
        monkeypatch.setenv(name, value)
    backend = get_backend("slurm")
    (tmp_path / "resnest").mkdir()
    spec = JobSpec(backend="slurm", device_kind="gpu", devices_per_node=2, account="vision",
                   backend_options={"cpus_per_gpu": 1},
                   **{**BASE, "code_dir": str(tmp_path)}).validate()
    assert backend.submit(spec, rendered_job(spec), tmp_path / "job") == "77"
    assert not {"SBATCH_NO_REQUEUE", "SBATCH_SIGNAL", "SBATCH_OPEN_MODE",
                "SBATCH_GPUS_PER_NODE", "SBATCH_ACCOUNT"} & set(seen)
    assert seen["SBATCH_PARTITION"] == "debug" and seen["SLURM_CONF"] == "/etc/slurm/x.conf"


def test_submit_snapshots_the_code_the_job_runs(tmp_path: Path, monkeypatch) -> None:
    """A requeued run executes what was submitted: the package is copied into the job dir, and
    the script runs it from there."""
    monkeypatch.setattr(slurm_module, "_run", lambda argv, timeout=30, env=None:
                        subprocess.CompletedProcess(argv, 0, "77\n", ""))
    code = tmp_path / "checkout"
    (code / "resnest" / "__pycache__").mkdir(parents=True)
    (code / "resnest" / "train.py").write_text("print('as submitted')\n")
    (code / "resnest" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"")
    spec = JobSpec(backend="slurm", device_kind="gpu", devices_per_node=2,
                   backend_options={"cpus_per_gpu": 1},
                   **{**BASE, "code_dir": str(code)}).validate()
    backend = get_backend("slurm")
    rendered = rendered_job(spec)
    backend.submit(spec, rendered, tmp_path / "job")
    (code / "resnest" / "train.py").write_text("print('changed after submit')\n")
    snapshot = tmp_path / "job" / "code" / "resnest"
    assert (snapshot / "train.py").read_text() == "print('as submitted')\n"
    assert not (snapshot / "__pycache__").exists()
    script = rendered.files["sbatch.sh"]
    assert 'cd "$SUBMITTED/code" || exit 1\n' in script
    assert "export PYTHONPATH=\"$SUBMITTED/code${PYTHONPATH:+:$PYTHONPATH}\"\n" in script


def test_submit_without_the_package_is_one_line(tmp_path: Path) -> None:
    spec = JobSpec(backend="slurm", device_kind="gpu", devices_per_node=2,
                   backend_options={"cpus_per_gpu": 1},
                   **{**BASE, "code_dir": str(tmp_path)}).validate()
    backend = get_backend("slurm")
    with pytest.raises(slurm_module.BackendError, match="has no resnest/ package"):
        backend.submit(spec, rendered_job(spec), tmp_path / "job")


def test_container_jobs_give_the_nodes_time_to_pull_the_image() -> None:
    plain = render(device_kind="gpu", devices_per_node=2, backend_options={"cpus_per_gpu": 1})
    assert "--cluster_time_out" not in plain  # msrun's 600 s
    image = render(device_kind="gpu", devices_per_node=2, image="img:1",
                   backend_options={"container_runtime": "pyxis", "cpus_per_gpu": 1})
    assert " --join=True --cluster_time_out=1800 resnest/train.py " in image


def test_whole_node_jobs_ask_for_all_the_memory() -> None:
    """An exclusive job gets only the memory it asks for (sbatch.1 --exclusive): --mem=0."""
    for cards, ids in ((8, None), (4, [4, 5, 6, 7])):
        script = render(device_kind="ascend", devices_per_node=cards, device_ids=ids)
        assert "#SBATCH --mem=0\n" in script
    gpu = render(device_kind="gpu", devices_per_node=2, backend_options={"cpus_per_gpu": 1})
    assert "--mem" not in gpu  # a part of a node: the site's DefMemPerCPU/GPU


# ---- what Slurm users set on top of a job ------------------------------------------------------


def test_request_options_reach_sbatch_as_its_own_options() -> None:
    spec = JobSpec(backend="slurm", device_kind="gpu", devices_per_node=8,
                   backend_options={"exclude": "gpu[01-02],gpu07", "reservation": "maint",
                                    "comment": "lr sweep 3; seed 1", "mail_type": ["END", "FAIL"],
                                    "mail_user": "ana@example.org", "dependency": "afterok:12:13",
                                    "cpus_per_gpu": 1},
                   scheduler_args=["--nice=10"], **BASE).validate()
    assert backend_problems(spec) == []
    command = rendered_job(spec).submit_command
    assert command[4:-1] == ["--exclude=gpu[01-02],gpu07", "--reservation=maint",
                             "--comment=lr sweep 3; seed 1", "--mail-user=ana@example.org",
                             "--dependency=afterok:12:13", "--mail-type=END,FAIL", "--nice=10"]


@pytest.mark.parametrize(("opts", "message"), [
    ({"mail_type": "END,SOMETIMES"}, "--opt mail_type 'SOMETIMES' is not one of NONE, BEGIN"),
    ({"dependency": "after:x"}, "--opt dependency 'after:x' is not TYPE:JOB_ID"),
    ({"mem": "64 GB"}, "--opt mem '64 GB' is not a size like 64G"),
    ({"exclude": "-n1"}, "--opt exclude '-n1' is not a node list"),
    ({"srun_args": "--mpi=pmix,--ntasks=4"},
     "--opt srun_args '--ntasks=4' is not an srun option the job does not set itself"),
    ({"srun_args": "-K0"}, "--opt srun_args '-K0' is not an srun option the job does not set"),
    ({"gpu_type": "a100:8"}, "--opt gpu_type 'a100:8' is not a gres type like a100"),
])
def test_request_options_are_checked(opts: dict, message: str) -> None:
    spec = JobSpec(backend="slurm", device_kind="gpu", devices_per_node=2, backend_options=opts,
                   **BASE)
    problems = backend_problems(spec)
    assert len(problems) == 1 and message in problems[0], problems


def test_gpu_type_names_the_gres_type() -> None:
    script = render(device_kind="gpu", devices_per_node=8,
                    backend_options={"gpu_type": "a100", "cpus_per_gpu": 1})
    assert "#SBATCH --gpus-per-node=a100:8\n" in script
    script = render(device_kind="gpu", devices_per_node=8,
                    backend_options={"gpu_type": "a100", "gpu_request": "gres", "cpus_per_gpu": 1})
    assert "#SBATCH --gres=gpu:a100:8\n" in script


def test_memory_request() -> None:
    script = render(device_kind="gpu", devices_per_node=2,
                    backend_options={"mem": "64G", "cpus_per_gpu": 1})
    assert "#SBATCH --mem=64G\n" in script
    script = render(device_kind="ascend", devices_per_node=8, backend_options={"mem": "500G"})
    assert "#SBATCH --mem=500G\n" in script and "--mem=0" not in script


def test_ascend_sites_without_a_gres_get_whole_nodes() -> None:
    script = render(device_kind="ascend", devices_per_node=8,
                    backend_options={"ascend_gres": "none"})
    assert "#SBATCH --exclusive\n" in script and "--gres" not in script


def test_srun_arguments_go_to_the_rank_steps() -> None:
    script = render(device_kind="gpu", devices_per_node=2,
                    backend_options={"srun_args": ["--mpi=pmix", "--network=sn all"],
                                     "cpus_per_gpu": 1})
    (line,) = [x for x in script.splitlines() if x.startswith("srun ")]
    assert " --wait=120 --mpi=pmix '--network=sn all' bash -c " in line
    script = render(device_kind="ascend", devices_per_node=8,
                    backend_options={"srun_args": ["--mpi=pmix"]})
    (card_step,) = [x for x in script.splitlines() if 'slurm_rank.py" run' in x]
    assert "--kill-on-bad-exit=1 --mpi=pmix " in card_step


def test_setup_lines_run_before_the_ranks_and_a_failing_one_ends_the_job(tmp_path: Path) -> None:
    script = render(device_kind="gpu", devices_per_node=2, code_dir=str(tmp_path),
                    backend_options={"cpus_per_gpu": 1,
                                     "setup": ["export SETUP_SAW=\"$SLURM_JOB_ID x\"",
                                               "echo \"setup: $SETUP_SAW\" >&2"]})
    (tmp_path / "ok").mkdir()
    done, log = run_batch_script(tmp_path / "ok", script, NODE_LINES)
    assert done.returncode == 0, done.stderr
    assert "setup: 4242 x" in done.stderr and "msrun" in log
    script = render(device_kind="gpu", devices_per_node=2, code_dir=str(tmp_path),
                    backend_options={"cpus_per_gpu": 1, "setup": ["module load nosuchthing"]})
    (tmp_path / "bad").mkdir()
    done, log = run_batch_script(tmp_path / "bad", script, NODE_LINES)
    assert done.returncode == 1
    assert "rlaunch: setup line 1 failed: module load nosuchthing" in done.stderr
    assert "msrun" not in log
