"""Names for testnets that never clash: across tests, pytest-xdist workers and processes."""

from __future__ import annotations

import itertools
import os
import secrets

_counter = itertools.count(1)


def unique_name(prefix: str = "t") -> str:
    """``<prefix><xdist worker><n>-<random>``: unique within this process (counter), across
    xdist workers (worker id) and across processes (random suffix). Valid as a testnet name."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return f"{prefix}{worker}{next(_counter)}-{secrets.token_hex(2)}"


__all__ = ["unique_name"]
