"""Fine-tuning initialisation: what loads, what is skipped or re-initialised, what is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from resnest.pretrained import PretrainedError, fit_to_network, freeze_backbone, load_pretrained
from tests.train.conftest import REPO_ROOT, run_env

WANTED = {"conv1.0.weight": (32, 3, 3, 3), "bn1.gamma": (64,), "fc.weight": (5, 2048),
          "fc.bias": (5,)}


def _arrays(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    return {n: np.ones(s, np.float32) for n, s in shapes.items()}


def test_same_classes_loads_everything_and_skips_training_state() -> None:
    source = {**_arrays(WANTED), "moments.fc.weight": np.zeros((5, 2048), np.float32),
              "global_step": np.zeros(1, np.int32), "learning_rate": np.zeros(1, np.float32)}
    chosen, report = fit_to_network(source, WANTED, "resnest14d", "a.ckpt", False)
    assert set(chosen) == set(WANTED) and report.reinitialised == []
    assert report.skipped == ["global_step", "learning_rate", "moments.fc.weight"]
    assert report.log_lines()[0].startswith("pretrained a.ckpt (MindSpore checkpoint): loaded 4 "
                                            "tensors, skipped 3, re-initialised 0")


def test_other_class_count_reinitialises_only_the_classifier() -> None:
    source = _arrays({**WANTED, "fc.weight": (1000, 2048), "fc.bias": (1000,)})
    chosen, report = fit_to_network(source, WANTED, "resnest14d", "w.safetensors", True)
    assert set(chosen) == {"conv1.0.weight", "bn1.gamma"}
    assert report.reinitialised == ["fc.weight", "fc.bias"]
    assert "re-initialised (shape differs: new classifier): fc.weight, fc.bias" in \
        "\n".join(report.log_lines())


@pytest.mark.parametrize(
    ("source_shapes", "message"),
    [({"conv1.0.weight": (32, 3, 3, 3), "fc.weight": (5, 2048)}, "1 missing: bn1.gamma"),
     ({**WANTED, "bn1.gamma": (128,)}, "mis-shaped: bn1.gamma [128] (model: [64])"),
     ({**WANTED, "layer1.1.conv1.weight": (64, 256, 1, 1)}, "not in resnest14d: layer1.1.conv1")],
)
def test_backbone_that_does_not_fit_is_refused(source_shapes, message: str) -> None:
    with pytest.raises(PretrainedError) as info:
        fit_to_network(_arrays(source_shapes), WANTED, "resnest14d", "x.ckpt", False)
    assert message in str(info.value) and "net_name=resnest14d" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.fixture
def graph_mode():
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE)  # PyNative ops fail with this wheel + NumPy 2
    return ms


def test_converted_timm_weights_fine_tune_with_a_new_head(tmp_path: Path, graph_mode,
                                                         timm14d_state) -> None:
    from resnest.models import create_model

    src = tmp_path / "timm14d.safetensors"
    save_file(timm14d_state, str(src))  # 1000 classes, timm names (recorded from timm)
    net = create_model("resnest14d", num_classes=5)
    fresh_fc = net.fc.weight.asnumpy().copy()
    report = load_pretrained(net, src, "resnest14d")
    assert report.converted and report.reinitialised == ["fc.weight", "fc.bias"]
    params = {p.name: p.asnumpy() for p in net.get_parameters()}
    np.testing.assert_array_equal(params["layer2.0.conv2.bn1.moving_mean"],
                                  timm14d_state["layer2.0.conv2.bn1.running_mean"])
    np.testing.assert_array_equal(params["conv1.0.weight"], timm14d_state["conv1.0.weight"])
    np.testing.assert_array_equal(params["fc.weight"], fresh_fc)
    assert len(report.loaded) == len(params) - 2


def test_mindspore_checkpoint_same_classes_and_wrong_arch(tmp_path: Path, graph_mode) -> None:
    import mindspore as ms

    from resnest.models import create_model

    trained = create_model("resnest26d", num_classes=5)
    ckpt = tmp_path / "r26.ckpt"
    ms.save_checkpoint(trained, str(ckpt))
    same = create_model("resnest26d", num_classes=5)
    report = load_pretrained(same, ckpt, "resnest26d")
    assert report.reinitialised == [] and report.skipped == []
    np.testing.assert_array_equal(same.layer1[1].conv1.weight.asnumpy(),
                                  trained.layer1[1].conv1.weight.asnumpy())
    with pytest.raises(PretrainedError, match=r"does not fit net_name=resnest14d: .*not in"):
        load_pretrained(create_model("resnest14d", num_classes=5), ckpt, "resnest14d")
    with pytest.raises(PretrainedError, match="no such file"):
        load_pretrained(same, tmp_path / "absent.ckpt", "resnest26d")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedError, match="not a readable MindSpore checkpoint"):
        load_pretrained(same, garbage, "resnest26d")
    with pytest.raises(PretrainedError, match="unsupported suffix '.npz'"):
        load_pretrained(same, garbage.rename(tmp_path / "w.npz"), "resnest26d")


def test_freeze_backbone_leaves_only_the_classifier_trainable(graph_mode) -> None:
    from resnest.models import create_model

    net = create_model("resnest14d", num_classes=5)
    frozen = freeze_backbone(net)
    assert {p.name for p in net.trainable_params()} == {"fc.weight", "fc.bias"}
    assert "conv1.0.weight" in frozen and not any(n.startswith("fc.") for n in frozen)
    assert net.bn1.use_batch_statistics is False


def test_missing_pretrained_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "resnest" / "train.py"), "--data-dir", str(tmp_path),
         "--output-dir", str(tmp_path / "out"), "--set", f"pretrained={tmp_path}/none.ckpt"],
        capture_output=True, text=True, env=run_env(), timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: pretrained='{tmp_path}/none.ckpt': no such file "
                                   "(give a .ckpt, .safetensors or .pth reachable where the job runs)")
    assert not (tmp_path / "out").exists()
