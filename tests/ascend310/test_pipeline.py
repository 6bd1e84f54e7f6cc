"""The Ascend 310 flow end to end, with the device step done by MindSpore's Python runtime:

    resnest.export (MINDIR, fixed batch) -> rl310_preprocess_dump (the C++ preprocessing
    rl310_infer uses) -> the MINDIR run batch by batch, zero-padded like rl310_infer ->
    <image>_0.bin -> resnest.imagenet_labels + resnest.postprocess

must report exactly what `resnest.eval` reports for the same checkpoint and images. Only
rl310_infer's MindSpore C++ calls (Load/Build/Predict on an Ascend 310) are not exercised.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.ascend310.conftest import REPO, Rl310Build

CLASSES = 10
CROP = 64
BATCH = 4
SETTINGS = ["--set", "net_name=resnest14d", "--set", f"num_classes={CLASSES}",
            "--set", f"crop_size={CROP}", "--set", f"test_batch_size={BATCH}",
            "--set", "device_target=CPU", "--set", "num_workers=1"]


def run_module(*args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, check=False,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def save_random_checkpoint(path: Path) -> None:
    """An untrained resnest14d (fixed seed); last_gamma off so every block shapes the logits."""
    import mindspore as ms

    from resnest.models import create_model

    ms.set_seed(7)
    net = create_model("resnest14d", num_classes=CLASSES, final_drop=0.0, last_gamma=False)
    ms.save_checkpoint(net, str(path))


def run_mindir_like_rl310_infer(net, tensor_dir: Path, out_dir: Path) -> int:
    """What rl310_infer does around Model::Predict: fixed batches in sorted file order, the
    short last batch zero-padded, one <stem>_0.bin per real image."""
    import mindspore as ms

    tensors = sorted(tensor_dir.glob("*.bin"))
    out_dir.mkdir(parents=True)
    for first in range(0, len(tensors), BATCH):
        chunk = tensors[first:first + BATCH]
        batch = np.zeros((BATCH, 3, CROP, CROP), np.float32)
        for i, path in enumerate(chunk):
            batch[i] = np.fromfile(path, np.float32).reshape(3, CROP, CROP)
        logits = net(ms.Tensor(batch)).asnumpy()
        assert logits.shape == (BATCH, CLASSES) and logits.dtype == np.float32
        for i, path in enumerate(chunk):
            logits[i].tofile(out_dir / f"{path.stem}_0.bin")
    return len(tensors)


@pytest.mark.integration
def test_310_flow_reports_what_resnest_eval_reports(rl310_build: Rl310Build, tmp_path: Path) -> None:
    data = tmp_path / "data"
    # 80 px images: the 73 px resize is a real down-scale; 10 x 3 = 30 images, 2 short batches.
    run_module("resnest.data.synthetic", str(data), "--classes", str(CLASSES),
               "--train-per-class", "1", "--val-per-class", "3", "--image-size", "80", cwd=REPO)
    ckpt = tmp_path / "random.ckpt"
    save_random_checkpoint(ckpt)

    eval_out = run_module("resnest.eval", "--data-dir", str(data), "--checkpoint", str(ckpt),
                          "--output-dir", str(tmp_path / "eval"), *SETTINGS, cwd=REPO)
    assert "after allreduce eval: top1_correct=" in eval_out
    expected = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert expected["total"] == 30

    mindir = tmp_path / "resnest14d.mindir"
    run_module("resnest.export", "--checkpoint", str(ckpt), "--format", "MINDIR", "--batch-size",
               str(BATCH), "--image-size", str(CROP), "--out", str(mindir), *SETTINGS, cwd=REPO)
    assert mindir.is_file()

    tensors = tmp_path / "tensors"
    proc = subprocess.run([str(rl310_build.preprocess_dump), "--input-dir", str(data / "val"),
                           "--output-dir", str(tensors), "--crop-size", str(CROP)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    import mindspore as ms
    from mindspore import nn

    from resnest.config import TrainConfig
    from resnest.data.pipeline import eval_transforms

    net = nn.GraphCell(ms.load(str(mindir)))
    results = tmp_path / "result_Files"
    assert run_mindir_like_rl310_infer(net, tensors, results) == 30

    # Same logits as the MINDIR gives on the Python transform's tensors (first batch).
    ops = eval_transforms(TrainConfig(crop_size=CROP))
    images = sorted((data / "val").rglob("*.JPEG"))[:BATCH]
    batch = []
    for image in images:
        x = np.fromfile(image, np.uint8)
        for op in ops:
            x = op(x)
        batch.append(x)
    reference = net(ms.Tensor(np.stack(batch))).asnumpy()
    for image, row in zip(images, reference, strict=True):
        np.testing.assert_allclose(np.fromfile(results / f"{image.stem}_0.bin", np.float32), row,
                                   rtol=0, atol=1e-5)

    labels = tmp_path / "imagenet_label.json"
    run_module("resnest.imagenet_labels", str(data / "val"), "-o", str(labels), cwd=REPO)
    acc_json = tmp_path / "acc.json"
    out = run_module("resnest.postprocess", "--result-dir", str(results), "--label-file",
                     str(labels), "--output", str(acc_json), cwd=REPO)
    line = re.search(r"Total data: (\d+), top1 accuracy: ([\d.]+), top5 accuracy: ([\d.]+)", out)
    assert line, out
    got = json.loads(acc_json.read_text())
    print(f"resnest.eval: top1 {expected['top1_correct']}/30, top5 {expected['top5_correct']}/30;"
          f" 310 flow: {line.group(0)}")
    assert int(line.group(1)) == got["total"] == expected["total"]
    assert got["top1_correct"] == expected["top1_correct"]
    assert got["top5_correct"] == expected["top5_correct"]
    assert float(line.group(2)) == pytest.approx(expected["top1"] / 100)
    assert float(line.group(3)) == pytest.approx(expected["top5"] / 100)
    # Not a vacuous match: an untrained net still ranks classes differently per image.
    assert 0 < expected["top5_correct"] < 30
