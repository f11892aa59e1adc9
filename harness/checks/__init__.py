"""Checkers over histories, Jepsen style: pure functions, no network.

A :class:`History` holds the client's operation records, what the test sent and got back, the
fault timeline and the nodes' observations; each checker reads it and returns a
:class:`CheckResult` whose verdict is ``OK``, ``FAILED`` or ``UNKNOWN`` (too little data, or the
checker crashed: see :func:`checker`). Recording a history from a running testnet is
:mod:`harness.recording`'s job. See docs/checks.md.
"""

from harness.checks.attachments import attachment_privacy
from harness.checks.censorship import censorship, misbehaviours
from harness.checks.delivery import delivery
from harness.checks.history import History
from harness.checks.latency import latency, percentile
from harness.checks.privacy import privacy
from harness.checks.result import CheckResult, Verdict, checker

__all__ = [
    "CheckResult", "History", "Verdict", "attachment_privacy", "censorship", "checker", "delivery", "latency",
    "misbehaviours", "percentile", "privacy",
]
