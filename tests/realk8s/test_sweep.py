"""`rlaunch sweep --backend k8s` on a real Kubernetes: one JobSet per trial, at most
`--max-parallel` unfinished at once (rlaunch's own runner: the test cluster has no Volcano or
Kueue queue), `status` as one table from one LIST of JobSets (the API server's own request
counter), `gather` ranks the trials and draws the plot, `usage` adds up the trials' pod times as
the API server reports them, and one `cancel` leaves nothing of a running sweep in the
namespace."""

from __future__ import annotations

import datetime
import json
import re
import ssl
import urllib.request
from pathlib import Path

import pytest

from launcher.backends.local import process_alive
from launcher.preflight.k8s import quantity
from tests.launcher.conftest import TINY_TRAIN_SETS, rlaunch, wait_for

from .conftest import Namespace

pytestmark = [pytest.mark.integration, pytest.mark.realk8s, pytest.mark.timeout(1800)]

LEARNING_RATES = "lr=0.01,0.05,0.2"
JOBSET = ("jobset.x-k8s.io", "v1alpha2", "jobsets")
VAL_IMAGES = 12  # tests/launcher/conftest.py synthetic_data: 4 classes x 3 val images


def sweep(ns: Namespace, image: str, name: str, *extra: str, sets: list[str]) -> str:
    # --opt cpu=1: each pod requests (and is limited to) one CPU, what usage counts.
    done = rlaunch("sweep", "--backend", "k8s", "--nodes", "1", "--cpus", "1", "--opt", "cpu=1",
                   "--image", image, "--name", name, "--data-dir", "/data", "--output-dir",
                   "/output", *ns.opts(), *[a for s in sets for a in ("--set", s)], "--grid",
                   LEARNING_RATES, "--max-parallel", "2", *extra,
                   env={**ns.env, "RLAUNCH_SWEEP_POLL": "2"})
    print(done.stderr + done.stdout)  # the docs' example output (pytest -s)
    return done.stdout.strip().splitlines()[-1]


def jobsets(core, namespace: str) -> list[dict]:
    from kubernetes import client

    return client.CustomObjectsApi(core.api_client).list_namespaced_custom_object(
        *JOBSET[:2], namespace, JOBSET[2])["items"]


def finished(jobset: dict) -> bool:
    return any(c.get("type") in ("Completed", "Failed") and c.get("status") == "True"
               for c in (jobset.get("status") or {}).get("conditions") or [])


def sweep_status(sweep_id: str, env: dict[str, str]) -> dict:
    return json.loads(rlaunch("status", sweep_id, "--json", env=env).stdout)


