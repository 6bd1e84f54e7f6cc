"""Weight conversion: name mapping, refusals with clear messages, and the written checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from resnest import convert as conv
from resnest.convert import ConversionError, map_state_dict


@pytest.fixture(scope="module")
def expected14d() -> dict[str, tuple[int, ...]]:
    return conv.expected_parameters("resnest14d", 1000)


def test_every_timm_tensor_maps_and_only_the_counter_is_dropped(timm14d_state, expected14d):
    mapped = map_state_dict(timm14d_state, expected14d, "resnest14d")
    assert list(mapped) == list(expected14d)
    counters = [k for k in timm14d_state if k.endswith("num_batches_tracked")]
    assert len(mapped) == len(timm14d_state) - len(counters)
    bn = "layer2.0.conv2.bn1"
    np.testing.assert_array_equal(mapped[f"{bn}.gamma"], timm14d_state[f"{bn}.weight"])
    np.testing.assert_array_equal(mapped[f"{bn}.beta"], timm14d_state[f"{bn}.bias"])
    np.testing.assert_array_equal(mapped[f"{bn}.moving_mean"], timm14d_state[f"{bn}.running_mean"])
    np.testing.assert_array_equal(
        mapped[f"{bn}.moving_variance"], timm14d_state[f"{bn}.running_var"]
    )
    # Conv biases keep their name (they are not BN betas).
    fc1 = "layer2.0.conv2.fc1.bias"
    np.testing.assert_array_equal(mapped[fc1], timm14d_state[fc1])


def test_missing_tensor_is_refused(timm14d_state, expected14d):
    del timm14d_state["layer3.0.conv2.fc2.bias"]
    del timm14d_state["bn1.running_var"]
    with pytest.raises(ConversionError) as err:
        map_state_dict(timm14d_state, expected14d, "resnest14d")
    assert str(err.value) == (
        "weights do not fit resnest14d: 2 missing: bn1.moving_variance, layer3.0.conv2.fc2.bias"
    )


def test_extra_tensor_is_refused(timm14d_state, expected14d):
    timm14d_state["layer1.0.se.fc.weight"] = np.zeros((4, 4), np.float32)
    with pytest.raises(ConversionError, match=r"1 unexpected: layer1\.0\.se\.fc\.weight$"):
        map_state_dict(timm14d_state, expected14d, "resnest14d")


def test_misshaped_tensor_is_refused_and_not_reported_missing(timm14d_state, expected14d):
    timm14d_state["layer1.0.conv1.weight"] = np.zeros((64, 64, 3, 3), np.float32)
    with pytest.raises(ConversionError) as err:
        map_state_dict(timm14d_state, expected14d, "resnest14d")
    assert str(err.value) == (
        "weights do not fit resnest14d: 1 mis-shaped: "
        "layer1.0.conv1.weight [64, 64, 3, 3] (expected [64, 64, 1, 1])"
    )


def test_duplicate_tensor_for_one_parameter_is_refused(timm14d_state, expected14d):
    timm14d_state["bn1.gamma"] = timm14d_state["bn1.weight"]
    with pytest.raises(ConversionError, match=r"1 unexpected: bn1\.(gamma|weight)$"):
        map_state_dict(timm14d_state, expected14d, "resnest14d")


def test_long_lists_are_truncated(timm14d_state, expected14d):
    for name in [k for k in timm14d_state if k.startswith("layer4.")]:
        del timm14d_state[name]
    with pytest.raises(ConversionError, match=r"\d+ missing: layer4\.[^;]* \(and \d+ more\)$"):
        map_state_dict(timm14d_state, expected14d, "resnest14d")


def test_wrong_arch_is_refused(timm14d_state):
    expected26d = conv.expected_parameters("resnest26d", 1000)
    with pytest.raises(ConversionError, match=r"do not fit resnest26d: \d+ missing: layer1\.1\."):
        map_state_dict(timm14d_state, expected26d, "resnest26d")


def test_cli_writes_a_checkpoint_that_loads_strictly(tmp_path: Path, timm14d_state, capsys):
    import mindspore

    src = tmp_path / "timm14d.safetensors"
    save_file(timm14d_state, str(src))
    dst = tmp_path / "out" / "resnest14d.ckpt"
    assert conv.main([str(src), str(dst), "--arch", "resnest14d"]) == 0
    assert "wrote 129 tensors for resnest14d" in capsys.readouterr().out

    from resnest.models import create_model

    net = create_model("resnest14d", num_classes=1000)
    not_loaded = mindspore.load_param_into_net(net, mindspore.load_checkpoint(str(dst)))
    assert not_loaded == ([], [])
    gamma = next(p for p in net.get_parameters() if p.name == "layer4.0.bn3.gamma").asnumpy()
    np.testing.assert_array_equal(gamma, timm14d_state["layer4.0.bn3.weight"])


def test_cli_num_classes_must_match_the_source(tmp_path: Path, timm14d_state, capsys):
    src = tmp_path / "w.safetensors"
    save_file(timm14d_state, str(src))
    assert conv.main([str(src), str(tmp_path / "w.ckpt"), "--arch", "resnest14d",
                      "--num-classes", "10"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("convert: error: weights do not fit resnest14d: 2 mis-shaped: ")
    assert "fc.weight [1000, 2048] (expected [10, 2048])" in err
    assert not (tmp_path / "w.ckpt").exists()


def test_cli_rejects_unknown_arch(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        conv.main([str(tmp_path / "a.safetensors"), str(tmp_path / "a.ckpt"),
                   "--arch", "resnest51"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'resnest51'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "src_name, dst_name, message",
    [
        ("absent.safetensors", "a.ckpt", "source weights '{src}' do not exist"),
        ("weights.npz", "a.ckpt", "unsupported weights file suffix '.npz'"),
        ("weights.safetensors", "a.bin", "destination '{dst}' must end with .ckpt"),
        ("garbage.safetensors", "a.ckpt", "cannot read '{src}' as safetensors"),
    ],
)
def test_cli_bad_paths_fail_with_one_clear_line(tmp_path, capsys, src_name, dst_name, message):
    src, dst = tmp_path / src_name, tmp_path / dst_name
    if src_name != "absent.safetensors":
        src.write_bytes(b"not a weights file")
    assert conv.main([str(src), str(dst), "--arch", "resnest14d"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message.format(src=src, dst=dst) in err


def test_pth_without_torch_says_how_to_proceed(tmp_path: Path, monkeypatch):
    src = tmp_path / "resnest50.pth"
    src.write_bytes(b"\x80\x02}q\x00.")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(ConversionError, match=r"needs PyTorch, which is not installed.*safetensors"):
        conv.load_torch_state_dict(src)


def test_training_checkpoints_and_dataparallel_prefixes_are_unwrapped():
    weight = object()
    assert conv.unwrap_state_dict({"epoch": 3, "state_dict": {"module.fc.weight": weight}}) == {
        "fc.weight": weight
    }
    assert conv.unwrap_state_dict({"model": {"fc.weight": weight}}) == {"fc.weight": weight}
    with pytest.raises(ConversionError, match="expected a state dict"):
        conv.unwrap_state_dict([weight])


def test_num_classes_is_inferred_from_fc(timm14d_state):
    assert conv.infer_num_classes(timm14d_state) == 1000
    del timm14d_state["fc.weight"]
    with pytest.raises(ConversionError, match="pass --num-classes"):
        conv.infer_num_classes(timm14d_state)
