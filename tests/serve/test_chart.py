"""The Helm chart rendered by Helm's own engine (helm-python-sdk), linted, schema-checked, and
every manifest validated against the official Kubernetes OpenAPI schemas (strict)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "resnest-serve"
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]
# CRDs have no schema in kubernetes-validate; their shape is checked by hand below.
CRD_KINDS = {"ServiceMonitor"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "cpu": {},
    "gpu": {"device": "gpu", "model": {"files": ["/models/r50_b1.mindir", "/models/r50_b8.mindir"],
                                       "format": "mindir", "name": "resnest", "source": "image"}},
    "ascend310": {"device": "ascend310", "deviceCount": 1,
                  "model": {"format": "mindir", "files": ["/models/r50_b1.mindir"]}},
    "ascend310p": {"device": "ascend310p", "deviceCount": 2, "nodeSelector": {"zone": "a"},
                   "model": {"format": "mindir", "files": ["/models/r50_b1.mindir"]}},
    "cpu-mindir": {"model": {"format": "mindir", "files": ["/models/r50_b1.mindir"]},
                   "server": {"threads": 2}},
    "hpa": {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 10,
                            "targetCPUUtilizationPercentage": 60,
                            "targetMemoryUtilizationPercentage": 80}},
    "everything": {
        "device": "gpu",
        "model": {"name": "imagenet", "files": ["/models/ckpt/last.ckpt"], "format": "checkpoint",
                  "engine": "mindspore", "arch": "resnest50",
                  "numClasses": 1000, "imageSize": 224, "labels": ["tench", "goldfish: 'x'"],
                  "source": "pvc", "pvc": {"claimName": "models", "mountPath": "/models",
                                           "subPath": "resnest"}},
        "networkPolicy": {"enabled": True, "allowExternal": False,
                          "ingressNSMatchLabels": {"team": "vision"}},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "service": {"type": "NodePort", "nodePort": 30080},
        "pdb": {"create": True, "maxUnavailable": "", "minAvailable": "50%"},
        "imagePullSecrets": [{"name": "regcred"}],
        "image": {"registry": "registry.example:5000/ml", "repository": "team/serve",
                  "digest": "sha256:" + "a" * 64, "pullPolicy": "Always"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml",
                         "effect": "NoSchedule"}],
        "server": {"extraArgs": ["--access-log"], "accessLog": False},
    },
}


def merged(overrides: dict[str, Any]) -> dict[str, Any]:
    """Chart defaults with ``overrides`` merged in (dicts recursively), as `-f` does."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = copy.deepcopy(value)

    merge(values, overrides)
    return values


