"""The preflight decisions over gathered facts: real folders for the data checks, recorded
scheduler output (Slurm 22.05 `scontrol show partition -o`, `sinfo -N -o '%N|%c|%G|%t'`) for the
Slurm ones, and the job checks over the training config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from launcher.preflight import FAIL, PASS, SKIP, data, job, slurm
from launcher.preflight.footprint import footprint
from launcher.spec import JobSpec

# Recorded from the repo's one-node test cluster (scripts/slurm_cluster.sh), plus a second
# partition as `scontrol create partition` writes it.
PARTITIONS = (
    "PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL "
    "Default=YES QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 "
    "Hidden=NO MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED "
    "Nodes=node1 PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO "
    "OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=16 TotalNodes=1 SelectTypeParameters=NONE"
    " JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED\n"
    "PartitionName=short AllowGroups=ALL AllowAccounts=vision,nlp AllowQos=ALL Default=NO "
    "DefaultTime=00:10:00 MaxTime=01:00:00 Nodes=node1 State=UP TotalCPUs=16 TotalNodes=1\n"
)
NODES_GPU = "node1|16|gpu:8|idle\n"
NODES_TYPED = "a01|64|gpu:a100:4(S:0-1),npu:0|mix\na02|64|gpu:a100:8(S:0-1)|idle\n"


def spec(**kw) -> JobSpec:
    base = {"backend": "slurm", "device_kind": "gpu", "devices_per_node": 8,
            "data_dir": "/d", "output_dir": "/o"}
    return JobSpec(**{**base, **kw})


def opts_of(s: JobSpec) -> Any:
    from launcher.backends import get_backend

    opts, problems = get_backend(s.backend).parse_options(s)
    assert not problems, problems
    return opts


def slurm_checks(text: str = PARTITIONS, sinfo: str = NODES_GPU, **kw) -> dict[str, slurm.Check]:
    facts = slurm.SlurmFacts(slurm.parse_partitions(text), nodes=slurm.parse_nodes(sinfo))
    for key in ("account_exists", "qos_exists", "accounting_error"):
        if key in kw:
            setattr(facts, key, kw.pop(key))
    s = spec(**kw)
    return {c.name: c for c in slurm.decide(s, opts_of(s), facts)}


# ---- Slurm ------------------------------------------------------------------------------------


def test_slurm_the_default_partition_with_enough_gpus_passes() -> None:
    checks = slurm_checks()
    assert [c.status for c in checks.values()] == [PASS] * 4
    assert "'debug' (the default)" in checks["slurm.partition"].message


def test_slurm_a_missing_partition_fails_and_lists_the_real_ones() -> None:
    check = slurm_checks(partition="gpux")["slurm.partition"]
    assert check.status == FAIL
    assert "'gpux' does not exist: use one of debug, short" in check.message


def test_slurm_more_gpus_than_a_node_has_fails() -> None:
    check = slurm_checks(sinfo=NODES_TYPED, devices_per_node=8)
    assert check["slurm.devices"].status == PASS  # a02 has 8
    assert "(a100)" in check["slurm.devices"].message
    two = slurm_checks(sinfo=NODES_TYPED, nodes=2)
    assert two["slurm.devices"].status == FAIL
    assert "1 node(s) of 'debug' have that many (most per node: 8)" in two["slurm.devices"].message


def test_slurm_a_partition_without_the_gres_fails() -> None:
    check = slurm_checks(sinfo="cpu1|32|(null)|idle\n", device_kind="ascend",
                         devices_per_node=8)["slurm.devices"]
    assert check.status == FAIL and "offers no gres 'npu' (its gres: none)" in check.message


def test_slurm_time_over_maxtime_fails() -> None:
    check = slurm_checks(partition="short", time_limit="02:00:00", account="vision")
    assert check["slurm.time"].status == FAIL
    assert "over the MaxTime of partition 'short' (01:00:00)" in check["slurm.time"].message
    assert slurm_checks(partition="short", time_limit="59:00")["slurm.time"].status == PASS


def test_slurm_account_not_allowed_missing_or_unknowable() -> None:
    refused = slurm_checks(partition="short", account="physics", account_exists=True)
    assert refused["slurm.account"].status == FAIL
    assert "AllowAccounts=vision,nlp" in refused["slurm.account"].message
    missing = slurm_checks(account="nobody", account_exists=False)["slurm.account"]
    assert missing.status == FAIL and "does not exist" in missing.message
    unknown = slurm_checks(account="x", account_exists=None,
                           accounting_error="Slurm accounting storage is disabled")
    assert unknown["slurm.account"].status == SKIP
    assert "accounting storage is disabled" in unknown["slurm.account"].message


def test_slurm_image_forms_per_runtime(tmp_path: Path) -> None:
    sif = tmp_path / "rlaunch.sif"
    sif.write_bytes(b"")
    opts = {"container_runtime": "apptainer"}
    assert slurm_checks(image=str(sif), backend_options=opts)["slurm.image"].status == PASS
    gone = slurm_checks(image=str(tmp_path / "gone.sif"), backend_options=opts)["slurm.image"]
    assert gone.status == FAIL and "does not exist" in gone.message
    bare = slurm_checks(image="reg.example/ml/x:1", backend_options=opts)["slurm.image"]
    assert bare.status == FAIL and "absolute .sif" in bare.message
    pyxis = slurm_checks(image="nvcr.io/nvidia/pytorch:24.01",
                         backend_options={"container_runtime": "pyxis"})["slurm.image"]
    assert pyxis.status == FAIL and "nvcr.io#nvidia/pytorch:24.01" in pyxis.message


def test_slurm_unreachable_controller_is_one_failure() -> None:
    facts = slurm.SlurmFacts(None, partitions_error="Unable to contact slurm controller")
    (check,) = slurm.decide(spec(), opts_of(spec()), facts)
    assert check.status == FAIL and "Unable to contact slurm controller" in check.message


@pytest.mark.parametrize(("text", "seconds"), [
    ("30", 1800), ("1:30", 90), ("02:00:00", 7200), ("1-00", 86400), ("2-01:30", 178200),
    ("1-00:00:01", 86401), ("UNLIMITED", None), ("INFINITE", None), ("x", None),
])
def test_slurm_time_formats(text: str, seconds: int | None) -> None:
    assert slurm.parse_time(text) == seconds


def test_slurm_gres_with_types_and_sockets() -> None:
    counts, types = slurm.parse_gres("gpu:a100:4(S:0-1),gpu:v100:2,npu:8")
    assert counts == {"gpu": 6, "npu": 8} and types == {"gpu": {"a100", "v100"}}


# ---- data -------------------------------------------------------------------------------------


def data_check(root: Path, task: str = "train", **kw) -> dict[str, data.Check]:
    s = JobSpec(data_dir=str(root), output_dir=str(root.parent / "out"), task=task,
                overrides=["num_classes=2"], **kw)
    return {c.name: c for c in data.decide(data.gather(s))}


def make_set(root: Path, splits=("train", "val"), classes=("cat", "dog")) -> Path:
    for split in splits:
        for name in classes:
            (root / split / name).mkdir(parents=True)
            (root / split / name / "a.JPEG").write_bytes(b"x")
    return root


def test_data_a_complete_set_passes(tmp_path: Path) -> None:
    checks = data_check(make_set(tmp_path / "d"))
    assert checks["data.layout"].status == PASS
    assert "train/ 2 classes, val/ 2 classes" in checks["data.layout"].message
    assert checks["data.output"].status == PASS


def test_data_without_val_fails(tmp_path: Path) -> None:
    check = data_check(make_set(tmp_path / "d", splits=("train",)))["data.layout"]
    assert check.status == FAIL and "has no val/ folder" in check.message


def test_data_eval_needs_only_val(tmp_path: Path) -> None:
    assert data_check(make_set(tmp_path / "d", splits=("val",)), task="eval")[
        "data.layout"].status == PASS


def test_data_images_without_class_folders_fail(tmp_path: Path) -> None:
    root = make_set(tmp_path / "d", splits=("val",))
    (root / "train").mkdir()
    (root / "train" / "x.jpg").write_bytes(b"x")
    check = data_check(root)["data.layout"]
    assert check.status == FAIL and "train/ has no class folders (1 images" in check.message


def test_data_an_empty_class_folder_fails(tmp_path: Path) -> None:
    root = make_set(tmp_path / "d")
    (root / "val" / "eel").mkdir()
    (root / "train" / "eel").mkdir()
    (root / "train" / "eel" / "notes.txt").write_text("no images")
    check = data_check(root)["data.layout"]
    assert check.status == FAIL and "class folder(s) eel of train/ hold no image" in check.message


def test_data_more_classes_than_the_config_fails(tmp_path: Path) -> None:
    root = make_set(tmp_path / "d", classes=("a", "b", "c"))
    check = data_check(root)["data.layout"]
    assert check.status == FAIL and "--set num_classes=3" in check.message


def test_data_an_unwritable_output_fails() -> None:
    # /proc refuses new files even to root, whose writes pass permission bits elsewhere.
    problem = data.output_problem("/proc/rlaunch-run")
    assert problem is not None and "cannot write in '/proc'" in problem


def test_data_output_under_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert "is not a folder" in str(data.output_problem(str(tmp_path / "file" / "run")))


def test_data_shared_probe_lines_decide(tmp_path: Path) -> None:
    nodes = data.parse_probe_output("n1|ok|ok|ok\nn2|ok|missing|ok\nsrun: warning\n")
    facts = data.SharedFacts("/d", "/o", "/s/jobs", nodes)
    (check,) = data.decide_shared(facts)
    assert check.status == FAIL
    assert "the output folder '/o' is not shared with n2" in check.message
    facts.nodes = {"n1": ("ok",) * 3, "n2": ("ok",) * 3}
    assert data.decide_shared(facts)[0].status == PASS
    facts.error = "Unable to allocate resources: Requested node configuration is not available"
    assert "Requested node configuration" in data.decide_shared(facts)[0].message


def test_data_probe_passes_paths_as_arguments_not_script() -> None:
    hostile = "/x'; touch PWNED; '"
    argv = data.probe_argv(spec(partition="debug"), hostile, "", "/s/m", "t0k")
    assert argv[-5:] == ["sh", hostile, "", "/s/m", "t0k"] and hostile not in argv[-6]


# ---- the job ----------------------------------------------------------------------------------


def test_footprint_counts_the_official_resnest50_parameters() -> None:
    # PyTorch's count for the official resnest50 (FACTS.md): 27,483,240.
    assert footprint("resnest50", 1000, 224).parameters == 27_483_240


def job_checks(**kw) -> dict[str, job.Check]:
    memory = kw.pop("device_memory_gib", None)
    s = spec(**kw)
    return {c.name: c for c in job.decide(job.gather(s, opts_of(s), memory))}


def test_job_gpus_with_a_cpu_config_fails() -> None:
    check = job_checks(overrides=["device_target=CPU"])["job.device"]
    assert check.status == FAIL and "--set device_target=GPU" in check.message


def test_job_memory_fits_or_says_which_batch_does() -> None:
    assert job_checks()["job.memory"].status == PASS
    big = job_checks(overrides=["net_name=resnest269", "batch_size=512"])["job.memory"]
    assert big.status == FAIL and "--set batch_size=" in big.message
    fitting = int(big.message.split("--set batch_size=")[1].split()[0])
    assert job_checks(overrides=["net_name=resnest269", f"batch_size={fitting}"])[
        "job.memory"].status == PASS
    assert job_checks(overrides=["net_name=resnest269", f"batch_size={fitting + 1}"])[
        "job.memory"].status == FAIL


def test_job_memory_uses_the_ascend_chip_and_the_given_memory() -> None:
    on_910b = job_checks(device_kind="ascend", ascend_chip="910b",
                         overrides=["batch_size=256"])["job.memory"]
    assert "of 64 GiB (Ascend 910B)" in on_910b.message
    small = job_checks(device_memory_gib=4, overrides=["batch_size=64"])["job.memory"]
    assert small.status == FAIL and "of 4 GiB (--device-memory)" in small.message


def test_job_time_shorter_than_the_checkpoint_window_fails() -> None:
    check = job_checks(time_limit="2:00")["job.checkpoint"]
    assert check.status == FAIL and "signal_seconds=120 s" in check.message
    assert job_checks(time_limit="2:00", backend_options={"signal_seconds": 60})[
        "job.checkpoint"].status == PASS
    k8s = job_checks(backend="k8s", time_limit="2", backend_options={"grace_seconds": 90})
    assert k8s["job.checkpoint"].status == PASS
