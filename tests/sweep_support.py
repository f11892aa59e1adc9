"""The stale sweep (``harness.network.clean``) in tests that run beside others under
pytest-xdist: a sweep removes every stale testnet of the user, so another worker's test may
remove this test's dead testnet first, or be removing it at the moment this one sweeps."""

from __future__ import annotations

import time

from harness.network import clean
from harness.state import StateDir


def sweep_removes(name: str, timeout: float = 60.0) -> list[str]:
    """Run the stale sweep and return what it removed; fails unless testnet ``name`` is gone
    afterwards — removed by this sweep, or by another test's sweep that took it first (then
    waited for, up to ``timeout`` seconds, until its state is gone)."""
    removed = clean()
    if name in removed:
        return removed
    deadline = time.monotonic() + timeout
    while StateDir(name).exists():
        assert time.monotonic() < deadline, (
            f"the stale sweep did not remove {name} (removed: {removed}), and no other sweep did "
            f"within {timeout:g} s")
        time.sleep(0.1)
    return removed
