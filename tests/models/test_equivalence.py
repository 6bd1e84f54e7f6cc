"""Proof of equivalence: our network + converter reproduce PyTorch ResNeSt logits.

resnest50 runs live against the official package (resnest==0.0.5, torch 2.13 CPU, in
.venv-ref); resnest14d against timm's architecture through a committed fixture
(make_timm_fixture.sh). Both use seeded synthetic weights with non-trivial BN statistics
(synthetic_weights.py), eval mode, fp32.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from resnest.convert import convert
from tests.models.conftest import REFERENCE_SCRIPT, REPO
from tests.models.synthetic_weights import synthetic_images

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

RELATIVE_TOLERANCE = 1e-4


def assert_same_predictions(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.shape == reference.shape
    scale = float(np.abs(reference).max())
    diff = float(np.abs(ours - reference).max())
    assert diff <= RELATIVE_TOLERANCE * scale, (
        f"max |ours - reference| = {diff:.3g} > {RELATIVE_TOLERANCE} x max|logit| ({scale:.3g})"
    )

    def top5(logits: np.ndarray) -> np.ndarray:
        return np.argsort(-logits, axis=1, kind="stable")[:, :5]

    np.testing.assert_array_equal(top5(ours), top5(reference))


def our_logits(ms, arch: str, checkpoint: Path, images: np.ndarray, num_classes: int):
    from resnest.models import create_model

    net = create_model(arch, num_classes=num_classes)
    not_loaded = ms.load_param_into_net(net, ms.load_checkpoint(str(checkpoint)))
    assert not_loaded == ([], []), f"parameters left unloaded: {not_loaded}"
    net.set_train(False)
    return net, net(ms.Tensor(images)).asnumpy()


def run_checked(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, check=False, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"


def test_resnest50_matches_official_pytorch(reference_python, graph_mode, tmp_path: Path):
    ref_dir = tmp_path / "official"
    # cwd is the temp dir so that the official `resnest` package, not ours, is importable there.
    run_checked(
        [str(reference_python), str(REFERENCE_SCRIPT), "official", "resnest50", str(ref_dir),
         "--seed", "0", "--batch", "2", "--height", "224", "--width", "224"],
        cwd=tmp_path,
    )
    meta = json.loads((ref_dir / "meta.json").read_text())
    assert (meta["package_version"], meta["torch_version"].split("+")[0]) == ("0.0.5", "2.13.0")

    checkpoint = tmp_path / "resnest50.ckpt"
    run_checked(
        [sys.executable, "-m", "resnest.convert", str(ref_dir / "weights.safetensors"),
         str(checkpoint), "--arch", "resnest50"],
        cwd=REPO,
    )
    images = synthetic_images(meta["seed"], meta["input_shape"])
    net, logits = our_logits(graph_mode, "resnest50", checkpoint, images, 1000)
    assert sum(p.size for p in net.trainable_params()) == meta["trainable_parameters"]
    assert_same_predictions(logits, np.load(ref_dir / "logits.npy"))


def test_resnest14d_matches_timm(timm_fixture, timm14d_state, graph_mode, tmp_path: Path):
    source = tmp_path / "resnest14d_timm.safetensors"
    save_file(timm14d_state, str(source))
    checkpoint = tmp_path / "resnest14d.ckpt"
    convert(source, checkpoint, "resnest14d")
    images = synthetic_images(timm_fixture["seed"], timm_fixture["input_shape"])
    net, logits = our_logits(graph_mode, "resnest14d", checkpoint, images, 1000)
    assert sum(p.size for p in net.trainable_params()) == timm_fixture["trainable_parameters"]
    assert_same_predictions(logits, np.asarray(timm_fixture["logits"], dtype=np.float32))
