"""The C++ preprocessing (rl310_preprocess_dump) against the project's Python evaluation
transform, resnest.data.pipeline.eval_transforms, on real encoded images."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from resnest.config import TrainConfig
from resnest.data.pipeline import eval_transforms
from tests.ascend310.conftest import Rl310Build

TOLERANCE = 1.0 / 255.0  # per element, after normalisation


def python_eval_tensor(path: Path, ops: list) -> np.ndarray:
    """What resnest.eval feeds the model for this file: the same ops on the encoded bytes."""
    data = np.fromfile(path, dtype=np.uint8)
    for op in ops:
        data = op(data)
    return np.asarray(data)


def run_dump(build: Rl310Build, images: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(build.preprocess_dump), "--input-dir", str(images),
                           "--output-dir", str(out), *extra],
                          check=False, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("crop_size", [32, 64, 224])
def test_cpp_tensor_matches_python_eval_transform(rl310_build: Rl310Build, photo_dir: Path,
                                                  tmp_path: Path, crop_size: int) -> None:
    proc = run_dump(rl310_build, photo_dir, tmp_path, "--crop-size", str(crop_size))
    assert proc.returncode == 0, proc.stderr
    ops = eval_transforms(TrainConfig(crop_size=crop_size))
    images = sorted(p for p in photo_dir.rglob("*") if p.is_file())
    assert len(images) == 11
    worst = 0.0
    for image in images:
        expected = python_eval_tensor(image, ops)
        got = np.fromfile(tmp_path / f"{image.stem}.bin", dtype=np.float32)
        assert expected.shape == (3, crop_size, crop_size)
        assert got.size == expected.size, image.name
        got = got.reshape(expected.shape)
        diff = float(np.abs(got - expected).max())
        worst = max(worst, diff)
        assert diff <= TOLERANCE, f"{image.name}: max |C++ - Python| = {diff}"
        assert got.std() > 0.1  # a real picture, not a constant
    print(f"crop {crop_size}: max |C++ - Python| over {len(images)} images = {worst}")


def test_explicit_resize_size_matches_mindspore_resize(rl310_build: Rl310Build, photo_dir: Path,
                                                       tmp_path: Path) -> None:
    from mindspore.dataset import vision

    proc = run_dump(rl310_build, photo_dir, tmp_path, "--crop-size", "32", "--resize-size", "48")
    assert proc.returncode == 0, proc.stderr
    assert "resize short side to 48" in proc.stdout
    ops = eval_transforms(TrainConfig(crop_size=32))
    ops[1] = vision.Resize(48)
    image = photo_dir / "class_2" / "photo_08.JPEG"
    got = np.fromfile(tmp_path / "photo_08.bin", dtype=np.float32).reshape(3, 32, 32)
    assert float(np.abs(got - python_eval_tensor(image, ops)).max()) <= TOLERANCE


def test_dump_rejects_bad_flags_with_one_clear_line(rl310_build: Rl310Build, tmp_path: Path) -> None:
    proc = run_dump(rl310_build, tmp_path, tmp_path / "o", "--crop-size", "abc")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        "rl310_preprocess_dump: --crop-size=abc is not an integer in [1, 8192]")
    proc = run_dump(rl310_build, tmp_path, tmp_path / "o", "--crop-size", "64",
                    "--resize-size", "50")
    assert proc.returncode == 2
    assert "resize size 50 is smaller than the crop size 64" in proc.stderr
    proc = run_dump(rl310_build, tmp_path, tmp_path / "o", "--colour", "1")
    assert proc.returncode == 2 and "unknown flag --colour" in proc.stderr


def test_dump_reports_missing_and_empty_folders(rl310_build: Rl310Build, tmp_path: Path) -> None:
    proc = run_dump(rl310_build, tmp_path / "absent", tmp_path / "o")
    assert proc.returncode == 1 and f"not a directory: {tmp_path}/absent" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = run_dump(rl310_build, tmp_path / "empty", tmp_path / "o")
    assert proc.returncode == 1 and "no .jpeg/.jpg/.png/.bmp images" in proc.stderr
