"""A real, daemonless build of the cpu image with buildah, then training + eval inside it.

No registry is reachable here, so the base is a Debian bookworm minbase made by debootstrap
(`rlaunch build --local-base`, cached in buildah's storage and /var/cache/rlaunch). Needs root
and buildah + debootstrap, which scripts/setup.sh installs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.images import PROJECT_ROOT, builders
from launcher.images.base_image import local_base_name
from launcher.images.builders import BUILDAH_DEFAULT_ENV
from launcher.images.context import content_version

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

RLAUNCH = Path(sys.executable).parent / "rlaunch"
BUILDAH_ENV = {**os.environ, **BUILDAH_DEFAULT_ENV}
ENTRYPOINT = "/usr/local/bin/rlaunch-entrypoint"
TINY = ["--set", "net_name=resnest14d", "--set", "num_classes=3", "--set", "base_size=36",
        "--set", "crop_size=32", "--set", "batch_size=6", "--set", "test_batch_size=6",
        "--set", "num_workers=1", "--set", "autoaugment=false", "--set", "device_target=CPU"]
CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS = 3, 6, 4


def buildah(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["buildah", *args], capture_output=True, text=True, env=BUILDAH_ENV,
                          check=False, timeout=900)
    if check and done.returncode != 0:
        pytest.fail(f"buildah {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def expected_version() -> str:
    """Computed right before the build: others may edit the shared checkout meanwhile."""
    return content_version(PROJECT_ROOT, PROJECT_ROOT / "docker" / "cpu.Dockerfile",
                           {"BASE_IMAGE": local_base_name()}, prefix=builders._project_version())


@pytest.fixture(scope="module")
def image(expected_version: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("the image build test needs root (debootstrap, buildah's vfs storage)")
    done = subprocess.run(
        [str(RLAUNCH), "build", "--target", "cpu", "--builder", "buildah", "--local-base"],
        capture_output=True, text=True, check=False, timeout=1500,
    )
    log = tmp_path_factory.mktemp("build") / "build.log"
    log.write_text(done.stderr)
    assert done.returncode == 0, f"{done.stderr[-4000:]}\n(full log: {log})"
    tag = done.stdout.strip()  # progress goes to stderr, the tag alone to stdout
    assert "slowest steps: " in done.stderr
    # Kept for tests/slurm/test_multinode_container.py, which runs this image under Slurm and
    # removes it (3 GB in vfs storage) when done: one build per CI run, not two.
    yield tag


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[str]:
    ctr = buildah("from", "--pull=never", image).stdout.strip()
    yield ctr
    buildah("rm", ctr, check=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "synthetic"
    subprocess.run(
        [sys.executable, "-m", "resnest.data.synthetic", str(out), "--classes", str(CLASSES),
         "--train-per-class", str(TRAIN_PER_CLASS), "--val-per-class", str(VAL_PER_CLASS),
         "--image-size", "40"],
        check=True, capture_output=True, timeout=300,
    )
    return out


def run_in(container: str, mounts: dict[Path, str], *argv: str) -> subprocess.CompletedProcess:
    volumes = [f"--volume={host}:{inside}" for host, inside in mounts.items()]
    return buildah("run", *volumes, container, "--", *argv, check=False)


def test_tag_is_the_content_version_and_labels_say_it(image: str, expected_version: str) -> None:
    version = expected_version
    assert image == f"rlaunch-cpu:{version}"
    config = json.loads(buildah("inspect", "--type", "image", image).stdout)["OCIv1"]["config"]
    assert config["Labels"]["org.opencontainers.image.version"] == version
    # The commit the build started from (others may commit to the checkout meanwhile).
    revision = config["Labels"]["org.opencontainers.image.revision"].removesuffix("-dirty")
    assert re.fullmatch(r"[0-9a-f]{40}", revision), revision
    subprocess.run(["git", "-C", str(PROJECT_ROOT), "merge-base", "--is-ancestor", revision,
                    "HEAD"], check=True)
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == [ENTRYPOINT]


def test_final_image_runs_as_non_root_without_an_installer(container: str) -> None:
    done = run_in(container, {}, "sh", "-c",
                  "id -u; python -c 'import mindspore, resnest; print(mindspore.__version__)';"
                  " test -f $RESNEST_DIR/train.py && echo script-ok;"
                  " python -m pip --version 2>/dev/null || echo no-pip;"
                  " command -v python3-config gcc apt-get >/dev/null || true")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1000", "2.10.0", "script-ok", "no-pip"]


def test_entrypoint_rejects_unknown_command_inside_the_image(container: str) -> None:
    done = run_in(container, {}, ENTRYPOINT, "trian")
    assert done.returncode != 0
    assert "unknown command 'trian'" in done.stderr


def test_trains_and_evaluates_inside_the_image(container: str, dataset: Path,
                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # the image's user (uid 1000) writes here through the bind mount
    mounts = {dataset: "/data", out: "/out"}
    train = run_in(container, mounts, ENTRYPOINT, "train", "--data-dir", "/data",
                   "--output-dir", "/out/run", "--set", "epochs=1", "--set", "warmup_epochs=0",
                   *TINY)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    assert (out / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (out / "run" / "metrics" / "rank0.jsonl").is_file()

    evaluate = run_in(container, mounts, ENTRYPOINT, "eval", "--data-dir", "/data",
                      "--checkpoint", "/out/run", "--output-dir", "/out/eval", *TINY)
    assert evaluate.returncode == 0, evaluate.stdout[-3000:] + evaluate.stderr[-3000:]
    total = CLASSES * VAL_PER_CLASS
    for k in (1, 5):
        match = re.search(
            rf"after allreduce eval: top{k}_correct=(\d+), tot=(\d+), "
            rf"acc=(\d+\.\d+)%\(TOP{k}\)", evaluate.stdout)
        assert match, evaluate.stdout[-3000:]
        correct, tot, acc = int(match[1]), int(match[2]), float(match[3])
        assert tot == total and 0 <= correct <= total
        assert acc == pytest.approx(100.0 * correct / total, abs=0.01)
    result = json.loads((out / "eval" / "eval.json").read_text())
    assert result["total"] == total

    export = run_in(container, mounts, ENTRYPOINT, "export", "--checkpoint", "/out/run",
                    "--format", "MINDIR", "--batch-size", "1", "--image-size", "32",
                    "--out", "/out/model.mindir", "--set", "net_name=resnest14d",
                    "--set", "num_classes=3")
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]
    assert (out / "model.mindir").stat().st_size > 1_000_000

    # The cpu image's default serving path: ONNX export (self-checked) and ONNX Runtime.
    export = run_in(container, mounts, ENTRYPOINT, "export", "--checkpoint", "/out/run",
                    "--format", "ONNX", "--image-size", "32", "--out", "/out/model.onnx",
                    "--set", "net_name=resnest14d", "--set", "num_classes=3")
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]
    assert "checked against the checkpoint" in export.stdout
    evaluated = run_in(container, mounts, ENTRYPOINT, "eval", "--data-dir", "/data",
                       "--model", "/out/model.onnx", "--output-dir", "/out/eval-onnx", *TINY)
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    by_onnx = json.loads((out / "eval-onnx" / "eval.json").read_text())
    assert by_onnx["engine"] == "onnxruntime"
    assert [by_onnx[k] for k in ("top1_correct", "top5_correct", "total")] == \
        [result[k] for k in ("top1_correct", "top5_correct", "total")]


def test_serve_entry_point_starts_inside_the_image(container: str) -> None:
    """The cpu image is the inference server's base: its dependencies must be in it."""
    done = run_in(container, {}, ENTRYPOINT, "serve", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m resnest.serve")
