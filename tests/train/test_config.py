"""Config: shipped YAML, --set overrides, and one-line errors for unknown keys and bad values."""

from __future__ import annotations

import pytest
import yaml

from resnest.config import (
    ConfigError,
    TrainConfig,
    load_config,
    parse_set_overrides,
    shipped_config_path,
)


def test_shipped_config_has_the_seed_values() -> None:
    config = load_config(shipped_config_path())
    assert config.net_name == "resnest50"
    assert (config.num_classes, config.base_size, config.crop_size) == (1000, 224, 224)
    assert (config.batch_size, config.test_batch_size, config.epochs) == (64, 64, 270)
    assert (config.lr, config.lr_scheduler, config.effective_T_max(), config.warmup_epochs) == (
        0.025, "cosine_annealing", 270, 5)
    assert (config.weight_decay, config.momentum, config.label_smoothing) == (0.0001, 0.9, 0.1)
    assert (config.loss_scale, config.is_dynamic_loss_scale, config.disable_bn_wd) == (1024, False, True)
    assert config.last_gamma is True
    assert config.lr_milestones() == [30, 60, 90, 120, 150, 180, 210, 240, 270]
    assert (config.autoaugment, config.hflip, config.color_jitter) == ("imagenet", True, 0.4)
    assert (config.rrc_scale_min, config.rrc_scale_max, config.eval_resize) == (0.08, 1.0, 0)


def test_every_shipped_key_is_a_config_field() -> None:
    shipped = yaml.safe_load(shipped_config_path().read_text())
    assert set(shipped) <= set(TrainConfig.__dataclass_fields__)


def test_set_overrides_are_typed() -> None:
    config = load_config(shipped_config_path(), parse_set_overrides(
        ["epochs=3", "lr=0.5", "autoaugment=off", "device_target=cpu", "amp_level=o2",
         "lr_epochs=1,2", "net_name=resnest14d"]))
    assert config.epochs == 3 and isinstance(config.epochs, int)
    assert config.lr == 0.5
    assert config.autoaugment == "off"
    assert config.device_target == "CPU" and config.amp_level == "O2"
    assert config.lr_milestones() == [1, 2]
    assert config.net_name == "resnest14d"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["nope=1"], "unknown config key 'nope'"),
        (["lr=fast"], "lr='fast': must be a finite number"),
        (["epochs=2.5"], "epochs='2.5': must be an integer (ASCII digits, no leading zero)"),
        (["epochs=0"], "epochs=0: must be >= 1"),
        (["lr_scheduler=poly"], "allowed values are cosine_annealing, step, exponential"),
        (["device_target=TPU"], "allowed values are auto, CPU, GPU, Ascend"),
        (["autoaugment=maybe"], "allowed values are imagenet, cifar10, svhn, off"),
        (["rrc_scale_min=0"], "need 0 < rrc_scale_min <= rrc_scale_max <= 1"),
        (["rrc_scale_min=0.9", "rrc_scale_max=0.5"], "rrc_scale_min=0.9"),
        (["rrc_scale_max=1.5"], "rrc_scale_max=1.5"),
        (["hflip=sometimes"], "hflip='sometimes': must be a boolean"),
        (["color_jitter=-0.1"], "color_jitter=-0.1: must be >= 0"),
        (["eval_resize=16"], "eval_resize=16: must be 0 (crop_size/0.875) or >= crop_size"),
        (["T_max=-1"], "T_max=-1: must be >= 0"),
        (["backbone_lr_scale=-1"], "backbone_lr_scale=-1.0"),
        (["label_smoothing=1.5"], "label_smoothing=1.5: must be in [0, 1)"),
        (["lr_epochs=30,x"], "lr_epochs='30,x'"),
        (["lr_epochs=60,30"], "ascending"),
        (["crop_size=16"], "crop_size=16"),
        (["novalue"], "expected key=value"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, parse_set_overrides(overrides))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_config_file_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("epochs: 3\nmax_epoch_typo: 4\n")
    with pytest.raises(ConfigError, match="max_epoch_typo"):
        load_config(unknown)


def test_seed_style_integer_booleans_are_accepted(tmp_path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text("is_dynamic_loss_scale: 0\ndisable_bn_wd: 1\nlr_epochs: [10, 20]\n")
    config = load_config(path)
    assert config.is_dynamic_loss_scale is False and config.disable_bn_wd is True
    assert config.lr_milestones() == [10, 20]


@pytest.mark.parametrize(
    ("value", "policy"),
    [("true", "imagenet"), ("false", "off"), ("off", "off"), ("on", "imagenet"),
     ("imagenet", "imagenet"), ("CIFAR10", "cifar10"), ("svhn", "svhn"), (True, "imagenet")],
)
def test_autoaugment_policies_and_the_seeds_booleans(value: object, policy: str) -> None:
    overrides = parse_set_overrides([f"autoaugment={value}"]) if isinstance(value, str) \
        else {"autoaugment": value}
    assert load_config(None, overrides).autoaugment == policy
