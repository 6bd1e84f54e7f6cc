"""Registry, factory and the network's shape contract (fast, small models only)."""

from __future__ import annotations

import numpy as np
import pytest

from resnest.models import MODEL_CONFIGS, create_model, list_models

# Official counts measured with resnest==0.0.5; 14d/26d measured with timm 1.0.31.
TRAINABLE_PARAMETERS = {
    "resnest14d": 10_611_688,
    "resnest26d": 17_069_448,
    "resnest50": 27_483_240,
    "resnest101": 48_275_016,
    "resnest200": 70_201_544,
    "resnest269": 110_929_480,
}


def test_registry_lists_the_family() -> None:
    assert list_models() == list(TRAINABLE_PARAMETERS)
    assert set(MODEL_CONFIGS) == set(TRAINABLE_PARAMETERS)


@pytest.mark.parametrize("name", list(TRAINABLE_PARAMETERS))
def test_trainable_parameter_count_matches_reference(name: str) -> None:
    net = create_model(name)
    assert sum(p.size for p in net.trainable_params()) == TRAINABLE_PARAMETERS[name]


def test_unknown_model_name_is_refused_with_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnest51'.*resnest50"):
        create_model("resnest51")


def test_unknown_override_is_refused_with_allowed_fields() -> None:
    with pytest.raises(ValueError, match=r"unknown model option\(s\) \['dropout'\].*final_drop"):
        create_model("resnest14d", dropout=0.5)


def test_last_gamma_zeroes_each_blocks_last_bn() -> None:
    net = create_model("resnest14d", num_classes=10, last_gamma=True)
    gammas = {p.name: p.asnumpy() for p in net.get_parameters() if p.name.endswith("bn3.gamma")}
    assert len(gammas) == 4
    assert all(not g.any() for g in gammas.values())
    stem_gamma = next(p for p in net.get_parameters() if p.name == "bn1.gamma").asnumpy()
    assert (stem_gamma == 1).all()


@pytest.mark.parametrize("height, width", [(32, 32), (64, 40), (47, 33), (33, 90)])
def test_forward_any_size_gives_logits(pynative_mode, height: int, width: int) -> None:
    ms = pynative_mode
    net = create_model("resnest14d", num_classes=10, final_drop=0.2)
    net.set_train(False)
    images = np.random.default_rng(0).normal(size=(2, 3, height, width)).astype(np.float32)
    logits = net(ms.Tensor(images)).asnumpy()
    assert logits.shape == (2, 10)
    assert np.isfinite(logits).all()
    # Eval mode is deterministic (dropout off).
    np.testing.assert_array_equal(logits, net(ms.Tensor(images)).asnumpy())
