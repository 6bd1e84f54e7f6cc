"""The cpu image that `rlaunch build` makes, run by Slurm with runc: two ranks in the image.

The image is built with buildah (as tests/docker/test_image_build.py does; reused when the tag of
the checkout's content version is already in buildah's storage), converted to an OCI runtime
bundle with the standard tools (`buildah push ... oci:` then `umoci unpack`), and the job runs
its ranks inside it: `code_dir` is the image's /opt/venv, which does not exist on this host, so a
finished training can only have run in the image. Outputs land on the host path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.images import PROJECT_ROOT
from launcher.images.base_image import local_base_name
from launcher.images.builders import BUILDAH_DEFAULT_ENV, plan_build
from tests.launcher.conftest import TINY_TRAIN_SETS, VENV_BIN, rlaunch

from .conftest import NODES, job_output, submit, wait_finished

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

BUILDAH_ENV = {**os.environ, **BUILDAH_DEFAULT_ENV}


def run(argv: list[str], timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, env=BUILDAH_ENV, check=False,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)} -> {done.returncode}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def cpu_bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("building and running the image needs root (buildah vfs, runc)")
    tag = plan_build("cpu", "buildah", PROJECT_ROOT, base_image=local_base_name(),
                     revision="").tag
    have = subprocess.run(["buildah", "inspect", "--type", "image", tag], capture_output=True,
                          env=BUILDAH_ENV, check=False).returncode == 0
    if not have:
        built = run([str(VENV_BIN / "rlaunch"), "build", "--target", "cpu", "--builder",
                     "buildah", "--local-base"])
        tag = built.stdout.strip()
    work = tmp_path_factory.mktemp("oci")
    run(["buildah", "push", "--quiet", "--disable-compression", tag, f"oci:{work}/layout:cpu"])
    bundle = work / "bundle"
    run(["umoci", "unpack", "--image", f"{work}/layout:cpu", str(bundle)])
    shutil.rmtree(work / "layout")
    # The bundle holds the image's files: its 3 GB in buildah's vfs storage can go (the docker
    # tests leave it for this test; the base image and the pip cache stay for rebuilds).
    subprocess.run(["buildah", "rmi", tag], capture_output=True, env=BUILDAH_ENV, check=False)
    yield bundle
    shutil.rmtree(work, ignore_errors=True)  # 1.3 GB


def test_multinode_two_ranks_train_inside_the_image_with_runc(
    multinode_cluster: dict[str, str], cpu_bundle: Path, synthetic_data: Path, tmp_path: Path,
    state_dir: Path
) -> None:
    assert not Path("/opt/venv/resnest").exists(), "the host must not have the image's code"
    env = {**multinode_cluster, "RLAUNCH_STATE_DIR": str(state_dir)}
    output_dir = tmp_path / "out in image"
    # One node, two ranks: the nodes share this machine's 2 CPUs, and one rank per node would
    # put both on CPU 0 (each slurmd hands out its first CPU).
    job_id = submit("--nodes", "1", "--cpus", "2", "--name", "multinode-runc",
                    "--image", str(cpu_bundle), "--opt", "container_runtime=runc",
                    "--data-dir", str(synthetic_data), "--output-dir", str(output_dir),
                    *[a for s in TINY_TRAIN_SETS for a in ("--set", s)], env=env)
    script = (state_dir / "jobs" / job_id / "sbatch.sh").read_text()
    assert "launcher.backends.slurm_container runc --bundle" in script
    assert "cd /opt/venv" not in script
    final = wait_finished(job_id, env, 900)
    assert final["state"] == "COMPLETED", job_output(job_id, state_dir)[-4000:]

    # Outputs on the host path, written by both ranks from inside the image.
    assert (output_dir / "checkpoints" / "last.ckpt").is_file()
    for rank in (0, 1):
        assert (output_dir / "metrics" / f"rank{rank}.jsonl").is_file()
    logs = rlaunch("logs", job_id, env=env).stdout
    assert "[rank 0] " in logs and "[rank 1] " in logs
    assert re.search(rf"rlaunch: node ({'|'.join(NODES)}) \(node rank 0\) runs ranks 0-1 on "
                     r"CPUs 0-1", logs), logs[-3000:]
    assert "after allreduce eval: top1_correct=" in logs
