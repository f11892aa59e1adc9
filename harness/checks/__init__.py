"""Checkers over histories (pure: no network), Jepsen style.

A :class:`History` holds the client's operation records, what the test sent and got back, the
fault timeline and the nodes' observations; each checker reads it and returns a
:class:`CheckResult`. :func:`collect_observations` is the one function that talks to a testnet.
See docs/checks.md.
"""

from harness.checks.censorship import censorship, misbehaviours
from harness.checks.delivery import delivery
from harness.checks.history import (
    History,
    clear_observations,
    collect_observations,
    local_address_towards,
    node_directory,
)
from harness.checks.latency import latency, percentile
from harness.checks.privacy import privacy
from harness.checks.recorder import HistoryRecorder, RecordedClient
from harness.checks.result import CheckResult

__all__ = [
    "CheckResult", "History", "HistoryRecorder", "RecordedClient", "censorship", "clear_observations", "collect_observations",
    "delivery", "latency", "local_address_towards", "misbehaviours", "node_directory",
    "percentile", "privacy",
]
