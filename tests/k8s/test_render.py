"""Rendered Kubernetes manifests: golden files, schemas (strict), placement, hostile values.

Core kinds (ConfigMap, and every pod template and Job template inside a workload, wrapped as a
v1 PodTemplate / batch/v1 Job) are checked with `kubernetes-validate --strict` against the
official OpenAPI schemas. AscendJob, Volcano Job and JobSet are checked against the JSON schemas
next to this file, written from the upstream CRDs (each cites its source).

Regenerate the golden files after an intended change with
`RLAUNCH_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/k8s/test_render.py` and review the diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher.backends.k8s import KubernetesBackend
from launcher.spec import JobSpec

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
SCHEMAS = {"AscendJob": "ascendjob", "Job": "vcjob", "JobSet": "jobset"}
VALIDATE_VERSIONS = ("1.30.0", "latest")
JOB_ID = "resnest-1a2b3c"


def device_ips_file(tmp_path: Path, servers: tuple[str, ...] = ("10.0.0.9", "10.0.0.10")) -> str:
    path = tmp_path / "device-ips.yaml"
    path.write_text(yaml.safe_dump({
        server: [f"192.168.{server.rsplit('.', 1)[1]}.{card}" for card in range(8)]
        for server in servers}))
    return str(path)


def spec_for(case: str, tmp_path: Path) -> JobSpec:
    base: dict[str, Any] = {
        "name": "resnest", "job_id": JOB_ID, "backend": "k8s", "data_dir": "/data/imagenet",
        "output_dir": "/output", "config": "resnest/configs/resnest50-imagenet.yaml",
        "overrides": ["epochs=90"], "time_limit": "2-00:00:00", "master_port": 8118, "nodes": 2,
        "devices_per_node": 8,
    }
    options: dict[str, Any] = {"data_pvc": "imagenet", "output_pvc": "runs", "namespace": "ml"}
    if case == "ascend910-2x8-acjob":
        base.update(device_kind="ascend", image="registry.example/rn:ascend")
        base.update(ascend_chip="910")
        options.update(volcano_queue="training", workload="acjob")
    elif case == "ascend910b-2x8-acjob":
        base.update(device_kind="ascend", image="registry.example/rn:ascend")
        options.update(workload="acjob")
    elif case == "ascend910b-2x8":
        base.update(device_kind="ascend", image="registry.example/rn:ascend")
    elif case == "ascend910-4cards-4to7-vcjob":
        base.update(device_kind="ascend", devices_per_node=4, device_ids=[4, 5, 6, 7],
                    image="registry.example/rn:ascend")
        base.update(ascend_chip="910")
        options.update(workload="vcjob", device_ips=device_ips_file(tmp_path),
                       ascend_driver_mounts=True)
    elif case == "gpu-2x8":
        base.update(device_kind="gpu", image="registry.example/rn:gpu")
    elif case == "gpu-2x8-kueue-rdma":
        base.update(device_kind="gpu", image="registry.example/rn:gpu")
        options.update(kueue_queue="team-a", host_network="true",
                       pod_annotations="k8s.v1.cni.cncf.io/networks=rdma-net",
                       extra_resources="rdma/hca_shared_devices_a=1",
                       supplemental_groups="1001,44")
    elif case == "gpu-2x8-vcjob":
        base.update(device_kind="gpu", image="registry.example/rn:gpu")
        options.update(workload="vcjob", volcano_queue="training", priority_class="high",
                       image_pull_secrets="regcred", service_account="trainer",
                       node_selector="pool=a100", tolerations="dedicated=ml:NoSchedule",
                       cpu="64", memory="512Gi")
    backend = KubernetesBackend()
    spec = JobSpec(**base, backend_options=options)
    return backend.prepare(spec, backend.options_of(spec))[0].validate()


CASES = ("ascend910-2x8-acjob", "ascend910b-2x8-acjob", "ascend910b-2x8",
         "ascend910-4cards-4to7-vcjob", "gpu-2x8", "gpu-2x8-kueue-rdma", "gpu-2x8-vcjob")


def render(spec: JobSpec) -> str:
    backend = KubernetesBackend()
    opts = backend.options_of(spec)
    assert backend.problems(spec, opts) == []
    return backend.render(spec, opts).dry_run_text()


def docs_of(text: str) -> dict[str, dict[str, Any]]:
    """Rendered objects by kind (the workload under the key "workload")."""
    out: dict[str, dict[str, Any]] = {}
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        name = doc["metadata"]["name"]
        key = "workload" if doc["kind"] != "ConfigMap" else (
            "rings" if name.startswith("rings-config-") else "config")
        out[key] = doc
    return out


def pod_templates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] == "AscendJob":
        return [r["template"] for r in doc["spec"]["replicaSpecs"].values()]
    if doc["kind"] == "Job":
        return [t["template"] for t in doc["spec"]["tasks"]]
    return [r["template"]["spec"]["template"] for r in doc["spec"]["replicatedJobs"]]


def core_objects(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Core-kind objects to check strictly: the doc itself or what a workload embeds."""
    if doc["apiVersion"] == "v1":
        return [doc]
    out = [{"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
            "template": template} for template in pod_templates(doc)]
    if doc["kind"] == "JobSet":
        out += [{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "t"},
                 "spec": r["template"]["spec"]} for r in doc["spec"]["replicatedJobs"]]
    return out


