"""Typed training/eval/export configuration: the seed's keys, YAML files and `--set key=value`.

Defaults live in `TrainConfig`; a YAML file and then `--set` overrides replace them. Unknown keys
and bad values raise `ConfigError` with one line naming the key, the value and what is allowed.
No mindspore import here: the CLI and the launcher read configs without paying for it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from resnest.contract import (
    INTEGER_WORDS,
    NUMBER_WORDS,
    UnreadableFile,
    integer_from_text,
    number_from_text,
    read_bounded,
)

LR_SCHEDULERS = ("cosine_annealing", "step", "exponential")
DEVICE_TARGETS = ("auto", "CPU", "GPU", "Ascend")
AMP_LEVELS = ("auto", "O0", "O2", "O3")
AUTOAUGMENT_POLICIES = ("imagenet", "cifar10", "svhn", "off")
# The seed's step milestones (30, 60, ..., 270 of 270 epochs): every ninth of the run.
SEED_EPOCHS = 270
SEED_LR_EPOCHS = (30, 60, 90, 120, 150, 180, 210, 240, 270)
# mindspore.set_seed and numpy's RandomState both take 0 <= seed < 2**32.
SEED_RANGE = (0, 2**32 - 1)


class ConfigError(ValueError):
    """A bad config key or value; the message is one line meant for the user."""


@dataclass
class TrainConfig:
    """Every knob of a run. Names follow the seed's config.py so its users find them."""

    # model
    net_name: str = "resnest50"
    num_classes: int = 1000
    last_gamma: bool = True
    final_drop: float = 0.0
    # data
    base_size: int = 224
    crop_size: int = 224
    batch_size: int = 64
    test_batch_size: int = 64
    num_workers: int = 8
    cpu_threads: int = 0  # CPU compute threads per process; 0 = the process's CPUs / world size
    autoaugment: Literal["imagenet", "cifar10", "svhn", "off"] = "imagenet"  # true = imagenet
    color_jitter: float = 0.4
    rrc_scale_min: float = 0.08  # random-resized-crop area range, as a fraction of the image
    rrc_scale_max: float = 1.0
    hflip: bool = True
    eval_resize: int = 0  # eval: short side resized to this, then centre crop; 0 = crop_size/0.875
    # fine-tuning
    pretrained: str = ""  # .ckpt, or official/timm .safetensors/.pth (converted on the fly)
    freeze_backbone: bool = False  # train only the classifier (fc)
    backbone_lr_scale: float = 1.0  # the backbone's lr is lr * this; the classifier's is lr
    # optimisation
    epochs: int = 270
    lr: float = 0.025
    scale_lr_by_world_size: bool = True
    lr_scheduler: Literal["cosine_annealing", "step", "exponential"] = "cosine_annealing"
    lr_epochs: str = ""  # "" = the seed's 30,60,...,270 scaled to `epochs`
    lr_gamma: float = 0.1
    eta_min: float = 0.0
    T_max: int = 0  # cosine length in epochs; 0 = `epochs`
    warmup_epochs: int = 5
    weight_decay: float = 0.0001
    momentum: float = 0.9
    label_smoothing: float = 0.1
    disable_bn_wd: bool = True
    # precision
    device_target: Literal["auto", "CPU", "GPU", "Ascend"] = "auto"
    amp_level: Literal["auto", "O0", "O2", "O3"] = "auto"
    loss_scale: float = 1024.0
    is_dynamic_loss_scale: bool = False
    # checkpoints, logging, evaluation
    ckpt_every_steps: int = 0
    ckpt_keep: int = 3
    log_every_steps: int = 10
    eval_every_epochs: int = 0
    seed: int = 1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check ranges and cross-field rules the types alone cannot express."""
        positive = ("num_classes", "base_size", "crop_size", "batch_size", "test_batch_size",
                    "num_workers", "epochs", "ckpt_keep", "log_every_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be >= 1")
        non_negative = ("cpu_threads", "warmup_epochs", "weight_decay", "eta_min", "ckpt_every_steps",
                        "eval_every_epochs", "lr_gamma", "color_jitter", "T_max", "eval_resize")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be >= 0")
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr!r}: must be > 0")
        if self.crop_size < 32:
            raise ConfigError(f"crop_size={self.crop_size!r}: must be >= 32 (the model's minimum)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={self.label_smoothing!r}: must be in [0, 1)")
        if not 0.0 <= self.final_drop < 1.0:
            raise ConfigError(f"final_drop={self.final_drop!r}: must be in [0, 1)")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum={self.momentum!r}: must be in [0, 1)")
        if self.loss_scale < 1:
            raise ConfigError(f"loss_scale={self.loss_scale!r}: must be >= 1")
        if not 0.0 < self.rrc_scale_min <= self.rrc_scale_max <= 1.0:
            raise ConfigError(f"rrc_scale_min={self.rrc_scale_min!r}, rrc_scale_max="
                              f"{self.rrc_scale_max!r}: need 0 < rrc_scale_min <= rrc_scale_max <= 1")
        if self.eval_resize and self.eval_resize < self.crop_size:
            raise ConfigError(f"eval_resize={self.eval_resize!r}: must be 0 (crop_size/0.875) or "
                              f">= crop_size ({self.crop_size})")
        if not 0.0 <= self.backbone_lr_scale <= 1e3:
            raise ConfigError(f"backbone_lr_scale={self.backbone_lr_scale!r}: must be in [0, 1000]")
        if not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]:
            raise ConfigError(f"seed={self.seed!r}: must be {SEED_RANGE[0]}-{SEED_RANGE[1]} "
                              "(what mindspore.set_seed accepts)")
        from resnest.models.registry import MODEL_CONFIGS

        if self.net_name not in MODEL_CONFIGS:
            raise ConfigError(f"net_name={self.net_name!r}: allowed values are "
                              f"{', '.join(MODEL_CONFIGS)}")
        self.lr_milestones()  # raises on a malformed list

    def effective_T_max(self) -> int:
        """Cosine length in epochs: `T_max` when set, else the run's `epochs`."""
        return self.T_max or self.epochs

    def schedule_warnings(self) -> list[str]:
        """One line per explicit schedule setting that does not fit `epochs`."""
        warnings = []
        if self.lr_scheduler == "cosine_annealing" and self.T_max > self.epochs:
            warnings.append(f"warning: T_max={self.T_max} is beyond epochs={self.epochs}: the cosine "
                            "stops part-way and the lr never reaches eta_min (unset T_max to follow "
                            "epochs)")
        if self.lr_scheduler == "step" and self.lr_epochs.strip():
            late = [m for m in self.lr_milestones() if m >= self.epochs]
            if late:
                warnings.append(f"warning: lr_epochs milestones {','.join(map(str, late))} are at or "
                                f"past epochs={self.epochs} and never apply (unset lr_epochs to "
                                "follow epochs)")
        if self.warmup_epochs >= self.epochs:
            warnings.append(f"warning: warmup_epochs={self.warmup_epochs} covers the whole run "
                            f"(epochs={self.epochs}): the lr only rises")
        return warnings

    def lr_milestones(self) -> list[int]:
        """`lr_epochs` ("30,60,90") as ascending epoch numbers; unset: the seed's, scaled to epochs."""
        if not str(self.lr_epochs).strip():
            scaled = (round(m * self.epochs / SEED_EPOCHS) for m in SEED_LR_EPOCHS)
            return sorted({m for m in scaled if m > 0})
        try:
            milestones = [int(x) for x in str(self.lr_epochs).split(",") if x.strip()]
        except ValueError:
            raise ConfigError(
                f"lr_epochs={self.lr_epochs!r}: must be comma-separated epoch numbers, e.g. '30,60'"
            ) from None
        if milestones != sorted(milestones) or any(m < 0 for m in milestones):
            raise ConfigError(f"lr_epochs={self.lr_epochs!r}: epochs must be ascending and >= 0")
        return milestones

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig)}


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce_value(key: str, value: Any) -> Any:
    """Convert a YAML or `--set` value to the field's type, or raise ConfigError."""
    types_by_key = _field_types()
    if key not in types_by_key:
        raise ConfigError(f"unknown config key {key!r}; allowed keys: {', '.join(sorted(types_by_key))}")
    kind = types_by_key[key]
    if key == "autoaugment" and (isinstance(value, bool) or str(value).lower() in _TRUE | _FALSE):
        # the seed's `autoaugment: true` (and YAML's off -> False) keep working
        truthy = value if isinstance(value, bool) else str(value).lower() in _TRUE
        return "imagenet" if truthy else "off"
    if get_origin(kind) is Literal:
        allowed = get_args(kind)
        text = str(value)
        # accept case-insensitive device/amp names ("cpu" -> "CPU", "o2" -> "O2")
        matches = [a for a in allowed if a.lower() == text.lower()]
        if not matches:
            raise ConfigError(f"{key}={value!r}: allowed values are {', '.join(allowed)}")
        return matches[0]
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):  # the seed writes is_dynamic_loss_scale: 0
            return bool(value)
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{key}={value!r}: must be a boolean (true/false, on/off, 1/0)")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: must be {INTEGER_WORDS}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and integer_from_text(value) is not None:
            return int(value)
        raise ConfigError(f"{key}={value!r}: must be {INTEGER_WORDS}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) or isinstance(value, str) and number_from_text(value) is not None:
            number = float(value)
        else:
            raise ConfigError(f"{key}={value!r}: must be {NUMBER_WORDS}")
        if not math.isfinite(number):
            raise ConfigError(f"{key}={value!r}: must be {NUMBER_WORDS}")
        return number
    if kind is str:
        if isinstance(value, (list, tuple)):  # lr_epochs: [30, 60] in YAML
            return ",".join(str(v) for v in value)
        return str(value)
    if isinstance(kind, types.UnionType):  # not used today; keep the error explicit
        raise ConfigError(f"{key}: unsupported field type {kind}")
    return value


def parse_set_overrides(items: list[str] | None) -> dict[str, Any]:
    """`["lr=0.1", "epochs=3"]` -> {"lr": "0.1", "epochs": "3"}: the text as typed, which
    `coerce_value` reads as the key's declared type (never re-typed by YAML: 010 is no 8)."""
    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key or key != key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        overrides[key] = raw
    return overrides


MAX_YAML_DEPTH = 20


class _PlainYamlLoader(yaml.SafeLoader):
    """yaml.SafeLoader without aliases (a few lines of `&a [*a, *a]` expand to gigabytes) and
    with a nesting limit: what we read is a flat mapping of settings."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed", self.peek_event().start_mark)
        self.depth += 1
        if self.depth > MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_plain_yaml(text: str) -> Any:
    """YAML text as data, refusing aliases and deep nesting (yaml.YAMLError otherwise)."""
    return yaml.load(text, Loader=_PlainYamlLoader)


def yaml_error_line(what: str, err: yaml.YAMLError) -> str:
    """One line for a YAML error: where, and what."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{what} is not valid YAML{where}: {problem}"


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML file at `path`, then `overrides`; validated."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            loaded = load_plain_yaml(read_bounded(path, "config file").decode("utf-8")) or {}
        except UnreadableFile as err:
            raise ConfigError(str(err)) from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {str(path)!r} is not UTF-8 text") from None
        except yaml.YAMLError as err:
            raise ConfigError(yaml_error_line(f"config file {str(path)!r}", err)) from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of key: value")
        values.update(loaded)
    values.update(overrides or {})
    coerced = {str(k): coerce_value(str(k), v) for k, v in values.items()}
    return TrainConfig(**coerced)


def shipped_config_path(name: str = "resnest50-imagenet") -> Path:
    """Path of a config shipped in resnest/configs/."""
    return Path(__file__).resolve().parent / "configs" / f"{name}.yaml"


def add_config_arguments(parser: Any) -> None:
    """The `--config F` and repeated `--set k=v` options every entry point shares."""
    parser.add_argument("--config", default=None, help="YAML config (seed keys); defaults apply otherwise")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config key (repeatable), e.g. --set epochs=3 --set net_name=resnest14d",
    )


def integer_argument(text: str) -> int:
    """argparse type of the entry points' integer flags, in the words `--set` uses."""
    import argparse

    value = integer_from_text(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not {INTEGER_WORDS}")
    return value


def config_from_args(args: Any) -> TrainConfig:
    return load_config(args.config, parse_set_overrides(args.overrides))
