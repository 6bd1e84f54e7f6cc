"""Rendered Kubernetes manifests: golden files, official schemas (strict), hostile values.

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

GOLDEN = Path(__file__).parent / "golden"
PODGROUP_SCHEMA = Path(__file__).parent / "podgroup.schema.json"
VALIDATE_VERSIONS = ("1.30.0", "latest")


def device_ips_file(tmp_path: Path) -> str:
    path = tmp_path / "device-ips.yaml"
    path.write_text(yaml.safe_dump({
        f"10.0.0.{server}": [f"192.168.{server}.{card}" for card in range(8)]
        for server in (1, 2)}))
    return str(path)


def spec_for(case: str, tmp_path: Path) -> JobSpec:
    base: dict[str, Any] = {
        "name": "resnest", "backend": "k8s", "data_dir": "/data/imagenet", "output_dir": "/output",
        "config": "resnest/configs/resnest50-imagenet.yaml", "overrides": ["epochs=90"],
        "time_limit": "2-00:00:00", "master_port": 8118,
        "backend_options": {"data_pvc": "imagenet", "output_pvc": "runs", "namespace": "ml"},
    }
    if case == "ascend8":
        base.update(device_kind="ascend", devices_per_node=8, image="registry.example/rn:ascend")
    elif case == "ascend2x8-ranktable":
        base.update(device_kind="ascend", devices_per_node=8, nodes=2,
                    image="registry.example/rn:ascend")
        base["backend_options"] = {**base["backend_options"],
                                   "device_ips": "DEVICE_IPS", "ascend_driver_mounts": True}
    elif case == "gpu8":
        base.update(device_kind="gpu", devices_per_node=8, image="registry.example/rn:gpu")
    elif case == "gpu2x8":
        base.update(device_kind="gpu", devices_per_node=8, nodes=2, image="registry.example/rn:gpu")
    elif case == "gpu2x8-volcano":
        base.update(device_kind="gpu", devices_per_node=8, nodes=2, image="registry.example/rn:gpu")
        base["backend_options"] = {
            **base["backend_options"], "volcano": True, "volcano_queue": "training",
            "priority_class": "high", "image_pull_secrets": "regcred",
            "service_account": "trainer", "node_selector": "pool=a100",
            "tolerations": "dedicated=ml:NoSchedule", "cpu": "64", "memory": "512Gi"}
    spec = JobSpec(**base)
    if spec.backend_options.get("device_ips") == "DEVICE_IPS":
        spec.backend_options["device_ips"] = device_ips_file(tmp_path)
    return spec.validate()


CASES = ("ascend8", "ascend2x8-ranktable", "gpu8", "gpu2x8", "gpu2x8-volcano")


def render(spec: JobSpec) -> str:
    backend = KubernetesBackend()
    assert backend.problems(spec) == []
    return backend.render(spec).dry_run_text()


def validate(doc: dict[str, Any], version: str) -> None:
    import jsonschema
    import kubernetes_validate

    if doc["kind"] == "PodGroup":
        # A CRD: no official schema; ours follows Volcano's CRD and rejects unknown fields.
        jsonschema.validate(doc, json.loads(PODGROUP_SCHEMA.read_text()))
        return
    if version == "latest":
        version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("case", CASES)
def test_golden_and_schema_valid(case: str, tmp_path: Path) -> None:
    text = render(spec_for(case, tmp_path))
    golden = GOLDEN / f"{case}.yaml"
    if os.environ.get("RLAUNCH_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        for version in VALIDATE_VERSIONS:
            validate(doc, version)
    kinds = [d["kind"] for d in docs]
    assert kinds[-1] == "Job"
    assert ("PodGroup" in kinds) == case.endswith("volcano")


def test_schema_validation_catches_a_bad_manifest(tmp_path: Path) -> None:
    """The validation above can fail: an unknown field and a wrong type are rejected."""
    import jsonschema

    docs = [d for d in yaml.safe_load_all(render(spec_for("gpu2x8-volcano", tmp_path))) if d]
    job = docs[-1]
    job["spec"]["template"]["spec"]["containers"][0]["gpus"] = 8
    with pytest.raises(jsonschema.ValidationError):
        validate(job, "1.30.0")
    podgroup = next(d for d in docs if d["kind"] == "PodGroup")
    podgroup["spec"]["minMember"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        validate(podgroup, "1.30.0")


def test_kubernetes_validate_cli_accepts_the_dry_run_stream(tmp_path: Path) -> None:
    """The stream `--dry-run` prints is what `kubectl apply -f -` would take."""
    path = tmp_path / "stream.yaml"
    path.write_text(render(spec_for("ascend8", tmp_path)))
    exe = Path(sys.executable).parent / "kubernetes-validate"
    for version in ("1.30.0", None):
        cmd = [str(exe), "--strict", *(["-k", version] if version else []), str(path)]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count("passed") == 4


def test_ascend_manifest_details(tmp_path: Path) -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d
            for d in yaml.safe_load_all(render(spec_for("ascend8", tmp_path))) if d}
    job = docs[("Job", "resnest")]
    pod = job["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"huawei.com/Ascend910": "8"}
    assert container["resources"]["requests"] == {"huawei.com/Ascend910": "8"}
    assert pod["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910"
    assert pod["spec"]["nodeSelector"] == {"accelerator": "huawei-Ascend910"}
    rings = docs[("ConfigMap", "rings-config-resnest")]
    assert json.loads(rings["data"]["hccl.json"]) == {"status": "initializing"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "/user/serverid/devindex/config" in mounts
    assert mounts["/output"]["subPath"] == "resnest"
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["activeDeadlineSeconds"] == 2 * 86400
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert [r["action"] for r in rules] == ["Ignore", "Count", "FailJob"]
    assert rules[1]["onExitCodes"]["values"] == [75]
    assert pod["spec"]["restartPolicy"] == "Never"


def test_rank_table_built_from_device_ips(tmp_path: Path) -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d
            for d in yaml.safe_load_all(render(spec_for("ascend2x8-ranktable", tmp_path))) if d}
    assert ("ConfigMap", "rings-config-resnest") not in docs  # rlaunch ships its own
    table = json.loads(docs[("ConfigMap", "resnest-rlaunch")]["data"]["hccl.json"])
    assert table["status"] == "completed"
    assert [s["server_id"] for s in table["server_list"]] == ["10.0.0.1", "10.0.0.2"]
    assert table["server_list"][1]["device"][0] == {
        "device_id": "0", "device_ip": "192.168.2.0", "rank_id": "8"}
    pod = docs[("Job", "resnest")]["spec"]["template"]["spec"]
    assert pod["affinity"]["podAntiAffinity"]  # one pod per server
    host_paths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert "/usr/local/Ascend/driver" in host_paths


def test_gpu_manifest_details(tmp_path: Path) -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all(render(spec_for("gpu2x8", tmp_path))) if d}
    pod = docs["Job"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} \
        in pod["tolerations"]
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert pod["subdomain"] == docs["Service"]["metadata"]["name"] == "resnest"
    assert docs["Service"]["spec"]["clusterIP"] == "None"
    assert docs["Service"]["spec"]["publishNotReadyAddresses"] is True
    assert docs["Job"]["spec"]["completions"] == docs["Job"]["spec"]["parallelism"] == 2
    script = docs["ConfigMap"]["data"]["entrypoint.sh"]
    assert "SCHED_HOST=resnest-0.resnest" in script


def test_volcano_gang(tmp_path: Path) -> None:
    docs = {d["kind"]: d
            for d in yaml.safe_load_all(render(spec_for("gpu2x8-volcano", tmp_path))) if d}
    group = docs["PodGroup"]
    assert group["spec"]["minMember"] == 2
    assert group["spec"]["minResources"]["nvidia.com/gpu"] == "16"
    pod = docs["Job"]["spec"]["template"]
    assert pod["spec"]["schedulerName"] == "volcano"
    assert pod["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == "resnest"


HOSTILE = ["a'; echo pwned", "a\n0", 'a"=0"', "$(touch /tmp/x)", "yes", "null", "0123", "- x",
           "key: value", "{a: 1}", "#c", "日本"]


def test_hostile_values_are_serialized_not_pasted(tmp_path: Path) -> None:
    spec = JobSpec(
        name="resnest", backend="k8s", device_kind="gpu", devices_per_node=2,
        data_dir="/data/it's here", output_dir="/out/$(whoami)", image="img:1",
        overrides=[f"note={v}" for v in HOSTILE if "\n" not in v],
        args=HOSTILE,
        env={f"V{i}": v for i, v in enumerate(HOSTILE)},
        backend_options={"data_pvc": "imagenet", "output_pvc": "runs"},
    ).validate()
    docs = {d["kind"]: d for d in yaml.safe_load_all(render(spec)) if d}
    container = docs["Job"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    for i, value in enumerate(HOSTILE):
        assert env[f"V{i}"] == value
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == "/data/it's here"
    assert mounts["output"] == "/out/$(whoami)"
    # The script's argv survives bash word splitting exactly.
    script = docs["ConfigMap"]["data"]["entrypoint.sh"]
    train_line = next(line for line in script.splitlines() if line.startswith("TRAIN=("))
    # A newline inside a quoted word continues the line: take everything up to the closing ')'.
    start = script.index(train_line)
    end = script.index("\n", script.index(")\n", start) - 1)
    words = subprocess.run(
        ["bash", "-c", script[start:end + 1] + '\nprintf "%s\\0" "${TRAIN[@]}"'],
        capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
    assert words == ["python3", "resnest/train.py", *spec.script_args()]


@pytest.mark.parametrize(("options", "message"), [
    ({"namespace": "Bad_NS"}, "--opt namespace='Bad_NS' is not valid"),
    ({"volcano": "maybe"}, "--opt volcano='maybe' is not valid: true or false"),
    ({"tolerations": "a:Sometimes"}, "EFFECT one of NoSchedule"),
    ({"memory": "lots"}, "a Kubernetes quantity"),
    ({"node_selector": "novalue"}, "--opt node_selector='novalue' is not valid"),
    ({"gpus": "8"}, "--opt 'gpus' is not an option of the k8s backend"),
    ({"rank_table": "/nonexistent.json"}, "cannot be read as JSON"),
])
def test_bad_options_are_one_clear_line(options: dict[str, Any], message: str) -> None:
    spec = JobSpec(name="resnest", backend="k8s", device_kind="ascend", devices_per_node=8,
                   data_dir="/d", output_dir="/o", backend_options=options)
    problems = KubernetesBackend().problems(spec)
    assert len(problems) == 1
    assert message in problems[0]


def test_relative_dirs_cannot_hold_a_pvc() -> None:
    spec = JobSpec(name="resnest", backend="k8s", device_kind="gpu", devices_per_node=1,
                   data_dir="data", output_dir="/o", backend_options={"data_pvc": "x"})
    assert KubernetesBackend().problems(spec) == [
        "--data-dir 'data' must be an absolute path inside the pod to mount the PVC 'x' there"]


def test_rank_table_must_match_the_job(tmp_path: Path) -> None:
    spec = spec_for("ascend2x8-ranktable", tmp_path).replace(nodes=3)
    assert KubernetesBackend().problems(spec) == [
        "the rank table lists 2 servers but the job has --nodes 3"]
