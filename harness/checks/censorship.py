"""Censorship resistance: messages got through although some nodes misbehaved (or were blocked
from the client), and the client's records show it routed around them.

Censoring nodes come from the timeline: ``misbehave`` events with a censoring behaviour, and
``block_clients`` events (a firewall between the client and those nodes: they censor in the
role of guard, the only hop a client connects to). The check's evidence keeps the delivery rate
against the fraction of nodes censoring while each send ran (``evidence["curve"]``: the points
of the report's "delivery rate versus censoring nodes" plot)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.checks.delivery import delivery
from harness.checks.history import History
from harness.checks.result import CheckResult, Verdict, checker

#: behaviour -> the role in which it censors ("relay": on an onion path; "destination")
CENSORING = {"drop_relays": "relay", "corrupt_relays": "relay", "drop_stores": "destination"}
#: fault actions (not misbehave) whose nodes censor, with the behaviour name and role they get:
#: a node blocked from clients cannot be a client's guard
BLOCKING = {"block_clients": ("client_blocked", "guard")}


@dataclass
class Misbehaviour:
    node: str
    behaviours: list[str]
    start: float = -math.inf
    end: float = math.inf
    roles: set[str] = field(default_factory=set)

    def active(self, t0: float, t1: float) -> bool:
        return t0 <= self.end and t1 >= self.start


def misbehaviours(history: History,
                  behaviours: dict[str, dict[str, Any]] | None = None) -> list[Misbehaviour]:
    """Censoring behaviours in force, from the timeline's ``misbehave`` events (apply → the
    matching remove) and from ``behaviours`` ({node: {"drop_stores": True, …}}, for nodes set up
    outside :class:`harness.faults.Faults`; in force for the whole history)."""
    out: list[Misbehaviour] = []
    open_: dict[tuple[str, tuple[str, ...]], Misbehaviour] = {}
    for ev in sorted(history.events, key=lambda e: (e.wall, e.seq)):
        if ev.action in BLOCKING and ev.ok:
            names: tuple[str, ...] = (BLOCKING[ev.action][0],)
            roles = {BLOCKING[ev.action][1]}
        elif ev.action == "misbehave" and ev.ok:
            names = tuple(sorted(k for k, v in ev.params.items() if k in CENSORING and v))
            roles = {CENSORING[b] for b in names}
        else:
            continue
        if not names:
            continue
        for node in ev.nodes:
            key = (node, names)
            if ev.phase == "apply":
                m = Misbehaviour(node, list(names), start=ev.wall, roles=roles)
                open_[key] = m
                out.append(m)
            elif key in open_:
                open_.pop(key).end = ev.wall
    for node, beh in (behaviours or {}).items():
        names = tuple(sorted(k for k, v in beh.items() if k in CENSORING and v))
        if names:
            out.append(Misbehaviour(node, list(names), roles={CENSORING[b] for b in names}))
    return out


def delivery_curve(history: History, bad: list[Misbehaviour] | None = None
                   ) -> list[dict[str, Any]]:
    """Delivery rate by the fraction of nodes censoring while each message was sent: one point
    per number of censoring nodes seen, ``{"censoring", "nodes", "censoring_fraction",
    "messages", "sends", "delivered", "delivery_rate"}`` (sorted by fraction).

    A message is what an application sends: one body to one recipient (``history.sent``), with
    every send of it (an app resends what failed); it counts at the most censoring nodes any of
    its sends met, and as delivered when its recipient got one of its sends' hashes. Empty
    without sends."""
    bad = misbehaviours(history) if bad is None else bad
    total = len(history.nodes) or len({m.node for m in bad}) or 1
    got = {(d.get("account"), d.get("hash")) for d in history.deliveries}
    got |= {(r.account or r.recipient, h) for r in history.receives for h in r.new_hashes}
    messages: dict[Any, list[tuple[int, bool]]] = {}
    for s in history.sends:
        t1 = s.ended_at or s.started_at
        k = len({m.node for m in bad if m.active(s.started_at, t1)})
        messages.setdefault(message_key(history, s), []).append(
            (k, bool(s.ok) and (s.recipient, s.message_hash) in got))
    groups: dict[int, list[tuple[int, bool]]] = {}
    for sends in messages.values():
        groups.setdefault(max(k for k, _ in sends), []).append(
            (len(sends), any(ok for _, ok in sends)))
    return [{"censoring": k, "nodes": total, "censoring_fraction": round(k / total, 4),
             "messages": len(v), "sends": sum(n for n, _ in v),
             "delivered": sum(ok for _, ok in v),
             "delivery_rate": round(sum(ok for _, ok in v) / len(v), 4)}
            for k, v in sorted(groups.items())]


def message_key(history: History, send: Any) -> Any:
    """What identifies an application's message across its resends: (recipient, body) when the
    history knows the body, else the send itself."""
    body = history.sent.get(send.op_id, {}).get("body")
    return (send.recipient, body) if body is not None else send.op_id


@checker("censorship")
def censorship(history: History, behaviours: dict[str, dict[str, Any]] | None = None) -> CheckResult:
    """Every message sent while a node censored (``drop_stores``, ``drop_relays``,
    ``corrupt_relays``, or blocked from clients by ``block_clients``) was delivered, no
    successful store went through a censoring node in the role it censors in, and
    ``evidence["avoided"]`` says, per censoring node, how often the client ran into it and how
    many routes it took around it; ``evidence["curve"]`` is :func:`delivery_curve`.

    A failed send is a violation unless the application sent the same body to the same
    recipient again and that send succeeded (a messenger's send job resends: the message got
    through; ``evidence["resent"]`` lists such sends).

    Verdict: ``FAILED`` on any violation; else ``UNKNOWN`` when no node censored, no send
    overlapped a censoring period, or a message sent then is unchecked (its recipient did not
    read after it, see :func:`delivery`); else ``OK``."""
    bad = misbehaviours(history, behaviours)
    if not bad:
        return CheckResult("censorship", Verdict.UNKNOWN,
                           "no censoring node in the timeline or behaviours: nothing to check",
                           ["use Faults.misbehave(…, drop_stores=True / drop_relays=True) with the "
                            "history's timeline, or pass behaviours={node: {...}}"], {})
    deliv = delivery(history)
    if deliv.evidence.get("error"):
        raise RuntimeError(f"the delivery check it relies on crashed: {deliv.evidence['error']}")
    lost = {e["op_id"] for e in deliv.evidence["lost"] + deliv.evidence["corrupted"]}
    unchecked_ops = {e["op_id"] for e in deliv.evidence["unchecked"]}
    unchecked: list[str] = []
    violations: list[str] = []
    bad_ops: list[str] = []
    avoided: dict[str, dict[str, Any]] = {
        m.node: {"behaviours": m.behaviours, "roles": sorted(m.roles), "failed_attempts": 0,
                 "errors": [], "successful_routes_through": 0, "routes_around": 0}
        for m in bad}
    during = 0
    stored = {message_key(history, s) for s in history.sends
              if s.ok and s.op_id not in lost and message_key(history, s) != s.op_id}
    resent: list[str] = []
    for s in history.sends:
        t1 = s.ended_at or s.started_at
        active = [m for m in bad if m.active(s.started_at, t1)]
        if not active:
            continue
        during += 1
        if not s.ok and message_key(history, s) in stored:
            resent.append(f"send {s.op_id} failed while {', '.join(m.node for m in active)} "
                          f"censored ({s.error_type}) and the message was sent again")
        elif not s.ok:
            violations.append(f"send {s.op_id} failed while {', '.join(m.node for m in active)} "
                              f"censored: {s.error_type}: {s.error}")
            bad_ops.append(s.op_id)
            continue
        if s.ok and s.op_id in unchecked_ops:
            unchecked.append(f"send {s.op_id} ({s.message_hash}) during censoring: its delivery "
                             "is unchecked (the recipient did not read after it)")
        if s.ok and s.op_id in lost:
            violations.append(f"send {s.op_id} ({s.message_hash}) was stored but not delivered "
                              f"while {', '.join(m.node for m in active)} censored")
            bad_ops.append(s.op_id)
        stores = [a for a in s.attempts if a.method == "store"]
        for a in stores:
            relays = {history.node_name(h.get("ed25519")) for h in a.path}
            guard = history.node_name(a.path[0].get("ed25519")) if a.path else None
            dest = history.node_name((a.destination or {}).get("ed25519"))
            for m in active:
                hit = (("relay" in m.roles and m.node in relays)
                       or ("destination" in m.roles and m.node == dest)
                       or ("guard" in m.roles and m.node == guard))
                if not hit:
                    if a.ok:
                        avoided[m.node]["routes_around"] += 1
                    continue
                if a.ok:
                    avoided[m.node]["successful_routes_through"] += 1
                    violations.append(f"send {s.op_id} attempt {a.n} succeeded through censoring "
                                      f"node {m.node} ({', '.join(m.behaviours)}): the "
                                      "misbehaviour was not effective or not detected")
                    bad_ops.append(s.op_id)
                else:
                    avoided[m.node]["failed_attempts"] += 1
                    avoided[m.node]["errors"].append(
                        f"{s.op_id}#{a.n}: {a.error_kind} {a.status or a.http_status}")
    missing = list(unchecked)
    if during == 0:
        missing.append("no send overlapped a censoring period: nothing was tested")
    names = ", ".join(f"{m.node} ({'+'.join(m.behaviours)})" for m in bad)
    details = list(violations) + [f"unknown: {m}" for m in missing]
    for node, info in avoided.items():
        details.append(f"{node} ({', '.join(info['behaviours'])}): client ran into it "
                       f"{info['failed_attempts']} times and took {info['routes_around']} "
                       f"successful routes around it")
    verdict = Verdict.FAILED if violations else Verdict.UNKNOWN if missing else Verdict.OK
    delivered = during - len(set(bad_ops)) - len(unchecked) - len(resent)
    if verdict is Verdict.FAILED:
        summary = f"{len(violations)} problems with censoring nodes {names}"
    else:
        summary = (f"{delivered}/{during - len(resent)} messages sent while censoring got "
                   f"through despite {names}")
        if resent:
            summary += f" ({len(resent)} failed sends were sent again)"
        if during == 0:
            summary += "; unknown: no send overlapped a censoring period"
        elif unchecked:
            summary += f"; unknown: {len(unchecked)} unchecked"
    return CheckResult("censorship", verdict, summary, details, {
        "censoring": [{"node": m.node, "behaviours": m.behaviours, "start": m.start, "end": m.end}
                      for m in bad],
        "avoided": avoided, "sends_during": during, "violations": violations,
        "curve": delivery_curve(history, bad), "resent": resent,
        "missing": missing,
        "op_ids": list(dict.fromkeys(bad_ops)),
    })


__all__ = ["BLOCKING", "CENSORING", "Misbehaviour", "censorship", "delivery_curve",
           "misbehaviours"]
