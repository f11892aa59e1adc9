"""Delivery: every successfully sent message reached its recipient exactly once, intact."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from harness.checks.history import History
from harness.checks.result import CheckResult, Verdict, checker
from harness.client.records import SendRecord


def short(session_id: str | None) -> str:
    return f"…{session_id[-8:]}" if session_id else "?"


def route(history: History, rec: SendRecord) -> str:
    """``guard → relay → relay ⇒ destination`` of the operation's last store attempt."""
    stores = [a for a in rec.attempts if a.method == "store"]
    if not stores:
        return "no store attempt"
    a = stores[-1]
    hops = " → ".join(history.label(h) for h in a.path) or "direct"
    return f"{hops} ⇒ {history.label(a.destination)}"


def _entry(history: History, rec: SendRecord, **extra: Any) -> dict[str, Any]:
    intent = history.sent.get(rec.op_id, {})
    return {"op_id": rec.op_id, "hash": rec.message_hash, "from": rec.account, "to": rec.recipient,
            "body": intent.get("body"), "attempts": len(rec.attempts),
            "store_attempts": sum(a.method == "store" for a in rec.attempts),
            "route": route(history, rec), **extra}


def _read_times(history: History) -> dict[str, list[float]]:
    """Account → start times of its successful receive operations."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in history.receives:
        if r.ok:
            out[r.account or r.recipient or ""].append(r.started_at)
    return out


@checker("delivery")
def delivery(history: History) -> CheckResult:
    """Every ``ok`` send was received by its recipient exactly once, with the body the test sent
    (when known) and the sender's Session ID.

    Receipts are counted from the recipient's receive records (``new_hashes``: the client
    already de-duplicates across polls and nodes, so a hash there twice is a duplicate the
    application saw) and from the captured deliveries (bodies and senders).

    A message that was never received counts as lost only when its recipient read its messages
    successfully after the send ended; otherwise it is *unchecked*. Verdict: ``FAILED`` when a
    message was lost, duplicated or corrupted; else ``UNKNOWN`` when nothing was sent
    successfully or a message is unchecked; else ``OK``."""
    sends = history.sends
    ok_sends = [s for s in sends if s.ok and s.message_hash]
    failed = [s for s in sends if not s.ok]
    reads = _read_times(history)

    counted: dict[str, Counter[str]] = defaultdict(Counter)   # account -> hash -> n
    undecryptable: dict[tuple[str, str], str] = {}
    for r in history.receives:
        acct = r.account or r.recipient or ""
        counted[acct].update(r.new_hashes)
        for u in r.undecryptable:
            undecryptable[(acct, u.get("hash", ""))] = u.get("error", "")
    captured: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for d in history.deliveries:
        captured[(d.get("account", ""), d.get("hash", ""))].append(d)

    lost: list[dict[str, Any]] = []
    dup: list[dict[str, Any]] = []
    corrupt: list[dict[str, Any]] = []
    unchecked: list[dict[str, Any]] = []
    details: list[str] = []
    for s in ok_sends:
        to = s.recipient or ""
        h = s.message_hash or ""
        got = captured.get((to, h), [])
        n = counted[to][h] if counted.get(to) else len(got)
        n = max(n, len(got))
        if (to, h) in undecryptable:
            e = _entry(history, s, error=undecryptable[(to, h)])
            corrupt.append(e)
            details.append(f"corrupted: message {h} {short(s.account)}→{short(to)} did not decrypt: "
                           f"{e['error']} (send {s.op_id}, {e['route']})")
            continue
        if n == 0 and not any(t >= (s.ended_at or s.started_at) for t in reads.get(to, [])):
            e = _entry(history, s)
            unchecked.append(e)
            details.append(f"unchecked: message {h} {short(s.account)}→{short(to)} (send "
                           f"{s.op_id}): the recipient did not read its messages after the send")
            continue
        if n == 0:
            e = _entry(history, s)
            lost.append(e)
            body = f" {e['body']!r}" if e["body"] is not None else ""
            details.append(f"lost: message{body} {h} {short(s.account)}→{short(to)} never received "
                           f"(send {s.op_id}: {e['attempts']} attempts, stored via {e['route']})")
            continue
        if n > 1:
            e = _entry(history, s, times=n)
            dup.append(e)
            details.append(f"duplicated: message {h} received {n} times by {short(to)} "
                           f"(send {s.op_id})")
        want_body = history.sent.get(s.op_id, {}).get("body")
        for d in got:
            problems = []
            if want_body is not None and d.get("body") != want_body:
                problems.append(f"body {d.get('body')!r} != sent {want_body!r}")
            if d.get("sender") != s.account:
                problems.append(f"sender {short(d.get('sender'))} != {short(s.account)}")
            if problems:
                corrupt.append(_entry(history, s, problems=problems, node=d.get("node")))
                details.append(f"corrupted: message {h} (send {s.op_id}) as received from "
                               f"{d.get('node', '?')}: {'; '.join(problems)}")
                break

    for s in failed:
        details.append(f"note: send {s.op_id} {short(s.account)}→{short(s.recipient)} failed "
                       f"({s.error_type}: {s.error}); not counted as lost")

    sent_hashes = {(s.recipient, s.message_hash) for s in ok_sends}
    senders = {s.account for s in sends}
    unexpected = [d for d in history.deliveries
                  if (d.get("account"), d.get("hash")) not in sent_hashes and d.get("sender") in senders]
    for d in unexpected:
        details.append(f"unexpected: {short(d.get('account'))} received {d.get('hash')} from "
                       f"{short(d.get('sender'))}, which no ok send record produced")

    bad = lost + dup + corrupt
    delivered = (len(ok_sends) - len(lost) - len(unchecked)
                 - len({e["op_id"] for e in corrupt if "error" in e}))
    if bad:
        verdict = Verdict.FAILED
    elif not ok_sends or unchecked:
        verdict = Verdict.UNKNOWN
    else:
        verdict = Verdict.OK
    summary = (f"{delivered}/{len(ok_sends)} sent messages delivered"
               + (f"; {len(lost)} lost" if lost else "")
               + (f"; {len(dup)} duplicated" if dup else "")
               + (f"; {len(corrupt)} corrupted" if corrupt else "")
               + (f"; {len(unchecked)} unchecked" if unchecked else "")
               + (f"; {len(failed)} sends failed" if failed else ""))
    if not ok_sends:
        summary += ": no message was sent successfully, nothing to check"
        details.insert(0, "unknown: no send succeeded, so there is no delivery to check")
    return CheckResult("delivery", verdict, summary, details, {
        "sent": len(ok_sends), "delivered": delivered, "lost": lost, "duplicated": dup,
        "corrupted": corrupt, "unchecked": unchecked, "failed_sends": [s.op_id for s in failed],
        "unexpected": unexpected,
        "op_ids": sorted({e["op_id"] for e in bad}),
        "hashes": sorted({e["hash"] for e in bad if e.get("hash")}),
    })


__all__ = ["delivery", "route"]
