"""The configured model and loading weights into it, shared by train, eval and export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnest.config import TrainConfig


def create_network(config: TrainConfig) -> Any:
    """`config.net_name` with the config's classes, dropout and zero-gamma choice."""
    from resnest.models import create_model

    return create_model(config.net_name, num_classes=config.num_classes,
                        final_drop=config.final_drop, last_gamma=config.last_gamma)


def load_network_weights(net: Any, checkpoint: str | Path) -> None:
    """Load model weights from a training checkpoint (optimizer state in it is ignored).

    Fails loudly if any model parameter is absent: a checkpoint of another architecture or class
    count must not silently leave random weights.
    """
    import mindspore as ms

    params = ms.load_checkpoint(str(checkpoint))
    wanted = {p.name for p in net.get_parameters()}
    missing = sorted(wanted - set(params))
    if missing:
        raise ValueError(f"checkpoint {str(checkpoint)!r} lacks {len(missing)} model parameters "
                         f"(e.g. {missing[:3]}); is net_name/num_classes the one it was trained with?")
    shapes = {p.name: tuple(p.shape) for p in net.get_parameters()}
    mismatched = [n for n in sorted(wanted) if tuple(params[n].shape) != shapes[n]]
    if mismatched:
        name = mismatched[0]
        raise ValueError(f"checkpoint {str(checkpoint)!r} has {name} of shape "
                         f"{tuple(params[name].shape)} but the model wants {shapes[name]}; "
                         "is net_name/num_classes the one it was trained with?")
    not_loaded, _ = ms.load_param_into_net(net, {k: v for k, v in params.items() if k in wanted},
                                           strict_load=True)
    if not_loaded:
        raise ValueError(f"could not load {not_loaded[:3]} from {str(checkpoint)!r}")
