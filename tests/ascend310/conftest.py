"""Fixtures for the Ascend 310 area: one CMake build of ascend310_infer/ per session, and real
JPEG files of assorted sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
INFER_DIR = REPO / "ascend310_infer"


@dataclass(frozen=True)
class Rl310Build:
    build_dir: Path
    stdout: str

    @property
    def preprocess_dump(self) -> Path:
        return self.build_dir / "rl310_preprocess_dump"


@pytest.fixture(scope="session")
def rl310_build(tmp_path_factory: pytest.TempPathFactory) -> Rl310Build:
    """ascend310_infer/build.sh into a fresh folder: what CI builds (needs cmake, g++, OpenCV)."""
    build_dir = tmp_path_factory.mktemp("rl310_build")
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("MS_PATH", None)
    proc = subprocess.run(["bash", str(INFER_DIR / "build.sh"), str(build_dir)], env=env,
                          check=False, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"build.sh failed:\n{proc.stdout}\n{proc.stderr}"
    return Rl310Build(build_dir, proc.stdout)


def write_photo(path: Path, height: int, width: int, seed: int, mode: str = "RGB") -> Path:
    """A JPEG/PNG with smooth structure, edges and noise: resize and decode both matter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.stack([
        128 + 100 * np.sin(xx / (3 + seed % 5) + seed),
        128 + 100 * np.cos(yy / 4.0),
        (xx * 3 + yy * 2) % 256,
    ], axis=-1) + rng.normal(0, 25, (height, width, 3))
    pixels[height // 3: height // 2, width // 4: width // 2] = 255  # a hard edge
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if mode == "L":
        image = image.convert("L")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=90) if path.suffix.lower() in (".jpeg", ".jpg") else image.save(path)
    return path


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real encoded images: landscape, portrait, square, tiny, large (down-scaled), grey, PNG."""
    root = tmp_path_factory.mktemp("photos")
    shapes = [(48, 64), (64, 48), (37, 53), (41, 41), (33, 100), (120, 90), (300, 200),
              (375, 500), (512, 512)]
    for i, (h, w) in enumerate(shapes):
        write_photo(root / f"class_{i % 3}" / f"photo_{i:02d}.JPEG", h, w, seed=i)
    write_photo(root / "class_0" / "grey_00.JPEG", 70, 90, seed=20, mode="L")
    write_photo(root / "class_1" / "lossless_00.png", 80, 60, seed=21)
    return root
