"""Clients under test: the client adapter protocol (docs/client-adapter.md).

- :mod:`~harness.adapter.protocol`: the JSON-lines protocol (requests, answers, validation);
- :mod:`~harness.adapter.process`: an adapter subprocess (time limits, stderr tail, group kill);
- :mod:`~harness.adapter.client`: :class:`AdapterClient`, recording into a scenario's history;
- :mod:`~harness.adapter.serve` and :mod:`~harness.adapter.builtin`: the adapter side, and
  adapter zero (the built-in client), run by ``testnet client-adapter``.

The names below are imported on first use: the adapter side (``testnet client-adapter``, and
every ``testnet`` command that registers it) does not load the harness side (the recorder, the
checkers, the reports).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from harness.adapter.client import AdapterClient
    from harness.adapter.errors import (
        AdapterDied,
        AdapterError,
        AdapterProtocolError,
        AdapterStartError,
        AdapterTimeout,
    )
    from harness.adapter.protocol import PROTOCOL_VERSION, AdapterMessage, ProtocolViolation

_WHERE = {
    "AdapterClient": "harness.adapter.client",
    "AdapterDied": "harness.adapter.errors", "AdapterError": "harness.adapter.errors",
    "AdapterProtocolError": "harness.adapter.errors", "AdapterStartError": "harness.adapter.errors",
    "AdapterTimeout": "harness.adapter.errors",
    "PROTOCOL_VERSION": "harness.adapter.protocol", "AdapterMessage": "harness.adapter.protocol",
    "ProtocolViolation": "harness.adapter.protocol",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'harness.adapter' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["PROTOCOL_VERSION", "AdapterClient", "AdapterDied", "AdapterError", "AdapterMessage",
           "AdapterProtocolError", "AdapterStartError", "AdapterTimeout", "ProtocolViolation"]
