"""API steps of scripts/k8s_cluster.sh that need a Kubernetes client: JobSet's objects and the
nodes' extended resources. Every failure is one line on stderr and exit 1."""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
JOBSET_NAMESPACE = "jobset-system"
JOBSET_PREFIX = "jobset-"  # config/default/kustomization.yaml: namePrefix, namespace
# What a node of the test cluster advertises besides CPU and memory (no device plugin serves
# them: inside the pods CPU stands in for the device, RESNEST_CPU_STANDS_IN_FOR_DEVICES=1).
EXTENDED_RESOURCES = {"huawei.com/Ascend910": "8", "nvidia.com/gpu": "8"}
# The label an Atlas 800T A2 node carries (8 Ascend 910B cards), which rlaunch's Ascend pods
# select (MindX DL docs: accelerator-type=module-910b-8).
NODE_LABELS = {"accelerator-type": "module-910b-8"}


class Failure(Exception):
    pass


def clients(kubeconfig: str) -> tuple[Any, Any]:
    from kubernetes import config
    from kubernetes.dynamic import DynamicClient

    api = config.new_client_from_config(config_file=kubeconfig)
    return api, DynamicClient(api)


def apply(dyn: Any, obj: dict[str, Any]) -> None:
    """Server-side apply: creates or updates, so `up` after a half-finished start converges."""
    resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    meta = obj["metadata"]
    resource.server_side_apply(body=obj, name=meta["name"], namespace=meta.get("namespace"),
                               field_manager="rlk8s", force_conflicts=True)


def json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    """The `replace`/`add` operations kustomize patches use (RFC 6902 paths)."""
    for op in ops:
        if op.get("op") not in ("replace", "add"):
            raise Failure(f"unsupported patch operation {op.get('op')!r}")
        *parents, last = [p.replace("~1", "/").replace("~0", "~")
                          for p in op["path"].lstrip("/").split("/")]
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            index = len(target) if last == "-" else int(last)
            if op["op"] == "add":
                target.insert(index, op["value"])
            else:
                target[index] = op["value"]
        else:
            target[last] = op["value"]


def jobset_webhook_configurations(component: Path) -> list[dict[str, Any]]:
    """The webhook configurations of JobSet's config/components/webhook, as its kustomization
    and config/default make them: patches applied, names prefixed, service in jobset-system."""
    kustomization = yaml.safe_load((component / "kustomization.yaml").read_text())
    docs = [d for d in yaml.safe_load_all((component / "manifests.yaml").read_text()) if d]
    for patch in kustomization.get("patches", []):
        target = patch.get("target", {})
        ops = yaml.safe_load((component / patch["path"]).read_text())
        for doc in docs:
            if doc["kind"] == target.get("kind") and doc["metadata"]["name"] == target.get("name"):
                json_patch(doc, ops)
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        doc["metadata"]["name"] = JOBSET_PREFIX + doc["metadata"]["name"]
        for hook in doc.get("webhooks", []):
            service = hook["clientConfig"]["service"]
            service["name"] = JOBSET_PREFIX + service["name"]
            service["namespace"] = JOBSET_NAMESPACE
        out.append(doc)
    return out


def jobset_objects(kubeconfig: str, crd: Path, webhooks: Path, manager_address: str) -> None:
    _, dyn = clients(kubeconfig)
    crd_doc = yaml.safe_load(crd.read_text())
    apply(dyn, crd_doc)
    objects = [d for d in yaml.safe_load_all((HERE / "k8s_cluster_objects.yaml").read_text()) if d]
    for obj in objects:
        for endpoint in obj.get("endpoints", []):
            endpoint["addresses"] = [manager_address]
        apply(dyn, obj)
    for doc in jobset_webhook_configurations(webhooks):
        apply(dyn, doc)
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    name = crd_doc["metadata"]["name"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conditions = crds.get(name=name).to_dict().get("status", {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        time.sleep(0.5)
    raise Failure(f"CRD {name} was not established within 60s")


def nodes_ready(kubeconfig: str, count: int, timeout: float) -> None:
    """Wait for `count` Ready nodes, then advertise the extended resources on each through the
    status subresource (kubernetes.io docs: tasks/administer-cluster/extended-resource-node)
    and label them as the Ascend servers they stand in for."""
    from kubernetes import client

    api, _ = clients(kubeconfig)
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    ready: list[str] = []
    while time.monotonic() < deadline:
        ready = [n.metadata.name for n in core.list_node().items
                 if any(c.type == "Ready" and c.status == "True"
                        for c in (n.status.conditions or []))]
        if len(ready) >= count:
            break
        time.sleep(1)
    else:
        raise Failure(f"{len(ready)} of {count} nodes Ready after {timeout:.0f}s")
    for name in ready:
        core.patch_node_status(name, {"status": {"capacity": EXTENDED_RESOURCES}})
        core.patch_node(name, {"metadata": {"labels": NODE_LABELS}})
    while time.monotonic() < deadline:
        if all(all((core.read_node(n).status.allocatable or {}).get(k) == v
                   for k, v in EXTENDED_RESOURCES.items()) for n in ready):
            return
        time.sleep(1)
    raise Failure("the nodes did not show the extended resources as allocatable")


def sync_secret(kubeconfig: str, namespace: str, name: str, directory: Path) -> None:
    """Keep `directory` holding the Secret's keys as files, as a kubelet's secret volume does for
    a pod (the JobSet manager runs as a process and waits for its certificates to appear there)."""
    import base64

    from kubernetes import client

    api, _ = clients(kubeconfig)
    core = client.CoreV1Api(api)
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, bytes] = {}
    while True:
        try:
            data = core.read_namespaced_secret(name, namespace).data or {}
        except Exception:  # noqa: BLE001 - the API is briefly away: try again
            data = {}
        for key, value in data.items():
            raw = base64.b64decode(value)
            if written.get(key) != raw:
                tmp = directory / f".{key}.tmp"
                tmp.write_bytes(raw)
                tmp.chmod(0o600)
                tmp.replace(directory / key)
                written[key] = raw
        time.sleep(2)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    sub = parser.add_subparsers(dest="step", required=True)
    js = sub.add_parser("jobset-objects")
    js.add_argument("crd", type=Path)
    js.add_argument("webhooks", type=Path)
    js.add_argument("manager_address")
    nr = sub.add_parser("nodes-ready")
    nr.add_argument("--nodes", type=int, required=True)
    nr.add_argument("--timeout", type=float, default=180)
    ss = sub.add_parser("sync-secret")
    ss.add_argument("namespace")
    ss.add_argument("name")
    ss.add_argument("directory", type=Path)
    args = parser.parse_args()
    try:
        if args.step == "sync-secret":
            sync_secret(args.kubeconfig, args.namespace, args.name, args.directory)
        elif args.step == "jobset-objects":
            jobset_objects(args.kubeconfig, args.crd, args.webhooks, args.manager_address)
        else:
            nodes_ready(args.kubeconfig, args.nodes, args.timeout)
    except Failure as err:
        print(f"k8s_cluster: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - an API error: one line, not a traceback
        print(f"k8s_cluster: {args.step}: {type(err).__name__}: {str(err).splitlines()[0]}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
