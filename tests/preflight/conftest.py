"""The launcher tests' fixtures (a private job store, real Slurm, synthetic data) and the
Kubernetes API test server of tests/k8s."""

from tests.k8s.conftest import kube, kube_server  # noqa: F401
from tests.launcher.conftest import (  # noqa: F401
    rlaunch,
    runner,
    slurm_cluster,
    state_dir,
    synthetic_data,
)
