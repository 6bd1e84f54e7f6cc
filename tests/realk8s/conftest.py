"""A real Kubernetes for the tests: scripts/k8s_cluster.sh brings up upstream kube-apiserver,
etcd, controller-manager, scheduler, two kubelet nodes on Debian's containerd, kube-proxy,
CoreDNS and the JobSet controller (built once from Go modules), and takes it all down at the end.

The project's cpu image (`rlaunch build --target cpu`, reused from buildah's storage when the
checkout's tag is there) is imported into both nodes; there is no registry. Each test gets its
own namespace with two claims on host directories (hostPath volumes: both nodes share this
machine's file system, which plays the shared storage a real cluster would mount).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from launcher.images import PROJECT_ROOT
from launcher.images.base_image import local_base_name
from launcher.images.builders import BUILDAH_DEFAULT_ENV, plan_build
from tests.launcher.conftest import (  # noqa: F401 - fixtures shared with the launcher tests
    VENV_BIN,
    rlaunch,
    state_dir,
    synthetic_data,
    wait_for,
)
from tests.serve.conftest import tiny_model  # noqa: F401 - the served model, for test_chart

CLUSTER = PROJECT_ROOT / "scripts" / "k8s_cluster.sh"
# Set to keep the cluster running after the session (trying things by hand, faster reruns).
KEEP_ENV = "RLAUNCH_K8S_KEEP"
BUILDAH_ENV = {**os.environ, **BUILDAH_DEFAULT_ENV}


def cluster_script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(CLUSTER), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="package")
def kubeconfig() -> Iterator[Path]:
    """The cluster, up while this package's tests run (a cold first run builds it: up to an
    hour); down before the rest of the suite runs."""
    if os.geteuid() != 0:
        pytest.fail("the real Kubernetes cluster needs root (namespaces, cgroups, containerd)")
    done = cluster_script("up", timeout=5400)
    assert done.returncode == 0, f"k8s_cluster.sh up failed:\n{done.stderr[-3000:]}"
    path = Path(done.stdout.strip().splitlines()[-1])
    saved = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = saved
    if not os.environ.get(KEEP_ENV):
        down = cluster_script("down", timeout=300)
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="package")
def core(kubeconfig: Path):
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


@pytest.fixture(scope="package")
def cpu_image(kubeconfig: Path) -> str:
    """The checkout's cpu image, in both nodes' containerd under its exact tag."""
    tag = plan_build("cpu", "buildah", PROJECT_ROOT, base_image=local_base_name(),
                     revision="").tag
    have = subprocess.run(["buildah", "inspect", "--type", "image", tag], capture_output=True,
                          env=BUILDAH_ENV, check=False).returncode == 0
    if not have:
        built = subprocess.run([str(VENV_BIN / "rlaunch"), "build", "--target", "cpu",
                                "--builder", "buildah", "--local-base"], capture_output=True,
                               text=True, env=BUILDAH_ENV, check=False, timeout=1800)
        assert built.returncode == 0, built.stderr[-3000:]
        tag = built.stdout.strip()
    ref = tag if "/" in tag.split(":")[0] else f"localhost/{tag}"
    done = cluster_script("load", ref, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    return ref


@dataclass
class Namespace:
    """A test's namespace, its claims and where their host directories are."""

    name: str
    env: dict[str, str]
    data_dir: Path
    output_root: Path

    def opts(self) -> list[str]:
        return ["--opt", f"namespace={self.name}", "--opt", "data_pvc=data",
                "--opt", "output_pvc=output"]


def host_path_claim(core, namespace: str, claim: str, path: Path, read_only: bool) -> None:
    """A PersistentVolume on a host directory, bound to one claim of `namespace` (static
    provisioning: the claim names the volume, storageClassName "" turns dynamic off)."""
    from kubernetes import client

    volume = f"{namespace}-{claim}"
    modes = ["ReadOnlyMany"] if read_only else ["ReadWriteMany"]
    client.CoreV1Api(core.api_client).create_persistent_volume({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": modes,
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                 "hostPath": {"path": str(path), "type": "Directory"},
                 "claimRef": {"namespace": namespace, "name": claim}}})
    core.create_namespaced_persistent_volume_claim(namespace, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
        "spec": {"accessModes": modes, "storageClassName": "", "volumeName": volume,
                 "resources": {"requests": {"storage": "1Gi"}}}})


@pytest.fixture
def namespace(core, kubeconfig: Path, synthetic_data: Path,  # noqa: F811
              tmp_path: Path, state_dir: Path) -> Iterator[Namespace]:  # noqa: F811
    name = f"t-{secrets.token_hex(3)}"
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    # What an administrator provides for a non-root image: a shared directory it may write.
    output_root = tmp_path / "claim"
    output_root.mkdir()
    output_root.chmod(0o777)
    host_path_claim(core, name, "data", synthetic_data, read_only=True)
    host_path_claim(core, name, "output", output_root, read_only=False)
    wait_for(lambda: all(core.read_namespaced_persistent_volume_claim(c, name).status.phase
                         == "Bound" for c in ("data", "output")), 60, "claims to bind")
    env = {"RLAUNCH_STATE_DIR": str(state_dir), "KUBECONFIG": str(kubeconfig)}
    yield Namespace(name, env, synthetic_data, output_root)
    core.delete_namespace(name)
    for volume in core.list_persistent_volume().items:
        if volume.metadata.name.startswith(f"{name}-"):
            core.delete_persistent_volume(volume.metadata.name)


def job_status(job_id: str, env: dict[str, str]) -> dict:
    return json.loads(rlaunch("status", job_id, "--json", env=env).stdout)


def pods_of(core, namespace: str, job: str) -> list:
    return core.list_namespaced_pod(namespace, label_selector=f"rlaunch.dev/job={job}").items


@pytest.fixture(scope="package")
def ascend_crds(kubeconfig: Path) -> None:
    """The AscendJob, Volcano Job and Queue CRDs and Volcano's `default` queue
    (scripts/k8s_ascend_crds.yaml), applied server-side: idempotent, and no other test on the
    cluster depends on them."""
    import yaml
    from kubernetes import config
    from kubernetes.dynamic import DynamicClient

    dyn = DynamicClient(config.new_client_from_config(config_file=str(kubeconfig)))
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1",
                             kind="CustomResourceDefinition")
    docs = [d for d in yaml.safe_load_all(
        (PROJECT_ROOT / "scripts" / "k8s_ascend_crds.yaml").read_text()) if d]
    definitions = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    for doc in definitions:
        crds.server_side_apply(body=doc, name=doc["metadata"]["name"], field_manager="rlk8s",
                               force_conflicts=True)

    def established() -> bool:
        return all(any(c["type"] == "Established" and c["status"] == "True"
                       for c in crds.get(name=d["metadata"]["name"]).to_dict()
                       .get("status", {}).get("conditions") or []) for d in definitions)

    wait_for(established, 60, "the Ascend CRDs to be established")
    dyn.resources.invalidate_cache()
    for doc in docs:
        if doc not in definitions:
            dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"]).server_side_apply(
                body=doc, name=doc["metadata"]["name"], field_manager="rlk8s",
                force_conflicts=True)
