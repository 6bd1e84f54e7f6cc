"""`helm install` of charts/resnest-serve on a real Kubernetes (Helm's own Go engine through
helm-python-sdk): the cpu image serves an exported ONNX model from a volume; a KServe v2 request
through the Service's DNS name (CoreDNS, kube-proxy) returns the checkpoint's logits; `helm test`
passes; `helm upgrade` to two replicas; `helm uninstall` leaves nothing behind."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.launcher.conftest import wait_for
from tests.serve.conftest import TinyModel

from .conftest import Namespace, host_path_claim

pytestmark = [pytest.mark.integration, pytest.mark.realk8s, pytest.mark.timeout(1800)]

CHART = Path(__file__).resolve().parents[2] / "charts" / "resnest-serve"
RELEASE = "rs"
FULLNAME = "rs-resnest-serve"
PORT = 8000
INFER = "/v2/models/resnest/infer"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"


def chart_values(image: str, replicas: int) -> dict:
    registry, _, rest = image.rpartition("/")
    repository, _, tag = rest.partition(":")
    return {
        "image": {"registry": registry, "repository": repository, "tag": tag},
        "replicaCount": replicas,
        "model": {"format": "onnx", "files": ["/models/model.onnx"], "source": "pvc",
                  "pvc": {"claimName": "models", "mountPath": "/models"}},
        # Two shared cores for everything: small requests so both replicas fit beside the rest.
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                      "limits": {"memory": "1Gi"}},
        "server": {"threads": 1, "preStopSleepSeconds": 1},
    }


def client_pod(namespace: str, image: str, url: str) -> dict:
    """A pod that POSTs the request in ConfigMap infer-request to `url` and prints the answer."""
    script = ("import sys, urllib.request\n"
              "body = open('/request/request.json', 'rb').read()\n"
              "req = urllib.request.Request(sys.argv[1], data=body, method='POST',\n"
              "                             headers={'Content-Type': 'application/json'})\n"
              "with urllib.request.urlopen(req, timeout=60) as response:\n"
              "    print(response.read().decode())\n")
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "infer-client", "namespace": namespace},
        "spec": {"restartPolicy": "Never",
                 "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
                 "containers": [{"name": "client", "image": image, "imagePullPolicy": "Never",
                                 "command": ["python", "-c", script, url],
                                 "volumeMounts": [{"name": "request", "mountPath": "/request"}]}],
                 "volumes": [{"name": "request", "configMap": {"name": "infer-request"}}]},
    }


def release_objects(core, apps, namespace: str) -> list[str]:
    found = [f"pod {p.metadata.name}" for p in
             core.list_namespaced_pod(namespace, label_selector=INSTANCE).items]
    found += [f"service {s.metadata.name}" for s in
              core.list_namespaced_service(namespace, label_selector=INSTANCE).items]
    found += [f"configmap {c.metadata.name}" for c in
              core.list_namespaced_config_map(namespace, label_selector=INSTANCE).items]
    found += [f"serviceaccount {s.metadata.name}" for s in
              core.list_namespaced_service_account(namespace, label_selector=INSTANCE).items]
    found += [f"deployment {d.metadata.name}" for d in
              apps.list_namespaced_deployment(namespace, label_selector=INSTANCE).items]
    found += [f"secret {s.metadata.name}" for s in core.list_namespaced_secret(namespace).items
              if s.metadata.name.startswith(f"sh.helm.release.v1.{RELEASE}.")]
    return found


def test_chart_installs_serves_through_the_service_upgrades_tests_and_uninstalls(
    namespace: Namespace, cpu_image: str, core, tiny_model: TinyModel, kubeconfig: Path
) -> None:
    import helm_python
    from kubernetes import client

    apps = client.AppsV1Api(core.api_client)
    ns = namespace.name
    # The model claim: the exported ONNX on a host directory the image's uid 1000 may read.
    tiny_model.dir.chmod(0o755)
    for path in tiny_model.dir.iterdir():
        path.chmod(0o644)
    host_path_claim(core, ns, "models", tiny_model.dir, read_only=True)
    inputs = tiny_model.reference["fp32_inputs"]
    expected = tiny_model.reference["fp32_logits"]
    request = {"inputs": [{"name": "input", "shape": list(inputs.shape), "datatype": "FP32",
                           "data": inputs.ravel().tolist()}]}
    core.create_namespaced_config_map(ns, {"metadata": {"name": "infer-request"},
                                           "data": {"request.json": json.dumps(request)}})

    helm = helm_python.Config(kubeconfig_path=str(kubeconfig), namespace=ns)
    try:
        helm.install(str(CHART), RELEASE, chart_values(cpu_image, 1), namespace=ns,
                     wait="watcher", timeout=600)
        deployment = apps.read_namespaced_deployment(FULLNAME, ns)
        assert deployment.status.ready_replicas == 1

        # KServe v2 through the Service's name: CoreDNS answers it, kube-proxy routes it.
        url = f"http://{FULLNAME}.{ns}.svc.cluster.local:{PORT}{INFER}"
        core.create_namespaced_pod(ns, client_pod(ns, cpu_image, url))
        phase = wait_for(lambda: (p := core.read_namespaced_pod("infer-client", ns).status.phase)
                         in ("Succeeded", "Failed") and p, 300, "the client pod to finish")
        answer = core.read_namespaced_pod_log("infer-client", ns)
        assert phase == "Succeeded", answer[-2000:]
        out = json.loads(answer)["outputs"][0]
        logits = np.asarray(out["data"], np.float32).reshape(out["shape"])
        np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)

        tested = helm.test(RELEASE, timeout=300, logs=True)
        assert "200" in json.dumps(tested.get("logs", "")), tested

        helm.upgrade(str(CHART), RELEASE, chart_values(cpu_image, 2), namespace=ns,
                     wait="watcher", timeout=600)
        deployment = apps.read_namespaced_deployment(FULLNAME, ns)
        assert deployment.spec.replicas == 2 and deployment.status.ready_replicas == 2
        slices = client.DiscoveryV1Api(core.api_client).list_namespaced_endpoint_slice(
            ns, label_selector=f"kubernetes.io/service-name={FULLNAME}").items
        ready = [e for s in slices for e in (s.endpoints or []) if e.conditions.ready]
        assert len(ready) == 2
    finally:
        helm.uninstall(RELEASE, wait="watcher", timeout=300, ignore_not_found=True)
    deadline = time.monotonic() + 120
    while release_objects(core, apps, ns) and time.monotonic() < deadline:
        time.sleep(1)
    assert release_objects(core, apps, ns) == []
