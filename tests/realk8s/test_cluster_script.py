"""The cluster's own scripts on bad input and faults: one line naming the cause, a non-zero exit,
nothing half built or half up (a running cluster is left as it was)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import CLUSTER, cluster_script

pytestmark = [pytest.mark.integration, pytest.mark.realk8s]

BUILD = CLUSTER.parent / "k8s_build.sh"


def run_build(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env}, check=False)


def errors(stderr: str) -> list[str]:
    """The lines that are not progress (progress lines say what is being done, with "ing")."""
    return [line for line in stderr.splitlines()
            if not line.startswith(("k8s_build: reading", "k8s_build: building"))]


def test_build_without_go_names_the_missing_toolchain(tmp_path: Path) -> None:
    done = run_build({"PATH": "/usr/bin:/bin", "RLAUNCH_K8S_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 1
    assert errors(done.stderr) == [errors(done.stderr)[0]]
    assert "no Go toolchain" in done.stderr
    assert not (tmp_path / "cache").exists()


def test_build_of_a_release_the_proxy_does_not_serve_writes_nothing(tmp_path: Path) -> None:
    done = run_build({"RLAUNCH_K8S_VERSION": "v1.35.99", "RLAUNCH_K8S_CACHE": str(tmp_path)})
    assert done.returncode == 1
    (line,) = errors(done.stderr)
    assert "does not serve k8s.io/kubernetes@v1.35.99" in line
    assert list(tmp_path.iterdir()) == []


def test_usage_errors(kubeconfig: Path) -> None:
    done = cluster_script("frobnicate", timeout=30)
    assert done.returncode == 2 and "usage:" in done.stderr
    done = cluster_script("load", "x; touch /tmp/PWNED", timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip() == "k8s_cluster: not an image reference: 'x; touch /tmp/PWNED'"
    assert not Path("/tmp/PWNED").exists()
    done = cluster_script("load", "localhost/rlaunch-cpu", timeout=30)
    assert done.returncode == 1 and "has no tag" in done.stderr


def test_up_refuses_a_taken_subnet_and_leaves_the_running_cluster_alone(kubeconfig: Path) -> None:
    # Something else on the host routes part of the cluster's subnet.
    subprocess.run(["ip", "route", "add", "blackhole", "10.233.200.0/24"], check=True)
    try:
        done = cluster_script("up", timeout=120)
    finally:
        subprocess.run(["ip", "route", "del", "blackhole", "10.233.200.0/24"], check=True)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "10.233.0.0/16" in line and "10.233.200.0/24" in line
    assert cluster_script("status", timeout=60).returncode == 0
