"""Clients under test: the client adapter protocol (docs/client-adapter.md).

- :mod:`~harness.adapter.protocol`: the JSON-lines protocol (requests, answers, validation);
- :mod:`~harness.adapter.process`: an adapter subprocess (time limits, stderr tail, group kill);
- :mod:`~harness.adapter.client`: :class:`AdapterClient`, recording into a scenario's history;
- :mod:`~harness.adapter.serve` and :mod:`~harness.adapter.builtin`: the adapter side, and
  adapter zero (the built-in client), run by ``testnet client-adapter``.
"""

from harness.adapter.client import AdapterClient
from harness.adapter.errors import (
    AdapterDied,
    AdapterError,
    AdapterProtocolError,
    AdapterStartError,
    AdapterTimeout,
)
from harness.adapter.protocol import PROTOCOL_VERSION, AdapterMessage, ProtocolViolation

__all__ = ["PROTOCOL_VERSION", "AdapterClient", "AdapterDied", "AdapterError", "AdapterMessage",
           "AdapterProtocolError", "AdapterStartError", "AdapterTimeout", "ProtocolViolation"]