def jobset_lists(kubeconfig: Path) -> float:
    """How many LISTs of JobSets the API server has answered (its own request counter)."""
    import yaml

    config = yaml.safe_load(kubeconfig.read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    context = ssl.create_default_context(cafile=cluster["certificate-authority"])
    context.load_cert_chain(user["client-certificate"], user["client-key"])
    with urllib.request.urlopen(f"{cluster['server']}/metrics", context=context,
                                timeout=30) as response:
        text = response.read().decode()
    pattern = re.compile(r'^apiserver_request_total\{(?=[^}]*resource="jobsets")'
                         r'(?=[^}]*verb="LIST")[^}]*\} (\S+)$', re.MULTILINE)
    return sum(float(v) for v in pattern.findall(text))


def stamp(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def test_sweep_runs_at_most_k_then_status_gather_and_usage(
    namespace: Namespace, cpu_image: str, core, kubeconfig: Path, tmp_path: Path
) -> None:
    sweep_id = sweep(namespace, cpu_image, "lrs", sets=TINY_TRAIN_SETS)
    names = [f"{sweep_id}-t{i}" for i in range(3)]
    most_unfinished = 0

    def done() -> bool:
        nonlocal most_unfinished
        objects = jobsets(core, namespace.name)
        most_unfinished = max(most_unfinished, sum(not finished(o) for o in objects))
        assert {o["metadata"]["name"] for o in objects} <= set(names)
        return sweep_status(sweep_id, namespace.env)["state"] in ("COMPLETED", "FAILED")

    wait_for(done, 1500, "the sweep to end")
    logs = rlaunch("logs", sweep_id, "--trial", "0", env=namespace.env).stdout
    status = sweep_status(sweep_id, namespace.env)
    assert status["state"] == "COMPLETED", json.dumps(status) + logs[-3000:]
    # The runner's bound held on the real cluster, and it was reached.
    assert most_unfinished == 2
    assert sorted(o["metadata"]["name"] for o in jobsets(core, namespace.name)) == names

    # One table of the three trials, from one LIST of JobSets.
    before = jobset_lists(kubeconfig)
    table = rlaunch("status", sweep_id, env=namespace.env).stdout
    assert jobset_lists(kubeconfig) - before == 1
    print(table)
    assert f"sweep {sweep_id} on k8s" in table and table.count("COMPLETED") == 4, table
    for lr in ("0.01", "0.05", "0.2"):
        assert lr in table

    gathered = rlaunch("gather", sweep_id, "--dest", str(tmp_path / "g"), env=namespace.env).stdout
    assert "trials ranked by allreduced top-1" in gathered
    print(gathered)
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["state"] == "COMPLETED" and sorted(summary["ranking"]) == [0, 1, 2]
    top1 = [t["final"]["top1"] for t in summary["trials"]]
    assert top1 == sorted(top1, reverse=True)
    assert all(t["final"]["total"] == VAL_IMAGES for t in summary["trials"])
    assert [t["values"]["lr"] for t in sorted(summary["trials"], key=lambda t: t["trial"])] \
        == ["0.01", "0.05", "0.2"]
    assert (tmp_path / "g" / "sweep.png").stat().st_size > 1000
    for trial in range(3):
        assert (tmp_path / "g" / f"trial-{trial}" / "summary.json").is_file()

    # Usage: each pod's start to its container's finish, x the CPUs it requested, as the API
    # server reports them for the same pods.
    usage = json.loads(rlaunch("usage", sweep_id, "--json", env=namespace.env).stdout)
    attempts = usage["jobs"][0]["attempts"]
    pods = core.list_namespaced_pod(namespace.name).items
    assert len(pods) == 3 and len(attempts) == 3
    expected = {}
    for pod in pods:
        [state] = pod.status.container_statuses
        seconds = (state.state.terminated.finished_at - pod.status.start_time).total_seconds()
        cpus = quantity(pod.spec.containers[0].resources.requests["cpu"])
        trial = int(pod.metadata.labels["rlaunch.dev/job"].rpartition("-t")[2])
        expected[pod.metadata.name] = (seconds, cpus, trial)
    for attempt in attempts:
        seconds, cpus, trial = expected[attempt["label"]]
        assert attempt["seconds"] == pytest.approx(seconds, abs=1e-6)
        assert attempt["devices"] == {"cpu": cpus} and attempt["trial"] == trial
        assert attempt["state"] == "Succeeded"
    cpu_hours = sum(s * c for s, c, _ in expected.values()) / 3600
    assert usage["jobs"][0]["device_hours"]["cpu"] == pytest.approx(cpu_hours, abs=1e-5)
    assert cpu_hours > 0 and {c for _, c, _ in expected.values()} == {1.0}
    print(rlaunch("usage", sweep_id, "--price", "cpu=0.02", env=namespace.env).stdout)


def test_one_cancel_stops_a_running_sweep_and_leaves_nothing(
    namespace: Namespace, cpu_image: str, core
) -> None:
    sweep_id = sweep(namespace, cpu_image, "lrstop",
                     sets=[*TINY_TRAIN_SETS, "epochs=50", "batch_size=1"])
    wait_for(lambda: [r for r in sweep_status(sweep_id, namespace.env)["trials"]
                      if r["state"] == "RUNNING"], 900, "a trial to run")
    job_dir = Path(namespace.env["RLAUNCH_STATE_DIR"]) / "jobs" / sweep_id
    runner_pid = int((job_dir / "runner.pid").read_text().split()[0])
    assert len(jobsets(core, namespace.name)) == 2  # the third waits for a slot

    rlaunch("cancel", sweep_id, env=namespace.env)
    status = sweep_status(sweep_id, namespace.env)
    assert status["state"] == "CANCELLED", json.dumps(status)
    assert not process_alive(runner_pid, None)
    wait_for(lambda: not core.list_namespaced_pod(namespace.name).items, 300, "the pods to go")
    from kubernetes import client

    assert not jobsets(core, namespace.name)
    assert not client.BatchV1Api(core.api_client).list_namespaced_job(namespace.name).items
    assert not core.list_namespaced_service(namespace.name).items
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace.name).items] \
        == ["kube-root-ca.crt"]
    assert [r["state"] for r in sweep_status(sweep_id, namespace.env)["trials"]] \
        == ["CANCELLED"] * 3
