"""Export round trip: MINDIR loads back (mindspore.load + nn.GraphCell) and ONNX runs in
onnxruntime at any batch size with BN folded, both giving the checkpoint's logits; an export that
fails its own check leaves nothing behind; AIR refuses clearly off Ascend."""

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


def test_onnx_has_a_dynamic_batch_and_folded_batch_norm(checkpoint_and_logits, tmp_path: Path,
                                                        capsys) -> None:
    import onnx
    import onnxruntime

    from resnest.export import relative_error

    checkpoint, images, expected = checkpoint_and_logits
    out = tmp_path / "resnest14d.onnx"
    assert export_main(["--checkpoint", str(checkpoint), "--format", "onnx", "--batch-size", "2",
                        "--image-size", "64", "--out", str(out), *SETTINGS]) == 0
    assert "[batch,3,64,64]" in capsys.readouterr().out
    model = onnx.load(str(out))
    assert not [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    assert relative_error(session.run(None, {name: images})[0], expected) <= 1e-5
    for rows in (1, 5):  # neither the traced batch (3) nor the checked one
        batch = np.concatenate([images] * 3)[:rows]
        want = np.concatenate([expected] * 3)[:rows]
        assert relative_error(session.run(None, {name: batch})[0], want) <= 1e-5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnest14d.onnx"]


def test_export_that_fails_its_check_leaves_nothing(checkpoint_and_logits, tmp_path: Path,
                                                    monkeypatch, capsys) -> None:
    import resnest.export

    checkpoint, _, _ = checkpoint_and_logits
    monkeypatch.setattr(resnest.export, "CHECK_RTOL", -1.0)  # no model can pass this bound
    rc = export_main(["--checkpoint", str(checkpoint), "--format", "ONNX", "--image-size", "64",
                      "--out", str(tmp_path / "m.onnx"), *SETTINGS])
    err = capsys.readouterr().err
    assert rc == 1 and "export check failed, nothing written" in err and "relative" in err
    assert list(tmp_path.iterdir()) == []


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
