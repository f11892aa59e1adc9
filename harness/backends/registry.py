"""The runtimes a testnet can run on, by name, and the one default for CLI, plugin and bench.

The default is ``process``: it needs nothing but Python, so ``pip install session-testnet``
followed by ``testnet up`` works on any machine; ``docker`` (containers) is one option away.
``$SESSION_TESTNET_BACKEND`` changes the default everywhere (CLI, pytest plugin, bench).
"""

from __future__ import annotations

import importlib
import os

from harness.backends.base import Backend

#: backend name -> "module:class"; modules are imported when first used (docker needs the SDK)
_REGISTRY: dict[str, str] = {
    "process": "harness.backends.process:ProcessBackend",
    "docker": "harness.backends.docker:DockerBackend",
    "swarm": "harness.backends.swarm:SwarmBackend",
}
BACKENDS: tuple[str, ...] = tuple(_REGISTRY)
DEFAULT_BACKEND = "process"
ENV_BACKEND = "SESSION_TESTNET_BACKEND"


def default_backend() -> str:
    """``$SESSION_TESTNET_BACKEND`` when set, else :data:`DEFAULT_BACKEND`."""
    kind = os.environ.get(ENV_BACKEND) or DEFAULT_BACKEND
    if kind not in _REGISTRY:
        raise ValueError(f"${ENV_BACKEND}={kind!r} is not a backend; choose one of "
                         f"{', '.join(BACKENDS)}")
    return kind


def backend_class(kind: str) -> type[Backend]:
    """The :class:`Backend` subclass registered as ``kind``."""
    try:
        module_name, cls_name = _REGISTRY[kind].split(":")
    except KeyError:
        raise ValueError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}") from None
    cls: type[Backend] = getattr(importlib.import_module(module_name), cls_name)
    return cls


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "ENV_BACKEND", "backend_class", "default_backend"]
