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
    (script,) = backend.render(spec, opts).files.values()
    check_golden(name, script)


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
    assert "-m launcher.backends.slurm_rank \"$RANK_TABLE_FILE\" \"$LOG_DIR\" --" in script
    assert "--kill-on-bad-exit=1" in script
    assert "SLURM_PROCID" not in script.split("launcher.cli ranktable")[1]
    assert "#SBATCH --cpus-per-task=3\n" in script
    assert "--exclusive" not in script  # 8 cards: the gres is the whole server's cards
    part = render(device_kind="ascend", devices_per_node=4, device_ids=[4, 5, 6, 7])
    assert "#SBATCH --exclusive\n" in part  # cards named by number: only the whole node is sure


def test_sinfo_gres_parsing() -> None:
    assert _parse_gres_count("gpu:8", "gpu") == 8
    assert _parse_gres_count("gpu:a100:4(S:0-1),gpu:v100:2", "gpu") == 6
    assert _parse_gres_count("gpu:8,npu:8", "npu") == 8
    assert _parse_gres_count("(null)", "gpu") == 0


def test_cpus_per_device_from_sinfo_takes_the_smallest_node(monkeypatch) -> None:
    out = "64|gpu:8\n2|gpu:8,npu:8\n128|(null)\n"
    monkeypatch.setattr(slurm_module, "_run", lambda argv, timeout=30:
                        subprocess.CompletedProcess(argv, 0, out, ""))
    assert cpus_per_device_from_sinfo("gpu", None) == 1  # 2 CPUs / 8 GPUs, at least 1
    out = "64|gpu:8\n96|gpu:8\n"
    assert cpus_per_device_from_sinfo("gpu", "p") == 8
    assert cpus_per_device_from_sinfo("npu", None) is None


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
