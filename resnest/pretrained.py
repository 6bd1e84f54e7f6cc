"""Initialise a network from published or earlier weights before training (fine-tuning).

`pretrained=PATH` is a MindSpore `.ckpt` (ours, e.g. a finished run's `checkpoints/best.ckpt`,
or one `resnest.convert` wrote) or an official / timm PyTorch state dict (`.safetensors`,
`.pth`), converted on the fly with `resnest.convert`'s name mapping and checks.

What may differ from the network: the classifier (`fc.*`), which is left freshly initialised
when its shape differs (another class count), and training state in a checkpoint (optimizer
moments, step counters), which is skipped. Anything else that does not fit (a backbone tensor
missing or mis-shaped: another architecture) is a `PretrainedError`, because a half-loaded
backbone trains on silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnest.convert import shown_names, unfit_summary

CLASSIFIER_PREFIX = "fc."
CHECKPOINT_SUFFIX = ".ckpt"
# Leaves of model tensors; a source tensor with such a leaf that the network lacks is another
# architecture, anything else in a training checkpoint (moments.*, global_step, ...) is state.
MODEL_LEAVES = ("weight", "bias", "gamma", "beta", "moving_mean", "moving_variance")
OPTIMIZER_PREFIXES = ("moments.", "accum.", "stat.")
NAMES_SHOWN = 4


class PretrainedError(ValueError):
    """The pretrained file is missing, unreadable or of another architecture; one line."""


@dataclass
class PretrainedReport:
    """What `load_pretrained` did, for the run log."""

    path: str
    converted: bool
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)

    def log_lines(self) -> list[str]:
        how = "converted from PyTorch names" if self.converted else "MindSpore checkpoint"
        lines = [(f"pretrained {self.path} ({how}): loaded {len(self.loaded)} tensors, "
                 f"skipped {len(self.skipped)}, re-initialised {len(self.reinitialised)}")]
        if self.reinitialised:
            lines.append(f"pretrained: re-initialised (shape differs: new classifier): "
                         f"{', '.join(self.reinitialised)}")
        if self.skipped:
            lines.append("pretrained: skipped (not model weights): "
                         f"{shown_names(self.skipped, NAMES_SHOWN)}")
        return lines


def read_pretrained(path: str | Path, arch: str) -> tuple[dict[str, np.ndarray], bool]:
    """Tensors of `path` under our parameter names, and whether they were converted."""
    from resnest.convert import (
        PTH_SUFFIXES,
        SAFETENSORS_SUFFIX,
        ConversionError,
        expected_parameters,
        infer_num_classes,
        load_torch_state_dict,
        map_state_dict,
    )

    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"pretrained={str(path)!r}: no such file (give a .ckpt, "
                              ".safetensors or .pth reachable where the job runs)")
    suffix = path.suffix.lower()
    if suffix == CHECKPOINT_SUFFIX:
        import mindspore as ms

        try:
            params = ms.load_checkpoint(str(path))
        except (RuntimeError, ValueError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PretrainedError(f"pretrained={str(path)!r}: not a readable MindSpore "
                                  f"checkpoint ({first})") from None
        return {name: p.asnumpy() for name, p in params.items()}, False
    if suffix in (SAFETENSORS_SUFFIX, *PTH_SUFFIXES):
        try:
            source = load_torch_state_dict(path)
            classes = infer_num_classes(source)
            # convert's strict check against the architecture with the *source's* class count:
            # a wrong arch fails here naming its tensors; the head is fitted afterwards.
            return map_state_dict(source, expected_parameters(arch, classes), arch), True
        except ConversionError as exc:
            raise PretrainedError(f"pretrained={str(path)!r}: {exc}") from None
    raise PretrainedError(f"pretrained={str(path)!r}: unsupported suffix {suffix!r}; allowed: "
                          f"{', '.join((CHECKPOINT_SUFFIX, SAFETENSORS_SUFFIX, *PTH_SUFFIXES))}")


def fit_to_network(source: dict[str, np.ndarray], wanted: dict[str, tuple[int, ...]],
                   arch: str, path: str, converted: bool) -> tuple[dict[str, np.ndarray], PretrainedReport]:
    """Pick the tensors to load into a network with parameter shapes `wanted`; no MindSpore."""
    report = PretrainedReport(path, converted)
    chosen: dict[str, np.ndarray] = {}
    missing: list[str] = []
    misshaped: list[str] = []
    for name, shape in wanted.items():
        array = source.get(name)
        fits = array is not None and tuple(np.shape(array)) == tuple(shape)
        if fits:
            chosen[name] = array
            report.loaded.append(name)
        elif name.startswith(CLASSIFIER_PREFIX):
            report.reinitialised.append(name)
        elif array is None:
            missing.append(name)
        else:
            misshaped.append(f"{name} {list(np.shape(array))} (model: {list(shape)})")
    foreign = [n for n in source if n not in wanted and not n.startswith(OPTIMIZER_PREFIXES)
               and n.rsplit(".", 1)[-1] in MODEL_LEAVES]
    problems = unfit_summary([("missing", missing), ("mis-shaped", misshaped),
                              (f"not in {arch}", foreign)], NAMES_SHOWN)
    if problems:
        raise PretrainedError(f"pretrained={path!r} does not fit net_name={arch}: {problems}")
    report.skipped = sorted(n for n in source if n not in wanted)
    return chosen, report


def load_pretrained(net: Any, path: str | Path, arch: str) -> PretrainedReport:
    """Load `path` into `net` (see the module docstring for what may differ)."""
    import mindspore as ms

    source, converted = read_pretrained(path, arch)
    wanted = {p.name: tuple(p.shape) for p in net.get_parameters()}
    chosen, report = fit_to_network(source, wanted, arch, str(path), converted)
    dtypes = {p.name: p.dtype for p in net.get_parameters()}
    params = {name: ms.Parameter(ms.Tensor(np.ascontiguousarray(array), dtypes[name]), name=name)
              for name, array in chosen.items()}
    not_loaded, _ = ms.load_param_into_net(net, params, strict_load=True)
    unexpected = [n for n in not_loaded if n not in report.reinitialised]
    if unexpected:
        raise PretrainedError(f"pretrained={str(path)!r}: could not load "
                              f"{shown_names(unexpected, NAMES_SHOWN)}")
    return report


def freeze_backbone(net: Any) -> list[str]:
    """Train only the classifier: backbone weights get no gradient, its BN keeps its statistics.

    BatchNorm layers of a frozen backbone normalise with their loaded running statistics
    (as in eval) instead of re-estimating them from the new data's batches.
    """
    from mindspore import nn

    frozen = []
    for param in net.trainable_params():
        if not param.name.startswith(CLASSIFIER_PREFIX):
            param.requires_grad = False
            frozen.append(param.name)
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            cell.use_batch_statistics = False
    return frozen
