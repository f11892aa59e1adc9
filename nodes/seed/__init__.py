"""The seed node: the testnet's network directory (stands in for oxend).

Run with ``python -m nodes.seed``; the pure state machine is :class:`nodes.seed.registry.SeedCore`,
the aiohttp application :class:`nodes.seed.app.SeedServer`.

The proof a node sends (message and signed body) is :mod:`nodes.common.proof`.
"""

from .records import NodeRecord
from .registry import RequestError, SeedConfig, SeedCore

__all__ = ["NodeRecord", "RequestError", "SeedConfig", "SeedCore"]
