"""Export round trip: MINDIR loads back (mindspore.load + nn.GraphCell) and ONNX runs in
onnxruntime, both giving the checkpoint's logits; AIR refuses clearly off Ascend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from resnest.export import main as export_main

pytestmark = pytest.mark.integration

SETTINGS = ["--set", "net_name=resnest14d", "--set", "num_classes=5", "--set", "device_target=CPU"]


@pytest.fixture(scope="module")
def checkpoint_and_logits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    import mindspore as ms

    from resnest.config import load_config
    from resnest.distributed import select_device
    from resnest.network import create_network

    select_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    net = create_network(load_config(None, {"net_name": "resnest14d", "num_classes": 5}))
    rng = np.random.default_rng(0)
    for p in net.get_parameters():  # non-trivial BN statistics, so eval-mode BN matters
        if p.name.endswith("moving_mean"):
            p.set_data(ms.Tensor(rng.normal(0, 0.1, p.shape).astype(np.float32)))
        if p.name.endswith("moving_variance"):
            p.set_data(ms.Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
    path = tmp_path_factory.mktemp("export") / "model.ckpt"
    ms.save_checkpoint(net, str(path))
    net.set_train(False)
    images = rng.normal(size=(2, 3, 64, 64)).astype(np.float32)
    return path, images, net(ms.Tensor(images)).asnumpy()


def test_mindir_round_trip(checkpoint_and_logits, tmp_path: Path, capsys) -> None:
    import mindspore as ms
    from mindspore import nn

    checkpoint, images, expected = checkpoint_and_logits
    rc = export_main(["--checkpoint", str(checkpoint), "--format", "MINDIR", "--batch-size", "2",
                      "--image-size", "64", "--out", str(tmp_path / "resnest14d"), *SETTINGS])
    assert rc == 0
    exported = tmp_path / "resnest14d.mindir"
    assert str(exported) in capsys.readouterr().out
    graph = nn.GraphCell(ms.load(str(exported)))
    logits = graph(ms.Tensor(images)).asnumpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


def test_onnx_round_trip(checkpoint_and_logits, tmp_path: Path) -> None:
    import onnxruntime

    checkpoint, images, expected = checkpoint_and_logits
    out = tmp_path / "resnest14d.onnx"
    assert export_main(["--checkpoint", str(checkpoint), "--format", "onnx", "--batch-size", "2",
                        "--image-size", "64", "--out", str(out), *SETTINGS]) == 0
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: images})[0]
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_air_needs_ascend_and_says_so(checkpoint_and_logits, tmp_path: Path, capsys) -> None:
    checkpoint, _, _ = checkpoint_and_logits
    rc = export_main(["--checkpoint", str(checkpoint), "--format", "AIR", "--out",
                      str(tmp_path / "m"), *SETTINGS])
    err = capsys.readouterr().err
    assert rc == 2 and "AIR needs an Ascend device" in err and "MINDIR or ONNX" in err
    assert not list(tmp_path.iterdir())


def test_bad_format_and_wrong_checkpoint(checkpoint_and_logits, tmp_path: Path, capsys) -> None:
    checkpoint, _, _ = checkpoint_and_logits
    assert export_main(["--checkpoint", str(checkpoint), "--format", "TFLITE", "--out",
                        str(tmp_path / "m")]) == 2
    assert "--format 'TFLITE': allowed values are MINDIR, ONNX, AIR" in capsys.readouterr().err
    wrong_classes = [*SETTINGS[:2], "--set", "num_classes=7", "--set", "device_target=CPU"]
    assert export_main(["--checkpoint", str(checkpoint), "--format", "MINDIR", "--out",
                        str(tmp_path / "m"), *wrong_classes]) == 2
