"""`rlaunch submit --backend k8s --ascend 8 --nodes 2` on the real cluster: a Volcano Job of two
8-card pods. The CRDs are installed in the real API server; Volcano's job controller, MindX DL's
device plugin and ascend-operator are the stand-ins of tests/k8s/emulators.py running as
controllers (tests/realk8s/ascend_controllers.py); the real kube-scheduler places the pods on
the nodes that advertise `huawei.com/Ascend910: 8`, the kubelets run them, and each pod takes
its eight ranks from the rank table the operator stand-in fills. No NPU exists: the ranks opt in
to CPU standing in for it, and since MindSpore's CPU backend has no HCCL, the ranks the table
gave form MindSpore's dynamic cluster (resnest/distributed.py), 16 ranks on this machine's CPUs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.k8s.emulators import DEVICE_ANNOTATION, ApiStore
from tests.launcher.conftest import TINY_TRAIN_SETS, rlaunch, wait_for, write_synthetic_data

from .ascend_controllers import BoundDevicePlugin, ControllerLoop, RealCluster
from .conftest import Namespace, job_status, pods_of
from .test_jobset import step_events

pytestmark = [pytest.mark.integration, pytest.mark.realk8s, pytest.mark.timeout(1800)]

CARDS = 8
VAL_IMAGES = 16  # one validation image per rank


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes x 8 train / 4 val JPEGs of 32 px: two train images and one val image a rank."""
    return write_synthetic_data(tmp_path_factory.mktemp("data") / "syn16", val_per_class=4)


@pytest.fixture
def controllers(namespace: Namespace, core, ascend_crds: None):
    """The Volcano / MindX DL stand-ins reconciling the test's namespace."""
    node_ips = {n.metadata.name: next(a.address for a in n.status.addresses
                                      if a.type == "InternalIP")
                for n in core.list_node().items}
    cluster = RealCluster(ApiStore(core.api_client, namespace.name),
                          BoundDevicePlugin(nodes=list(node_ips.values()), node_ips=node_ips))
    with ControllerLoop(cluster):
        yield cluster


def test_vcjob_of_two_8_card_pods_is_placed_by_the_scheduler_and_trains_16_ranks(
    namespace: Namespace, cpu_image: str, core, controllers: RealCluster
) -> None:
    done = rlaunch("submit", "--backend", "k8s", "--ascend", str(CARDS), "--nodes", "2",
                   "--image", cpu_image, "--name", "rk-ascend", "--data-dir", "/data",
                   "--output-dir", "/output", *namespace.opts(),
                   "--env", "RESNEST_CPU_STANDS_IN_FOR_DEVICES=1", "--max-restarts", "2",
                   *[a for s in TINY_TRAIN_SETS for a in ("--set", s)], env=namespace.env)
    job_id = done.stdout.strip().splitlines()[-1]
    final = wait_for(lambda: (s := job_status(job_id, namespace.env))["state"]
                     in ("COMPLETED", "FAILED") and s, 1700, "the job to end")
    logs = rlaunch("logs", job_id, env=namespace.env).stdout
    failures = "\n".join(controllers.failures)[-5000:]
    assert not controllers.errors, controllers.errors[-1]
    assert final["state"] == "COMPLETED", json.dumps(final) + logs[-3000:] + failures
    # 16 MindSpore CPU workers on two loaded cores: one has segfaulted while the dynamic cluster
    # formed (docs/kubernetes.md). Volcano's policy then restarts the whole job, with new pods
    # and a new rank table; every restart is such a recorded pod failure.
    assert final["restarts"] == len(controllers.failures), failures

    # The real scheduler bound each 8-card pod to its own node (a node has 8 cards).
    pods = pods_of(core, namespace.name, job_id)
    assert len(pods) == 2
    assert {p.spec.node_name for p in pods} == {"rlk8s-node1", "rlk8s-node2"}
    for pod in pods:
        assert pod.status.phase == "Succeeded"
        assert pod.spec.containers[0].resources.limits["huawei.com/Ascend910"] == str(CARDS)
        events = core.list_namespaced_event(
            namespace.name, field_selector=f"involvedObject.name={pod.metadata.name}").items
        scheduled = [e for e in events if e.reason == "Scheduled"]
        assert scheduled and (scheduled[0].reporting_component == "default-scheduler"
                              or scheduled[0].source.component == "default-scheduler")

    # The operator stand-in's rank table: one server per pod, named by the pod's IP and UID,
    # ranks 0-15 once each, eight per pod.
    rings = core.read_namespaced_config_map(f"rings-config-{job_id}", namespace.name)
    table = json.loads(rings.data["hccl.json"])
    assert table["status"] == "completed" and table["server_count"] == "2"
    by_ip = {p.status.pod_ip: p for p in pods}
    ranks = []
    for server in table["server_list"]:
        pod = by_ip[server["container_ip"]]
        assert server["server_id"] == pod.metadata.uid
        assert server["host_ip"] == pod.status.host_ip
        assert DEVICE_ANNOTATION in pod.metadata.annotations
        assert len(server["device"]) == CARDS
        ranks += [int(d["rank_id"]) for d in server["device"]]
    assert sorted(ranks) == list(range(2 * CARDS))

    # Each of the 16 ranks trained (its own metrics file on the claim), as one group: the
    # allreduced eval counted every validation image once.
    assert "world_size=16 (rank_table) device=CPU" in logs, logs[-3000:]
    for rank in range(2 * CARDS):
        assert step_events(namespace, rank), f"rank {rank} made no training step"
    assert f"tot={VAL_IMAGES}" in logs, logs[-3000:]
