"""What real storage servers told the seed over OxenMQ: their pings and their peer reports.

A real server pings its oxend every 30 s (``admin.storage_server_ping``) and reports the result of
every reachability test it runs against a peer (``admin.report_peer_status``): the seed keeps
both, per node, for ``GET /internal/v1/oxend`` (and the harness's ``status``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    last_passed: bool | None = None
    last_at: float | None = None

    def add(self, passed: bool, now: float) -> None:
        if passed:
            self.passed += 1
        else:
            self.failed += 1
        self.last_passed, self.last_at = passed, now

    def to_json(self, now: float) -> dict[str, Any]:
        return {"passed": self.passed, "failed": self.failed, "last_passed": self.last_passed,
                "last_age": None if self.last_at is None else round(now - self.last_at, 3)}


@dataclass
class NodeObservations:
    """One real node's OxenMQ traffic with the seed."""

    commands: Counter[str] = field(default_factory=Counter)
    last_contact: float | None = None
    pings: int = 0
    first_ping: float | None = None
    last_ping: float | None = None
    last_ping_body: dict[str, Any] | None = None
    held: int = 0  # first node-list requests held back (too few nodes listed)
    reports_sent: dict[str, Tally] = field(default_factory=dict)  # subject pubkey -> tally


class Observations:
    """Per node name; the subject of a peer report is a pubkey (possibly one of our Python nodes)."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeObservations] = {}

    def node(self, name: str) -> NodeObservations:
        return self.nodes.setdefault(name, NodeObservations())

    def command(self, name: str, command: str, now: float) -> None:
        obs = self.node(name)
        obs.commands[command] += 1
        obs.last_contact = now

    def ping(self, name: str, body: dict[str, Any], now: float) -> None:
        obs = self.node(name)
        obs.pings += 1
        obs.first_ping = obs.first_ping if obs.first_ping is not None else now
        obs.last_ping, obs.last_ping_body = now, body

    def peer_report(self, name: str, subject: str, passed: bool, now: float) -> None:
        self.node(name).reports_sent.setdefault(subject, Tally()).add(passed, now)

    def reports_about(self, subject: str) -> Tally:
        """All reports about ``subject`` (summed over reporters)."""
        total = Tally()
        for obs in self.nodes.values():
            t = obs.reports_sent.get(subject)
            if t is not None:
                total.passed += t.passed
                total.failed += t.failed
                if t.last_at is not None and (total.last_at is None or t.last_at > total.last_at):
                    total.last_at, total.last_passed = t.last_at, t.last_passed
        return total

    def node_json(self, name: str, now: float) -> dict[str, Any]:
        obs = self.node(name)
        sent = Tally()
        for t in obs.reports_sent.values():
            sent.passed += t.passed
            sent.failed += t.failed
        return {
            "commands": dict(sorted(obs.commands.items())),
            "last_contact_age": None if obs.last_contact is None else round(now - obs.last_contact, 3),
            "first_list_held": obs.held,
            "pings": {"count": obs.pings,
                      "last_age": None if obs.last_ping is None else round(now - obs.last_ping, 3),
                      "last": obs.last_ping_body},
            "peer_reports_sent": {"passed": sent.passed, "failed": sent.failed,
                                  "by_subject": {pk: t.to_json(now) for pk, t in sorted(obs.reports_sent.items())}},
        }
