"""Backend registry: name -> "module:Class", imported only when a backend is used.

Importing a backend module must stay cheap (no kubernetes/mindspore at module level) because
`rlaunch submit --help` lists the names from this map without importing anything.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from launcher.backends.base import Backend

BACKENDS: dict[str, str] = {
    "local": "launcher.backends.local:LocalBackend",
    "slurm": "launcher.backends.slurm:SlurmBackend",
    "k8s": "launcher.backends.k8s:KubernetesBackend",
}


class UnknownBackendError(LookupError):
    """The name is not in BACKENDS."""


def get_backend(name: str) -> Backend:
    """Import and instantiate the backend called `name`."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise UnknownBackendError(
            f"backend {name!r} is not one of {', '.join(BACKENDS)}"
        ) from None
    module_name, _, attr = target.partition(":")
    try:
        backend_cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise UnknownBackendError(f"backend {name!r} cannot be loaded: {err}") from err
    return backend_cls()