def validate(doc: dict[str, Any], version: str) -> None:
    import jsonschema
    import kubernetes_validate

    if doc["apiVersion"] != "v1":
        schema = json.loads((HERE / f"{SCHEMAS[doc['kind']]}.schema.json").read_text())
        jsonschema.validate(doc, schema)
    if version == "latest":
        version = kubernetes_validate.latest_version()
    for obj in core_objects(doc):
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("case", CASES)
def test_golden_and_schema_valid(case: str, tmp_path: Path) -> None:
    text = render(spec_for(case, tmp_path)).replace(str(tmp_path), "TMP")
    golden = GOLDEN / f"{case}.yaml"
    if os.environ.get("RLAUNCH_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        for version in VALIDATE_VERSIONS:
            validate(doc, version)


def test_schema_validation_catches_bad_manifests(tmp_path: Path) -> None:
    """The validation above can fail: unknown fields and wrong values are rejected."""
    import jsonschema

    for case, break_it in (
        ("ascend910b-2x8-acjob", lambda d: d["spec"].update(minAvailable=3)),  # not an AscendJob field
        ("ascend910b-2x8-acjob", lambda d: d["spec"]["replicaSpecs"]["Worker"]["template"]["spec"]
         ["containers"][0].update(name="trainer")),  # the operator needs "ascend"
        ("gpu-2x8-vcjob", lambda d: d["spec"]["policies"].append(
            {"event": "PodLost", "action": "RestartJob"})),
        ("gpu-2x8", lambda d: d["spec"]["failurePolicy"].update(maxRestarts="3")),
        ("gpu-2x8", lambda d: pod_templates(d)[0]["spec"]["containers"][0].update(gpus=8)),
    ):
        doc = docs_of(render(spec_for(case, tmp_path)))["workload"]
        break_it(doc)
        with pytest.raises(jsonschema.ValidationError):
            validate(doc, "1.30.0")


def test_kubernetes_validate_cli_accepts_the_configmaps(tmp_path: Path) -> None:
    """The core objects of the dry-run stream pass the real CLI, strictly."""
    docs = docs_of(render(spec_for("ascend910b-2x8", tmp_path)))
    path = tmp_path / "stream.yaml"
    path.write_text(yaml.safe_dump_all([docs["config"], docs["rings"],
                                        *core_objects(docs["workload"])]))
    exe = Path(sys.executable).parent / "kubernetes-validate"
    done = subprocess.run([str(exe), "--strict", "-k", "1.30.0", str(path)], check=False,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed") == 3


@pytest.mark.parametrize(("case", "ring", "accelerator"), [
    ("ascend910-2x8-acjob", "ascend-910", "module"),
    ("ascend910b-2x8-acjob", "ascend-910b", "module-910b-8"),
])
def test_ascendjob_is_what_the_operator_runs(tmp_path: Path, case: str, ring: str,
                                             accelerator: str) -> None:
    docs = docs_of(render(spec_for(case, tmp_path)))
    job = docs["workload"]
    assert (job["apiVersion"], job["kind"]) == ("mindxdl.gitee.com/v1", "AscendJob")
    assert job["metadata"]["name"] == JOB_ID
    assert job["metadata"]["labels"]["framework"] == "mindspore"
    assert job["metadata"]["labels"]["ring-controller.atlas"] == ring
    assert job["spec"]["schedulerName"] == "volcano"
    assert job["spec"]["runPolicy"]["schedulingPolicy"]["minAvailable"] == 3  # scheduler + 2
    assert job["spec"]["runPolicy"]["backoffLimit"] == 3
    workers = job["spec"]["replicaSpecs"]["Worker"]
    assert workers["replicas"] == 2
    pod = workers["template"]["spec"]
    container = pod["containers"][0]
    assert container["name"] == "ascend"
    assert container["resources"]["limits"] == {"huawei.com/Ascend910": "8"}
    assert container["ports"][0]["name"] == "ascendjob-port"
    assert pod["nodeSelector"] == {"accelerator-type": accelerator}
    # MindX DL's MindSpore AscendJob runs "without ranktable": no table to wait for.
    assert "rings" not in docs
    assert all(v["name"] != "ascend-910-config" for v in pod["volumes"])
    # The operator injects MindSpore's variables: we set none of them.
    env = {e["name"]: e for e in container["env"]}
    assert not [n for n in env if n.startswith("MS_")]
    assert env["ASCEND_VISIBLE_DEVICES"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['huawei.com/Ascend910']"
    scheduler = job["spec"]["replicaSpecs"]["Scheduler"]["template"]["spec"]
    assert "huawei.com/Ascend910" not in scheduler["containers"][0].get("resources", {}).get(
        "limits", {})
    assert "/output" in {m["mountPath"] for m in container["volumeMounts"]}


def test_volcano_job_waits_for_the_operators_rank_table(tmp_path: Path) -> None:
    docs = docs_of(render(spec_for("ascend910b-2x8", tmp_path)))
    job = docs["workload"]
    assert job["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910b"
    pod = job["spec"]["tasks"][0]["template"]["spec"]
    # The rank table volume as MindX DL's samples mount it, its ConfigMap waiting to be filled.
    volume = next(v for v in pod["volumes"] if v["name"] == "ascend-910-config")
    assert volume["configMap"]["name"] == f"rings-config-{JOB_ID}"
    mount = next(m for m in pod["containers"][0]["volumeMounts"]
                 if m["name"] == "ascend-910-config")
    assert mount["mountPath"] == "/user/serverid/devindex/config"
    assert json.loads(docs["rings"]["data"]["hccl.json"]) == {"status": "initializing"}
    assert docs["rings"]["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910b"
    assert "until python3 -c" in docs["config"]["data"]["entrypoint.sh"]


def test_static_rank_table_pins_pods_to_its_servers(tmp_path: Path) -> None:
    docs = docs_of(render(spec_for("ascend910-4cards-4to7-vcjob", tmp_path)))
    assert "rings" not in docs  # rlaunch ships its own table
    table = json.loads(docs["config"]["data"]["hccl.json"])
    # Dictionary order of server_id: "10.0.0.10" < "10.0.0.9"; ranks follow it.
    assert [s["server_id"] for s in table["server_list"]] == ["10.0.0.10", "10.0.0.9"]
    assert table["server_list"][1]["device"][0] == {
        "device_id": "4", "device_ip": "192.168.9.4", "rank_id": "4"}
    job = docs["workload"]
    assert (job["apiVersion"], job["kind"]) == ("batch.volcano.sh/v1alpha1", "Job")
    pod = job["spec"]["tasks"][0]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["10.0.0.10", "10.0.0.9"]}]
    assert pod["affinity"]["podAntiAffinity"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["ASCEND_VISIBLE_DEVICES"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['huawei.com/Ascend910']"
    assert job["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910"
    host_paths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert "/usr/local/Ascend/driver" in host_paths


def test_volcano_job_restarts_the_whole_group(tmp_path: Path) -> None:
    job = docs_of(render(spec_for("gpu-2x8-vcjob", tmp_path)))["workload"]
    spec = job["spec"]
    assert spec["minAvailable"] == 2 and spec["tasks"][0]["replicas"] == 2
    assert spec["maxRetry"] == 4  # 3 restarts: Volcano fails the 4th (retryCount >= maxRetry)
    # A usage error first: the first matching policy acts.
    assert spec["policies"] == [{"exitCode": 2, "action": "TerminateJob"},
                                {"event": "PodEvicted", "action": "RestartJob"},
                                {"event": "PodFailed", "action": "RestartJob"}]
    assert spec["queue"] == "training"
    assert set(spec["plugins"]) == {"svc", "env"}


def test_jobset_restarts_the_whole_group(tmp_path: Path) -> None:
    docs = docs_of(render(spec_for("gpu-2x8", tmp_path)))
    spec = docs["workload"]["spec"]
    assert spec["failurePolicy"]["maxRestarts"] == 3
    assert [(r["name"], r["action"]) for r in spec["failurePolicy"]["rules"]] == [
        ("usage_error", "FailJobSet"), ("requeue_or_eviction", "RestartJobSetAndIgnoreMaxRestarts")]
    job = spec["replicatedJobs"][0]["template"]["spec"]
    assert [r.get("onExitCodes", {}).get("values") for r in job["podFailurePolicy"]["rules"]] \
        == [[2], [75], None]
    assert (job["completions"], job["parallelism"], job["backoffLimit"]) == (2, 2, 0)
    assert spec["network"]["enableDNSHostnames"] is True
    pod = job["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} \
        in pod["tolerations"]
    assert "activeDeadlineSeconds" not in job  # --time is per attempt, see the entrypoint
    script = docs["config"]["data"]["entrypoint.sh"]
    assert f"SCHED_HOST={JOB_ID}-node-0-0.{JOB_ID}" in script
    assert "getent ahostsv4" in script
    assert f"sleep {2 * 86400 - 120}" in script


HOSTILE = ["a'; echo pwned", "a\n0", 'a"=0"', "$(touch /tmp/x)", "yes", "null", "0123", "- x",
           "key: value", "{a: 1}", "#c", "日本", "{{ x }}", "{% if %}"]


def test_multi_node_network_and_queue_passthrough(tmp_path: Path) -> None:
    """Kueue's label on the JobSet only; RDMA resources, Multus annotations, the host network
    and extra groups on the node pods."""
    job = docs_of(render(spec_for("gpu-2x8-kueue-rdma", tmp_path)))["workload"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    pod = pod_templates(job)[0]
    assert "kueue.x-k8s.io/queue-name" not in pod["metadata"]["labels"]
    assert pod["metadata"]["annotations"] == {"k8s.v1.cni.cncf.io/networks": "rdma-net"}
    assert (pod["spec"]["hostNetwork"], pod["spec"]["dnsPolicy"]) == (
        True, "ClusterFirstWithHostNet")
    assert pod["spec"]["securityContext"]["supplementalGroups"] == [1001, 44]
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {
        "nvidia.com/gpu": "8", "rdma/hca_shared_devices_a": "1"}
    ascend = spec_for("ascend910b-2x8-acjob", tmp_path)
    ascend = ascend.replace(backend_options={**ascend.backend_options,
                                             "supplemental_groups": "1001"})
    for template in pod_templates(docs_of(render(ascend))["workload"]):
        assert template["spec"]["securityContext"]["supplementalGroups"] == [1001]


@pytest.mark.parametrize(("options", "message"), [
    ({"kueue_queue": "q"}, "--opt kueue_queue"),
    ({"supplemental_groups": "wheel"}, "numeric group ids"),
    ({"extra_resources": "rdma=1"}, "NAME=QUANTITY extended resources"),
])
def test_passthrough_options_are_checked(options: dict[str, str], message: str) -> None:
    spec = JobSpec(name="resnest", backend="k8s", device_kind="ascend", devices_per_node=8,
                   data_dir="/d", output_dir="/o", backend_options=options)
    backend = KubernetesBackend()
    opts, problems = backend.parse_options(spec)
    if not problems:
        problems = backend.problems(spec, opts)
    assert len(problems) == 1 and message in problems[0], problems


def test_pods_run_as_the_image_user_and_own_their_volumes(tmp_path: Path) -> None:
    """kubelet makes a missing subPath directory as root with the volume root's mode
    (pkg/kubelet/kubelet_pods.go makeMounts): fsGroup gives the image's group the volume."""
    for case in [c for c in CASES if c != "gpu-2x8-kueue-rdma"]:
        for template in pod_templates(docs_of(render(spec_for(case, tmp_path)))["workload"]):
            assert template["spec"]["securityContext"] == {
                "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                "fsGroupChangePolicy": "OnRootMismatch"}


def test_ascendjob_scheduler_pod_is_small_and_placed_anywhere(tmp_path: Path) -> None:
    spec = spec_for("ascend910b-2x8-acjob", tmp_path)
    spec = spec.replace(backend_options={**spec.backend_options, "cpu": "180",
                                         "memory": "1500Gi", "node_selector": "pool=a"})
    job = docs_of(render(spec))["workload"]
    assert job["spec"]["runPolicy"]["cleanPodPolicy"] == "All"
    assert job["spec"]["runPolicy"]["schedulingPolicy"]["queue"] == "default"
    scheduler = job["spec"]["replicaSpecs"]["Scheduler"]["template"]["spec"]
    worker = job["spec"]["replicaSpecs"]["Worker"]["template"]["spec"]
    assert scheduler["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "4Gi"}
    assert worker["containers"][0]["resources"]["requests"]["memory"] == "1500Gi"
    assert scheduler["nodeSelector"] == {"pool": "a"}
    assert worker["nodeSelector"] == {"pool": "a", "accelerator-type": "module-910b-8"}


def test_hostile_values_are_serialized_not_pasted(tmp_path: Path) -> None:
    spec = JobSpec(
        name="resnest", backend="k8s", device_kind="gpu", devices_per_node=2,
        data_dir="/data/it's here", output_dir="/out/$(whoami)", image="img:1",
        overrides=[f"note={v}" for v in HOSTILE if "\n" not in v],
        args=HOSTILE,
        env={f"V{i}": v for i, v in enumerate(HOSTILE) if "\n" not in v},
        backend_options={"data_pvc": "imagenet", "output_pvc": "runs"},
    ).validate()
    docs = docs_of(render(spec))
    container = pod_templates(docs["workload"])[0]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    for i, value in enumerate(HOSTILE):
        assert env.get(f"V{i}") == (None if "\n" in value else value)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == "/data/it's here"
    assert mounts["output"] == "/out/$(whoami)"
    # The script's argv survives bash word splitting exactly.
    script = docs["config"]["data"]["entrypoint.sh"]
    start = script.index("TRAIN=(")
    end = script.index("\n", script.index(")\n", start) - 1)
    words = subprocess.run(
        ["bash", "-c", script[start:end + 1] + '\nprintf "%s\\0" "${TRAIN[@]}"'],
        capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
    assert words == ["python3", "resnest/train.py", *spec.script_args()]


def backend_problems(spec: JobSpec) -> list[str]:
    """What `rlaunch submit` reports at the backend's stages: its options, then its rules."""
    backend = KubernetesBackend()
    opts, problems = backend.parse_options(spec)
    return problems or backend.problems(spec, opts)


@pytest.mark.parametrize(("options", "message"), [
    ({"namespace": "Bad_NS"}, "--opt namespace 'Bad_NS' is not a Kubernetes namespace name"),
    ({"namespace": 31}, "--opt namespace must be a string, not an integer (31)"),
    ({"workload": "job"}, "--opt workload 'job' is not one of acjob, vcjob, jobset"),
    ({"workload": "jobset"}, "--opt workload jobset cannot run ascend jobs (allowed: vcjob, acjob)"),
    ({"chip": "910"}, "--opt chip is not an option of the k8s backend"),
    ({"tolerations": "a:Sometimes"}, "EFFECT one of NoSchedule"),
    ({"memory": "lots"}, "a Kubernetes quantity"),
    ({"node_selector": "novalue"}, "--opt node_selector 'novalue' is not comma-separated KEY=VALUE"),
    ({"namspace": "ml"}, "--opt namspace is not an option of the k8s backend (did you mean"),
    ({"rank_table_timeout": "017"}, "--opt rank_table_timeout '017' is not a whole number"),
    ({"rank_table": "/nonexistent.json"}, "--opt rank_table '/nonexistent.json' cannot be read"),
    ({"volcano_queue": "q", "workload": "acjob", "rank_table": "/a", "device_ips": "/b"},
     "--opt rank_table and --opt device_ips exclude each other"),
])
def test_bad_options_are_one_clear_line(options: dict[str, Any], message: str) -> None:
    spec = JobSpec(name="resnest", backend="k8s", device_kind="ascend", devices_per_node=8,
                   data_dir="/d", output_dir="/o", backend_options=options)
    problems = backend_problems(spec)
    assert len(problems) == 1, problems
    assert message in problems[0]


@pytest.mark.parametrize(("kind", "options", "message"), [
    ("gpu", {"rank_table": "/t.json"}, "--opt rank_table is not used by gpu jobs (only by ascend"),
    ("gpu", {"ascend_driver_mounts": "true"}, "--opt ascend_driver_mounts is not used by gpu jobs"),
    ("gpu", {"volcano_queue": "training"},
     "--opt volcano_queue is not used by this job: a jobset is not queued by Volcano"),
])
def test_options_the_job_does_not_use_are_refused(kind: str, options: dict[str, Any],
                                                  message: str) -> None:
    spec = JobSpec(name="resnest", backend="k8s", device_kind=kind, devices_per_node=8,
                   data_dir="/d", output_dir="/o", backend_options=options)
    problems = backend_problems(spec)
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_chip_decides_the_placement_rules() -> None:
    backend = KubernetesBackend()

    def problems(devices: int, ids: list[int] | None, chip: str | None = None) -> list[str]:
        spec = JobSpec(name="resnest", backend="k8s", device_kind="ascend",
                       devices_per_node=devices, device_ids=ids, ascend_chip=chip)
        spec, opts = backend.prepare(spec, backend.options_of(spec))
        return spec.problems() + backend.problems(spec, opts)

    # 910: two HCCS rings of four; 910B (the default): no ring rule, 16-card servers exist.
    assert "must sit within devices 0-3 or 4-7" in problems(4, [2, 3, 4, 5], chip="910")[0]
    assert problems(4, [2, 3, 4, 5]) == []
    assert problems(16, None) == []
    assert "devices per node must be 1, 2, 4 or 8 on Ascend 910" in problems(16, None,
                                                                               chip="910")[0]


def test_relative_dirs_cannot_hold_a_pvc() -> None:
    spec = JobSpec(name="resnest", backend="k8s", device_kind="gpu", devices_per_node=1,
                   data_dir="data", output_dir="/o", backend_options={"data_pvc": "x"})
    assert backend_problems(spec) == [
        "--data-dir 'data' must be an absolute path inside the pod to mount the PVC 'x' there"]


def test_rank_table_must_match_the_job(tmp_path: Path) -> None:
    spec = spec_for("ascend910-4cards-4to7-vcjob", tmp_path).replace(nodes=3)
    assert backend_problems(spec) == [
        "the rank table lists 2 servers but the job has --nodes 3"]


def _kubelet_volume(root: Path, pod_security: dict[str, Any], sub_path: str) -> Path:
    """What kubelet makes of a fresh block-backed claim for this pod: its root is root:root
    0755; with fsGroup it gives the group the volume (pkg/volume/volume_linux.go
    SetVolumeOwnership: group fsGroup, group rw, setgid directories); then it creates the
    missing subPath directory as root with the mode of the volume root (pkg/kubelet/
    kubelet_pods.go makeMounts, SafeMakeDir)."""
    import stat

    root.mkdir()
    os.chown(root, 0, 0)
    os.chmod(root, 0o755)
    if "fsGroup" in pod_security:
        os.chown(root, -1, pod_security["fsGroup"])
        os.chmod(root, 0o2775)
    sub = root / sub_path
    sub.mkdir()
    os.chmod(sub, stat.S_IMODE(root.stat().st_mode))
    return sub


def _write_as_the_pod(pod_security: dict[str, Any], directory: Path) -> subprocess.CompletedProcess[str]:
    groups = [pod_security["fsGroup"]] if "fsGroup" in pod_security else []
    groups += pod_security.get("supplementalGroups", [])
    return subprocess.run(
        ["setpriv", f"--reuid={pod_security['runAsUser']}",
         f"--regid={pod_security['runAsGroup']}",
         f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups",
         "sh", "-c", 'mkdir -p "$1/checkpoints" && echo saved > "$1/checkpoints/last.ckpt"',
         "sh", str(directory)], capture_output=True, text=True, check=False, timeout=30)


@pytest.mark.skipif(os.geteuid() != 0, reason="making root-owned volumes needs root")
def test_the_output_claim_is_writable_as_the_pods_user(tmp_path: Path) -> None:
    """The rendered securityContext, applied as kubelet applies it to a block-backed claim:
    the image's uid 1000 can write its checkpoints into the job's subPath directory, and could
    not without fsGroup."""
    import tempfile

    job = docs_of(render(spec_for("ascend910b-2x8", tmp_path)))["workload"]
    pod = pod_templates(job)[0]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "output")
    security = pod["securityContext"]
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        os.chmod(base, 0o755)  # the mount point is reachable by every user
        done = _write_as_the_pod(security, _kubelet_volume(base / "claim", security,
                                                             mount["subPath"]))
        assert done.returncode == 0, done.stderr
        assert (base / "claim" / JOB_ID / "checkpoints" / "last.ckpt").read_text() == "saved\n"
        without = {k: v for k, v in security.items() if k != "fsGroup"}
        done = _write_as_the_pod(without, _kubelet_volume(base / "bare", without,
                                                            mount["subPath"]))
        assert done.returncode != 0 and "Permission denied" in done.stderr
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)
