"""A sweep on Kubernetes against the API test server (kmock, real HTTP): one JobSet per trial,
at most `--max-parallel` unfinished at once (rlaunch's own runner submits the next one when a
trial's JobSet reports Completed), `status` of every trial from one list call, `cancel` deletes
the objects of every unfinished trial and stops the runner."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from launcher.backends.local import process_alive
from launcher.cli import cli
from tests.k8s.conftest import NAMESPACE, KubeServer

pytestmark = pytest.mark.timeout(120)

JOBSETS = ("jobsets", "jobset.x-k8s.io/v1alpha2")
JOBSET_PATH = f"/apis/jobset.x-k8s.io/v1alpha2/namespaces/{NAMESPACE}/jobsets"


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def complete(kube: KubeServer, name: str) -> None:
    """Play the JobSet controller: the trial's JobSet finished."""
    job = kube.objects(*JOBSETS)[name]
    job["status"] = {"conditions": [{"type": "Completed", "status": "True",
                                     "reason": "AllJobsCompleted", "message": "done"}]}
    kube.put(JOBSETS[0], job, JOBSETS[1])


@pytest.fixture
def runners_stopped(tmp_path: Path) -> Iterator[None]:
    """However the test ends, no sweep runner it started outlives it."""
    yield
    for pid_file in (tmp_path / "state" / "jobs").glob("*/runner.pid"):
        pid, start = (int(w) for w in pid_file.read_text().split())
        if process_alive(pid, start):  # the same process, not a later one with its pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_bounded_sweep_status_in_one_list_call_and_cancel(
        kube: KubeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        runners_stopped: None) -> None:
    monkeypatch.setenv("RLAUNCH_SWEEP_POLL", "0.2")
    runner = CliRunner()
    result = runner.invoke(cli, [
        # --no-check: this API server has no JobSet CRD or nodes (tests/preflight checks those).
        "sweep", "--no-check", "--backend", "k8s", "--gpus", "8", "--data-dir", "/data", "--output-dir",
        "/out", "--image", "registry.example/resnest:gpu", "--opt", "output_pvc=runs",
        "--grid", "lr=0.05,0.1,0.2", "--max-parallel", "2"])
    assert result.exit_code == 0, result.output
    sweep_id = result.output.split()[-1]
    names = [f"{sweep_id}-t{i}" for i in range(3)]
    wait_for(lambda: len(kube.objects(*JOBSETS)) == 2, "two trials submitted")
    time.sleep(1.0)  # several runner polls: the third must still wait for a slot
    assert sorted(kube.objects(*JOBSETS)) == names[:2]

    complete(kube, names[0])
    wait_for(lambda: names[2] in kube.objects(*JOBSETS), "the third trial once one finished")
    # the runner notes a trial as started right after its objects are created
    wait_for(lambda: (tmp_path / "state" / "jobs" / sweep_id / "trial-2" / "submitted").exists(),
             "the runner to note the third trial")
    # each trial's output folder is its own, and its own directory of the shared claim
    sent = json.dumps(kube.objects(*JOBSETS)[names[2]])
    assert "/out/trial-2" in sent and f'"subPath": "{names[2]}"' in sent

    before = len(kube.requests())
    status = runner.invoke(cli, ["status", sweep_id, "--json"])
    assert status.exit_code == 0, status.output
    rows = json.loads(status.output)["trials"]
    assert [r["state"] for r in rows] == ["COMPLETED", "RUNNING", "RUNNING"]
    lists = [r for r in kube.requests()[before:]
             if str(r.method).endswith("GET") and r.url.path == JOBSET_PATH]
    assert len(lists) == 1

    runner_pid = int((tmp_path / "state" / "jobs" / sweep_id / "runner.pid").read_text().split()[0])
    cancelled = runner.invoke(cli, ["cancel", sweep_id])
    assert cancelled.exit_code == 0, cancelled.output
    wait_for(lambda: sorted(kube.objects(*JOBSETS)) == names[:1],
             "every unfinished trial's JobSet deleted")
    assert sorted(kube.objects("configmaps")) == [f"{names[0]}-rlaunch"]
    assert not process_alive(runner_pid, None)
    # Cancelled trials whose objects are gone read as cancelled, not as unknown.
    after = json.loads(runner.invoke(cli, ["status", sweep_id, "--json"]).output)
    assert [r["state"] for r in after["trials"]] == ["COMPLETED", "CANCELLED", "CANCELLED"]
    assert after["state"] == "CANCELLED"
