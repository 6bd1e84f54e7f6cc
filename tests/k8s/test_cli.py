"""`rlaunch ... --backend k8s` end to end: dry-run streams, and a job's life over real HTTP."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from launcher.cli import cli
from resnest.contract import EvalResult, write_eval_result
from tests.k8s.conftest import NAMESPACE, KubeServer, serve_log
from tests.k8s.test_render import validate

pytestmark = pytest.mark.timeout(120)
JOBSETS = ("jobsets", "jobset.x-k8s.io/v1alpha2")


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize(("devices", "kind"), [
    (["--ascend", "8", "--nodes", "2"], "Job"),
    (["--ascend", "8", "--nodes", "2", "--ascend-chip", "910"], "Job"),
    (["--ascend", "16", "--ascend-chip", "910b"], "Job"),
    (["--ascend", "8", "--nodes", "2", "--opt", "workload=acjob"], "AscendJob"),
    (["--gpus", "8", "--nodes", "2"], "JobSet"),
])
def test_dry_run_prints_one_valid_yaml_stream(runner: CliRunner, devices: list[str],
                                              kind: str) -> None:
    result = runner.invoke(cli, ["submit", "--backend", "k8s", *devices, "--data-dir", "/data",
                                 "--output-dir", "/output", "--dry-run"])
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert [d["kind"] for d in docs][-1] == kind
    # Named after a job id (`<name>-<6 hex>`), as submit would name them.
    assert re.fullmatch(r"resnest-[0-9a-f]{6}", docs[-1]["metadata"]["name"])
    for doc in docs:
        for version in ("1.30.0", "latest"):
            validate(doc, version)


def test_the_k8s_defaults_apply_before_the_value_checks(runner: CliRunner) -> None:
    """In-pod data/output paths and the 910B chip are the backend's defaults: the bare command
    renders, and 16 cards (910B servers have up to 16) need no --ascend-chip."""
    result = runner.invoke(cli, ["submit", "--backend", "k8s", "--ascend", "16", "--nodes", "2",
                                 "--dry-run"])
    assert result.exit_code == 0, result.output
    job = [d for d in yaml.safe_load_all(result.stdout) if d][-1]
    pod = job["spec"]["tasks"][0]["template"]["spec"]
    assert pod["nodeSelector"] == {"accelerator-type": "module-910b-16"}
    assert {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]} >= {"/output"}


def test_dry_run_does_not_import_the_kubernetes_client(tmp_path: Path) -> None:
    import subprocess

    code = (
        "import sys; from launcher.cli import main\n"
        "sys.argv = ['rlaunch', 'submit', '--backend', 'k8s', '--gpus', '8', '--nodes', '2',"
        " '--data-dir', '/d', '--output-dir', '/o', '--dry-run']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('kubernetes' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stderr.strip().endswith("False")


def test_opt_flags_reach_the_manifests(runner: CliRunner) -> None:
    result = runner.invoke(cli, [
        "submit", "--backend", "k8s", "--gpus", "8", "--nodes", "2", "--data-dir", "/data",
        "--output-dir", "/output", "--image", "registry.example/rn:gpu",
        "--opt", "workload=vcjob", "--opt", "namespace=team-a", "--opt", "data_pvc=imagenet",
        "--opt", "output_pvc=runs", "--opt", "image_pull_secrets=regcred,mirror",
        "--opt", "service_account=trainer", "--opt", "priority_class=high",
        "--dry-run"])
    assert result.exit_code == 0, result.output
    docs = {d["kind"]: d for d in yaml.safe_load_all(result.stdout) if d}
    assert docs["Job"]["metadata"]["namespace"] == "team-a"
    pod = docs["Job"]["spec"]["tasks"][0]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    assert pod["serviceAccountName"] == "trainer"
    assert pod["priorityClassName"] == "high"
    assert pod["containers"][0]["image"] == "registry.example/rn:gpu"


def test_bad_opt_is_one_line_and_exit_2(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["submit", "--backend", "k8s", "--gpus", "8", "--data-dir", "/d",
                                 "--output-dir", "/o", "--opt", "workload=acjob", "--dry-run"])
    assert result.exit_code == 2
    assert "--opt workload acjob cannot run gpu jobs (allowed: jobset, vcjob)" in result.output


def test_job_life_through_the_cli(runner: CliRunner, kube: KubeServer) -> None:
    submitted = runner.invoke(cli, ["submit", "--backend", "k8s", "--gpus", "2", "--nodes", "2",
                                    "--data-dir", "/data", "--output-dir", "/output",
                                    "--image", "img:1"])
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.stdout.strip().splitlines()[-1]
    assert job_id.startswith("resnest-")
    assert set(kube.objects(*JOBSETS)) == {job_id}
    # What was sent is what the job directory keeps, which is what --dry-run prints.
    record = json.loads(runner.invoke(cli, ["status", job_id, "--json"]).stdout)
    sent = [r.data for r in kube.requests() if str(r.method).endswith("POST")]
    job_dir = Path(os.environ["RLAUNCH_STATE_DIR"])
    manifests = next(job_dir.rglob(f"{job_id}/manifests.yaml"))
    assert sent == [d for d in yaml.safe_load_all(manifests.read_text()) if d]
    assert record["backend_id"] == f"{NAMESPACE}/{job_id}"

    status = runner.invoke(cli, ["status", job_id, "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["state"] == "PENDING"
    assert json.loads(status.stdout)["backend_id"] == f"{NAMESPACE}/{job_id}"

    for index in (0, 1):
        kube.put("pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{job_id}-{index}-x", "labels": {"rlaunch.dev/job": job_id},
                         "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
            "spec": {"containers": [{"name": "trainer", "image": "img:1"}]},
            "status": {"phase": "Running"}})
        serve_log(kube, f"{job_id}-{index}-x", f"[rank {2 * index}] hello\n".encode())
    status = runner.invoke(cli, ["status", job_id, "--json"])
    assert json.loads(status.stdout)["state"] == "RUNNING"

    logs = runner.invoke(cli, ["logs", job_id])
    assert logs.exit_code == 0, logs.output
    assert logs.stdout.splitlines() == ["[rank 0] hello", "[rank 2] hello"]

    listed = runner.invoke(cli, ["list", "--json"])
    assert [r["id"] for r in json.loads(listed.stdout)] == [job_id]

    cancelled = runner.invoke(cli, ["cancel", job_id])
    assert cancelled.exit_code == 0, cancelled.output
    assert kube.objects(*JOBSETS) == {}
    status = runner.invoke(cli, ["status", job_id, "--json"])
    assert json.loads(status.stdout)["state"] == "UNKNOWN"


def test_api_error_is_one_line_at_the_cli(runner: CliRunner, kube: KubeServer) -> None:
    import kmock

    kube.kmock["post"] << kmock.KubernetesError(status=403, reason="Forbidden",
                                                message="configmaps is forbidden")
    result = runner.invoke(cli, ["submit", "--backend", "k8s", "--gpus", "1", "--data-dir", "/d",
                                 "--output-dir", "/o", "--image", "registry.example/rn:1"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: creating ConfigMap resnest-")
    assert result.output.strip().endswith("forbidden: configmaps is forbidden")
    assert "Traceback" not in result.output


def test_submit_without_image_is_a_usage_error_and_sends_nothing(
        runner: CliRunner, kube: KubeServer) -> None:
    """The images `rlaunch build` names exist in no registry a node pulls from."""
    result = runner.invoke(cli, ["submit", "--backend", "k8s", "--gpus", "1", "--data-dir", "/d",
                                 "--output-dir", "/o"])
    assert result.exit_code == 2
    assert "--backend k8s needs --image REGISTRY/NAME:TAG" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: --backend k8s needs --image")
    assert kube.requests() == []
    listed = runner.invoke(cli, ["list", "--json"])
    assert json.loads(listed.stdout) == []


def test_gather_through_the_cli(runner: CliRunner, kube: KubeServer, tmp_path: Path) -> None:
    """Outputs from the claim (via the gather pod) plus the accuracy line from the pod logs."""
    import re
    import subprocess

    import kmock

    from launcher.backends.k8s_api import Cluster

    submitted = runner.invoke(cli, ["submit", "--backend", "k8s", "--gpus", "1",
                                    "--data-dir", "/data", "--output-dir", "/output",
                                    "--image", "img:1", "--opt", "output_pvc=runs"])
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.stdout.strip().splitlines()[-1]
    kube.put("pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{job_id}-0-x", "labels": {"rlaunch.dev/job": job_id},
                     "annotations": {"batch.kubernetes.io/job-completion-index": "0"}},
        "spec": {"containers": [{"name": "trainer", "image": "img:1"}]},
        "status": {"phase": "Succeeded"}})
    serve_log(kube, f"{job_id}-0-x", (
        b"[rank 0] after allreduce eval: top1_correct=7, tot=10, acc=70.00%(TOP1)\n"
        b"[rank 0] after allreduce eval: top5_correct=10, tot=10, acc=100.00%(TOP5)\n"))
    # The claim's content, printed by the gather pod's own script run here.
    claim = tmp_path / "claim"
    (claim / "checkpoints").mkdir(parents=True)
    (claim / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    # The trainer's eval result file (resnest/contract.py): gather reads the accuracy from it.
    write_eval_result(claim, EvalResult(top1_correct=7, top5_correct=10, total=10,
                                        expected_total=10))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    script = Cluster.gather_pod_manifest(
        "x", job_id, "runs", "img", [], {}, [])["spec"]["containers"][0]["command"][2]
    script = script.replace("/tmp", str(scratch)).replace("/output", str(claim))
    printed = subprocess.run(["/bin/sh", "-c", script], check=True, capture_output=True).stdout
    gather_pod = re.compile(rf"/api/v1/namespaces/{NAMESPACE}/pods/{job_id}-gather-[0-9a-f]{{6}}")
    kube.kmock["get", re.compile(gather_pod.pattern + "$")] << {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "g"},
        "status": {"phase": "Succeeded"}}
    kube.kmock["get", re.compile(gather_pod.pattern + "/log$")] << kmock.headers(
        {"Content-Type": "text/plain"}) << printed

    dest = tmp_path / "gathered"
    result = runner.invoke(cli, ["gather", job_id, "--dest", str(dest)])
    assert result.exit_code == 0, result.output
    assert "allreduced accuracy: top-1 70.00% (7/10), top-5 100.00% (10/10)" in result.stdout
    assert (dest / "checkpoints" / "last.ckpt").read_bytes() == b"weights"
    assert (dest / "logs" / "node0.log").read_text().startswith("[rank 0] after allreduce")
