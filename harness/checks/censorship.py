"""Censorship resistance: messages got through although some nodes misbehaved, and the client's
records show it routed around them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.checks.delivery import delivery
from harness.checks.history import History
from harness.checks.result import CheckResult, Verdict, checker

#: behaviour -> the role in which it censors ("relay": on an onion path; "destination")
CENSORING = {"drop_relays": "relay", "corrupt_relays": "relay", "drop_stores": "destination"}


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
        if ev.action != "misbehave" or not ev.ok:
            continue
        names = tuple(sorted(k for k, v in ev.params.items() if k in CENSORING and v))
        if not names:
            continue
        for node in ev.nodes:
            key = (node, names)
            if ev.phase == "apply":
                m = Misbehaviour(node, list(names), start=ev.wall,
                                 roles={CENSORING[b] for b in names})
                open_[key] = m
                out.append(m)
            elif key in open_:
                open_.pop(key).end = ev.wall
    for node, beh in (behaviours or {}).items():
        names = tuple(sorted(k for k, v in beh.items() if k in CENSORING and v))
        if names:
            out.append(Misbehaviour(node, list(names), roles={CENSORING[b] for b in names}))
    return out


@checker("censorship")
def censorship(history: History, behaviours: dict[str, dict[str, Any]] | None = None) -> CheckResult:
    """Every send made while a node censored (``drop_stores``, ``drop_relays``,
    ``corrupt_relays``) succeeded and was delivered, no successful store went through a
    censoring node in the role it censors in, and ``evidence["avoided"]`` says, per censoring
    node, how often the client ran into it and how many routes it took around it.

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
    for s in history.sends:
        t1 = s.ended_at or s.started_at
        active = [m for m in bad if m.active(s.started_at, t1)]
        if not active:
            continue
        during += 1
        if not s.ok:
            violations.append(f"send {s.op_id} failed while {', '.join(m.node for m in active)} "
                              f"censored: {s.error_type}: {s.error}")
            bad_ops.append(s.op_id)
            continue
        if s.op_id in unchecked_ops:
            unchecked.append(f"send {s.op_id} ({s.message_hash}) during censoring: its delivery "
                             "is unchecked (the recipient did not read after it)")
        if s.op_id in lost:
            violations.append(f"send {s.op_id} ({s.message_hash}) was stored but not delivered "
                              f"while {', '.join(m.node for m in active)} censored")
            bad_ops.append(s.op_id)
        stores = [a for a in s.attempts if a.method == "store"]
        for a in stores:
            relays = {history.node_name(h.get("ed25519")) for h in a.path}
            dest = history.node_name((a.destination or {}).get("ed25519"))
            for m in active:
                hit = ("relay" in m.roles and m.node in relays) or ("destination" in m.roles
                                                                     and m.node == dest)
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
    delivered = during - len(set(bad_ops)) - len(unchecked)
    if verdict is Verdict.FAILED:
        summary = f"{len(violations)} problems with censoring nodes {names}"
    else:
        summary = f"{delivered}/{during} messages sent while censoring got through despite {names}"
        if during == 0:
            summary += "; unknown: no send overlapped a censoring period"
        elif unchecked:
            summary += f"; unknown: {len(unchecked)} unchecked"
    return CheckResult("censorship", verdict, summary, details, {
        "censoring": [{"node": m.node, "behaviours": m.behaviours, "start": m.start, "end": m.end}
                      for m in bad],
        "avoided": avoided, "sends_during": during, "violations": violations,
        "missing": missing,
        "op_ids": list(dict.fromkeys(bad_ops)),
    })


__all__ = ["CENSORING", "Misbehaviour", "censorship", "misbehaviours"]
