"""The data behind the HTML report's timeline and plots: pure functions of a history (and the
check results), in seconds from the report's origin. :mod:`harness.report.plots` draws them;
unit tests pin them.

Send outcomes (the colours of the timeline's send marks):

- ``delivered``: stored, and the recipient got it;
- ``lost``: stored, the recipient read its messages after the send, and never got it;
- ``acknowledged``: stored (the swarm confirmed it), delivery not checked (no read after it);
- ``indeterminate``: the send failed in a way that may have stored it (timeout, unconfirmed);
- ``failed``: the send failed before anything was stored.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from harness.checks.censorship import misbehaviours
from harness.checks.history import History
from harness.checks.latency import delivery_times
from harness.client.records import SendRecord
from harness.faults.families.registry import DEFAULT_REGISTRY
from harness.report.windows import fault_windows

OUTCOMES = ("acknowledged", "failed", "indeterminate", "delivered", "lost")
#: attempt error kinds after which a message may have been stored all the same
MAYBE_STORED = ("timeout", "unconfirmed")
ROLES = ("guard", "relay", "destination")
#: the timeline lane of a fault with neither nodes nor links
NETWORK_LANE = "network"


def origin(history: History) -> float:
    """The report's time zero: the first operation or fault event (0.0 for an empty history)."""
    times = [r.started_at for r in history.records] + [e.wall for e in history.events]
    return min(times) if times else 0.0


def end_of(history: History, t0: float) -> float:
    """The last moment the history knows of, in seconds from ``t0`` (at least 1 s)."""
    times = [r.ended_at or r.started_at for r in history.records] + [e.wall for e in history.events]
    times += [d["at"] for d in history.deliveries if isinstance(d.get("at"), (int, float))]
    return max([t0 + 1.0, *times]) - t0


@dataclass(frozen=True)
class Band:
    """A fault in force on one lane (a node, a link ``a->b`` or the whole network) from
    ``start`` to ``end`` (None: never removed)."""

    lane: str
    action: str
    start: float
    end: float | None
    applied: bool = True


def fault_bands(history: History, t0: float) -> list[Band]:
    """One band per fault window (the timeline's apply/remove pairs) and lane it touched."""
    out: list[Band] = []
    for w in fault_windows(history.events):
        lanes = list(w.links) or list(w.nodes) or [NETWORK_LANE]
        end = None if w.end is None else w.end - t0
        out += [Band(lane, w.action, w.start - t0, end, w.error is None) for lane in lanes]
    return out


@dataclass(frozen=True)
class EventMark:
    """A churn event (an exclusive fault — kill, stop, pause, decommission, down — applied or
    removed) on a node's lane."""

    lane: str
    action: str
    phase: str
    t: float


def churn_marks(history: History, t0: float) -> list[EventMark]:
    exclusive = {k.action for k in DEFAULT_REGISTRY if k.exclusive}
    return [EventMark(node, e.action, e.phase, e.wall - t0)
            for e in sorted(history.events, key=lambda e: (e.wall, e.seq))
            if e.action in exclusive and e.ok for node in e.nodes]


@dataclass(frozen=True)
class SendPoint:
    """One send: when it started and ended, its outcome and latencies (ms, None: unmeasured)."""

    op_id: str
    t: float
    end: float
    outcome: str
    send_ms: float | None
    delivery_ms: float | None


def _read_times(history: History) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for r in history.receives:
        if r.ok:
            out[r.account or r.recipient or ""].append(r.started_at)
    return out


def send_outcome(s: SendRecord, delivered: bool, read_after: bool) -> str:
    """One of :data:`OUTCOMES` for a send (see the module's docstring)."""
    if not s.ok:
        kinds = {a.error_kind for a in s.attempts if a.method == "store" and not a.ok}
        return "indeterminate" if kinds & set(MAYBE_STORED) else "failed"
    if delivered:
        return "delivered"
    return "lost" if read_after else "acknowledged"


def send_points(history: History, t0: float) -> list[SendPoint]:
    deliver = delivery_times(history)
    reads = _read_times(history)
    out = []
    for s in sorted(history.sends, key=lambda s: s.started_at):
        end = s.ended_at or s.started_at
        read_after = any(t >= end for t in reads.get(s.recipient or "", []))
        outcome = send_outcome(s, s.op_id in deliver, read_after)
        out.append(SendPoint(s.op_id, s.started_at - t0, end - t0, outcome,
                             s.duration_ms if s.ok else None, deliver.get(s.op_id)))
    return out


