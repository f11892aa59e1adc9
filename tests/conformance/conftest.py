"""Fixtures of the wire-conformance suite (see wire.py and docs/conformance.md).

The testnet comes from the ``testnet`` fixture of ``harness.pytest_plugin`` (one per test module;
backend chosen with ``--testnet-backend``, default process).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from .wire import TIMEOUT, Account, Wire

# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------

@pytest.fixture
async def wire(testnet: Any) -> Any:
    """A client session on the module's testnet: node directory from the seed, clock synced."""
    connector = aiohttp.TCPConnector(ssl=False, limit=32)
    async with aiohttp.ClientSession(timeout=TIMEOUT, connector=connector) as session:
        w = Wire(session, testnet.seed_url, getattr(testnet.state, "seed_https_url", None))
        await w.refresh_nodes()
        await w.sync_clock()
        yield w


@pytest.fixture
def account() -> Account:
    return Account.new("session")