def render(overrides: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Rendered manifests by template file name; NOTES.txt as text under 'NOTES.txt'."""
    chart = helm_python.Chart.load(CHART)
    out = chart.render(overrides, name="demo", namespace="vision", is_install=True)
    docs: dict[str, list[dict[str, Any]]] = {}
    for path, text in out.items():
        name = path.rsplit("templates/", 1)[-1]
        if name.endswith(".txt"):
            docs[name] = [{"text": text}]
        else:
            docs[name] = [d for d in yaml.safe_load_all(text) if d]
    return docs


def manifests(docs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [d for name, items in docs.items() if not name.endswith(".txt") for d in items]


def kind(docs: dict[str, list[dict[str, Any]]], wanted: str) -> dict[str, Any]:
    found = [d for d in manifests(docs) if d["kind"] == wanted]
    assert len(found) == 1, f"expected one {wanted}, got {len(found)}"
    return found[0]


def test_lint_is_clean() -> None:
    for values in VALUE_SETS.values():
        report = helm_python.lint(CHART, values, strict=True, kube_version="v1.30.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], report


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_passes_strict_validation(name: str, kube_version: str) -> None:
    docs = render(VALUE_SETS[name])
    for doc in manifests(docs):
        if doc["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, kube_version, strict=True)


def _server(docs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    pod = kind(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container


def test_cpu_defaults_are_hardened() -> None:
    docs = render({})
    pod = kind(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert kind(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _server(docs)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert set(container["resources"]["limits"]) == {"memory"}
    for probe, path in [("startupProbe", "/v2/health/ready"), ("livenessProbe", "/v2/health/live"),
                        ("readinessProbe", "/v2/health/ready")]:
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}
    args = container["args"]
    assert args[0] == "serve" and "command" not in container  # the image's entrypoint runs it
    assert container["image"] == "rlaunch-cpu:0.1.0"
    assert pod["securityContext"]["runAsUser"] == 1000  # the rlaunch images' user
    assert args[args.index("--device") + 1] == "cpu"
    assert args[args.index("--model") + 1] == "/models/resnest50.onnx"
    assert args[args.index("--engine") + 1] == "onnxruntime"  # ONNX on CPU: ONNX Runtime
    assert args[args.index("--threads") + 1] == "0"  # threads from the pod's CPU limit / set
    annotations = kind(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["checksum/config"]) == 64
    assert {d["kind"] for d in manifests(docs)} == {
        "ConfigMap", "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "Pod"}
    test_pod = kind(docs, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert test_pod["spec"]["containers"][0]["command"][-1] == \
        "http://demo-resnest-serve:8000/v2/health/ready"
    assert "rollout status deployment/demo-resnest-serve" in docs["NOTES.txt"][0]["text"]


@pytest.mark.parametrize(("device", "resource", "server_device", "selector"), [
    ("gpu", "nvidia.com/gpu", "gpu", {"nvidia.com/gpu.present": "true"}),
    ("ascend310", "huawei.com/Ascend310", "ascend", {"accelerator": "huawei-Ascend310"}),
    ("ascend310p", "huawei.com/Ascend310P", "ascend", {"accelerator": "huawei-Ascend310P"}),
])
def test_devices_get_resources_selectors_tolerations(device: str, resource: str,
                                                      server_device: str,
                                                      selector: dict[str, str]) -> None:
    docs = render({"device": device, "deviceCount": 2, "nodeSelector": {"pool": "infer"},
                   "model": {"format": "mindir", "files": ["/models/r50_b1.mindir"]}})
    pod = kind(docs, "Deployment")["spec"]["template"]["spec"]
    container = _server(docs)
    assert container["resources"]["limits"][resource] == "2"
    assert container["resources"]["limits"]["memory"] == "4Gi"
    assert pod["nodeSelector"] == {**selector, "pool": "infer"}
    assert {"key": resource, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert container["args"][container["args"].index("--device") + 1] == server_device
    assert container["args"][container["args"].index("--engine") + 1] == "mindspore"
    assert container["image"] == f"rlaunch-{server_device}:0.1.0"
    driver_mounted = any(v["name"] == "ascend-driver" for v in pod["volumes"])
    assert driver_mounted == device.startswith("ascend")


def test_hpa_replaces_replica_count() -> None:
    docs = render(VALUE_SETS["hpa"])
    hpa = kind(docs, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu", "memory"]
    assert "replicas" not in kind(docs, "Deployment")["spec"]
    assert "HorizontalPodAutoscaler" not in {d["kind"] for d in manifests(render({}))}


def test_everything_on_pvc_checkpoint_labels_policy_monitor() -> None:
    docs = render(VALUE_SETS["everything"])
    container = _server(docs)
    args = container["args"]
    assert args[args.index("--arch") + 1] == "resnest50"
    assert args[args.index("--num-classes") + 1] == "1000"
    assert args[args.index("--labels") + 1] == "/etc/resnest-serve/labels.txt"
    assert args[-1] == "--access-log"
    assert container["image"] == "registry.example:5000/ml/team/serve@sha256:" + "a" * 64
    pod = kind(docs, "Deployment")["spec"]["template"]["spec"]
    claim = next(v for v in pod["volumes"] if v["name"] == "model")
    assert claim["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    labels = kind(docs, "ConfigMap")["data"]["labels.txt"].splitlines()
    assert labels == ["tench", "goldfish: 'x'"]
    policy = kind(docs, "NetworkPolicy")["spec"]["ingress"][0]
    assert {"namespaceSelector": {"matchLabels": {"team": "vision"}}} in policy["from"]
    monitor = kind(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0] == {"port": "http", "path": "/metrics",
                                               "interval": "30s", "scrapeTimeout": "10s"}
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert kind(docs, "PodDisruptionBudget")["spec"] == {
        "minAvailable": "50%", "selector": kind(docs, "PodDisruptionBudget")["spec"]["selector"]}
    assert kind(docs, "Service")["spec"]["ports"][0]["nodePort"] == 30080


def test_config_checksum_changes_with_server_settings() -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = kind(render(values), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"server": {"maxBatchSize": 16}})
    assert checksum({}) != checksum({"model": {"labels": ["a", "b"], "name": "resnest",
                                               "files": ["/models/resnest50.onnx"],
                                               "source": "image"}})
    assert checksum({}) != checksum({"server": {"threads": 2}})


BAD_VALUES = {
    "unknown device": {"device": "tpu"},
    "unknown top-level key": {"replicas": 3},
    "negative replicas": {"replicaCount": -1},
    "zero batch": {"server": {"maxBatchSize": 0}},
    "body limit of 100 MiB": {"server": {"maxBodyMb": 100}},
    "privileged port": {"server": {"port": 80}},
    "model file not absolute": {"model": {"files": ["model.mindir"]}},
    "model file of another format": {"model": {"files": ["/models/model.mindir"]}},
    "unknown model format": {"model": {"format": "tflite"}},
    "unknown engine": {"model": {"engine": "tensorrt"}},
    "onnx on mindspore": {"model": {"engine": "mindspore"}},
    "mindir on onnxruntime": {"model": {"format": "mindir", "engine": "onnxruntime",
                                        "files": ["/models/m_b1.mindir"]}},
    "onnx on gpu": {"device": "gpu"},
    "two onnx files": {"model": {"files": ["/models/a.onnx", "/models/b.onnx"]}},
    "negative threads": {"server": {"threads": -1}},
    "no model files": {"model": {"files": []}},
    "checkpoint without arch": {"model": {"files": ["/models/x.ckpt"]}},
    "pvc without claim": {"model": {"source": "pvc"}},
    "unknown arch": {"model": {"arch": "resnet50"}},
    "bad pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "bad digest": {"image": {"digest": "md5:abc"}},
    "upper-case image name": {"image": {"repository": "Team/Serve"}},
    "string count": {"deviceCount": "two"},
    "hpa without metric": {"autoscaling": {"enabled": True,
                                           "targetCPUUtilizationPercentage": 0}},
    "bad memory quantity": {"resources": {"limits": {"memory": "lots"}}},
    "label with newline": {"model": {"labels": ["a\nb"]}},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(case: str) -> None:
    chart = helm_python.Chart.load(CHART)
    with pytest.raises(helm_python.HelmValuesError, match="schema"):
        chart.render(BAD_VALUES[case], name="demo", namespace="vision", is_install=True)


@pytest.mark.parametrize("name", ["cpu", "cpu-mindir", "everything"])
def test_rendered_arguments_are_what_the_server_accepts(name: str, tmp_path: Path) -> None:
    """The chart's args go through the server's own parser: engine and files agree with it."""
    from resnest.serve.cli import config_from_args

    args = _server(render(VALUE_SETS[name]))["args"][1:]  # [0] is the entrypoint's `serve`
    for i, arg in enumerate(args):
        if i and args[i - 1] in ("--model", "--labels"):
            local = tmp_path / Path(arg).name
            local.write_bytes(b"x")
            args[i] = str(local)
    config = config_from_args(args)
    engine = "onnxruntime" if name == "cpu" else "mindspore"
    assert config.model.engine == engine