def latency_series(points: list[SendPoint], which: str) -> list[tuple[float, float]]:
    """(send start, latency ms) of the sends with a ``which`` ("send" or "delivery") latency."""
    values = [(p.t, getattr(p, f"{which}_ms")) for p in points]
    return [(t, v) for t, v in values if v is not None]


def cdf(values: list[float]) -> list[tuple[float, float]]:
    """The empirical CDF: (value, fraction of values <= it), one point per sorted value."""
    v = sorted(values)
    return [(x, (i + 1) / len(v)) for i, x in enumerate(v)]


def cumulative(times: list[float]) -> list[tuple[float, int]]:
    """(time, how many up to then) for each of ``times`` sorted: a step curve's corners."""
    return [(t, i + 1) for i, t in enumerate(sorted(times))]


def sent_and_delivered(points: list[SendPoint]) -> tuple[list[tuple[float, int]],
                                                          list[tuple[float, int]]]:
    """The delivered-versus-sent curves: cumulative sends (by start) and deliveries (by the time
    the recipient got the message)."""
    sent = cumulative([p.t for p in points])
    got = cumulative([p.t + p.delivery_ms / 1000 for p in points if p.delivery_ms is not None])
    return sent, got


def role_counts(history: History) -> dict[str, dict[str, int]]:
    """Node → requests it took part in per role, from every onion attempt's path (first hop:
    guard; others: relay) and destination. Hops not in the node directory are left out."""
    out: dict[str, dict[str, int]] = {}

    def count(hop: dict[str, Any] | None, role: str) -> None:
        name = history.node_name((hop or {}).get("ed25519"))
        if name:
            out.setdefault(name, dict.fromkeys(ROLES, 0))[role] += 1

    for rec in history.records:
        for a in rec.attempts:
            if not a.path:
                continue  # a direct (seed) call has no onion roles
            count(a.path[0], "guard")
            for h in a.path[1:]:
                count(h, "relay")
            count(a.destination, "destination")
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class CensorshipPoint:
    """Sends made while ``censoring`` of ``nodes`` nodes censored, and how many were delivered."""

    censoring: int
    nodes: int
    sends: int
    delivered: int

    @property
    def fraction(self) -> float:
        return self.censoring / self.nodes if self.nodes else 0.0

    @property
    def rate(self) -> float:
        return self.delivered / self.sends if self.sends else 0.0


def censorship_points(history: History, points: list[SendPoint], t0: float
                      ) -> list[CensorshipPoint]:
    """Delivery rate by the fraction of nodes censoring while each send ran (the timeline's
    ``misbehave`` events with drop_stores / drop_relays / corrupt_relays); empty when no node
    censored during the run."""
    bad = misbehaviours(history)
    if not bad:
        return []
    total = len(history.nodes) or len({m.node for m in bad})
    groups: dict[int, list[SendPoint]] = defaultdict(list)
    for p in points:
        active = {m.node for m in bad if m.active(p.t + t0, p.end + t0)}
        groups[len(active)].append(p)
    return [CensorshipPoint(k, total, len(ps), sum(p.outcome == "delivered" for p in ps))
            for k, ps in sorted(groups.items())]


def replay_commands(testnets: list[dict[str, Any]], nodeid: str | None,
                    report_file: str = "report.json") -> list[str]:
    """Shell commands that replay the run: the test itself, or a testnet with the same seed and
    the faults the run applied (``testnet schedule from-report``)."""
    out = [f"python3 -m pytest {shlex.quote(nodeid)}"] if nodeid else []
    for t in testnets:
        name = shlex.quote(str(t.get("name", "replay")))
        # node groups give the node count (swarms follow from it), else swarms × swarm size
        keys = ("seed", "swarm_size") if t.get("nodes") else ("seed", "swarms", "swarm_size")
        opts = " ".join([*(f"--{k.replace('_', '-')} {shlex.quote(str(t[k]))}"
                           for k in keys if t.get(k) is not None),
                         *(f"--nodes {shlex.quote(str(g))}" for g in t.get("nodes") or ())])
        out += [f"testnet up -n {name} {opts}".rstrip(),
                f"testnet schedule from-report {shlex.quote(report_file)} -o schedule.json",
                f"testnet schedule run schedule.json -n {name}"]
    return out


__all__ = ["Band", "CensorshipPoint", "EventMark", "NETWORK_LANE", "OUTCOMES", "ROLES",
           "SendPoint", "cdf", "censorship_points", "churn_marks", "cumulative", "end_of",
           "fault_bands", "latency_series", "origin", "replay_commands", "role_counts",
           "send_outcome", "send_points", "sent_and_delivered"]
