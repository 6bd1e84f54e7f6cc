"""The launcher tests' fixtures (a private job store, real Slurm, synthetic data)."""

from tests.launcher.conftest import (  # noqa: F401
    rlaunch,
    runner,
    slurm_cluster,
    state_dir,
    synthetic_data,
)
