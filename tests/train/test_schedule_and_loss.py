"""LR schedule values, label-smoothing values and weight-decay grouping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from resnest.config import load_config
from resnest.loss import smoothed_targets
from resnest.lr_schedule import build_lr_schedule


def test_warmup_then_cosine_per_step() -> None:
    config = load_config(None, {"lr": 0.1, "epochs": 10, "T_max": 10, "warmup_epochs": 2,
                                "eta_min": 0.001})
    lr = build_lr_schedule(config, steps_per_epoch=5)
    assert len(lr) == 50
    np.testing.assert_allclose(lr[:10], 0.1 * np.arange(1, 11) / 10, rtol=1e-6)  # linear warmup
    # step 30 of the cosine's 0..49: 0.6 of the way down
    expected = 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * 30 / 49)) / 2
    assert lr[30] == pytest.approx(expected, rel=1e-6)
    assert lr[-1] == pytest.approx(0.001, rel=1e-6)  # the last step runs at eta_min
    assert all(np.diff(lr[10:]) < 0)  # falls every step after warmup


def test_step_schedule_and_world_size_scaling() -> None:
    config = load_config(None, {"lr": 0.1, "epochs": 6, "warmup_epochs": 0,
                                "lr_scheduler": "step", "lr_epochs": "2,4", "lr_gamma": 0.1})
    lr = build_lr_schedule(config, steps_per_epoch=3, world_size=4)
    np.testing.assert_allclose(lr[::3], [0.4, 0.4, 0.04, 0.04, 0.004, 0.004], rtol=1e-5)
    unscaled = load_config(None, {"lr": 0.1, "epochs": 6, "warmup_epochs": 0,
                                  "scale_lr_by_world_size": False})
    assert build_lr_schedule(unscaled, 3, world_size=4)[0] == pytest.approx(0.1)


def test_exponential_schedule() -> None:
    config = load_config(None, {"lr": 1.0, "epochs": 3, "warmup_epochs": 0,
                                "lr_scheduler": "exponential", "lr_gamma": 0.5})
    np.testing.assert_allclose(build_lr_schedule(config, 2), [1, 1, 0.5, 0.5, 0.25, 0.25])


def test_label_smoothing_targets() -> None:
    targets = smoothed_targets(np.array([2, 0]), num_classes=5, smoothing=0.1)
    np.testing.assert_allclose(targets[0], [0.025, 0.025, 0.9, 0.025, 0.025], rtol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)


def test_label_smoothing_cross_entropy_matches_numpy() -> None:
    import mindspore as ms

    from resnest.loss import label_smoothing_cross_entropy

    ms.set_context(mode=ms.GRAPH_MODE)  # PyNative ops fail with this wheel + NumPy 2
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 5)).astype(np.float32)
    labels = np.array([0, 3, 4, 1], dtype=np.int32)
    loss = label_smoothing_cross_entropy(5, 0.1)(ms.Tensor(logits), ms.Tensor(labels))
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -(smoothed_targets(labels, 5, 0.1) * log_softmax).sum(axis=1).mean()
    assert float(loss.asnumpy()) == pytest.approx(float(expected), rel=1e-5)


def test_weight_decay_skips_bn_and_bias_only_when_asked() -> None:
    import mindspore as ms

    from resnest.models import create_model
    from resnest.train import weight_decay_groups

    ms.set_context(mode=ms.GRAPH_MODE)  # PyNative ops fail with this wheel + NumPy 2
    net = create_model("resnest14d", num_classes=3)
    config = load_config(None, {"weight_decay": 0.01, "disable_bn_wd": True})
    decay, no_decay, order = weight_decay_groups(net, config)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    no_decay_names = {p.name for p in no_decay["params"]}
    decay_names = {p.name for p in decay["params"]}
    assert {"conv1.1.gamma", "conv1.1.beta", "fc.bias"} <= no_decay_names
    assert {"conv1.0.weight", "fc.weight"} <= decay_names
    assert all(n.endswith((".gamma", ".beta", ".bias")) for n in no_decay_names)
    assert len(order["order_params"]) == len(decay_names) + len(no_decay_names)
    groups = weight_decay_groups(net, load_config(None, {"disable_bn_wd": False}))
    assert len(groups) == 1 and len(groups[0]["params"]) == len(order["order_params"])


def test_backbone_lr_scale_gives_the_backbone_its_own_rate() -> None:
    import mindspore as ms

    from resnest.models import create_model
    from resnest.train import weight_decay_groups

    ms.set_context(mode=ms.GRAPH_MODE)
    net = create_model("resnest14d", num_classes=3)
    config = load_config(None, {"weight_decay": 0.01, "backbone_lr_scale": 0.1})
    backbone_lr = ms.Tensor(np.full(4, 0.001, np.float32))
    groups = weight_decay_groups(net, config, backbone_lr)
    *param_groups, order = groups
    is_head = [all(p.name.startswith("fc.") for p in g["params"]) for g in param_groups]
    head = [g for g, h in zip(param_groups, is_head, strict=True) if h]
    body = [g for g, h in zip(param_groups, is_head, strict=True) if not h]
    assert {p.name for g in head for p in g["params"]} == {"fc.weight", "fc.bias"}
    assert all("lr" not in g for g in head) and all(g["lr"] is backbone_lr for g in body)
    assert {g["weight_decay"] for g in body} == {0.01, 0.0}
    assert len(order["order_params"]) == len(net.trainable_params())
