"""Latency: send and delivery latency percentiles against thresholds, and per node."""

from __future__ import annotations

import math
from typing import Any

from harness.checks.history import History
from harness.checks.result import CheckResult, Verdict, checker


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, math.ceil(q / 100 * len(v)) - 1))
    return v[k]


def stats(values: list[float]) -> dict[str, Any]:
    return {"count": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "max": max(values) if values else None}


def _fmt(s: dict[str, Any]) -> str:
    if not s["count"]:
        return "no samples"
    return f"p50 {s['p50']:.0f} ms, p95 {s['p95']:.0f} ms, max {s['max']:.0f} ms (n={s['count']})"


def delivery_times(history: History) -> dict[str, float]:
    """Send op_id → ms from the start of the send to the end of the first receive that returned
    the message to its recipient."""
    first: dict[tuple[str, str], float] = {}
    for r in history.receives:
        if r.ended_at is None:
            continue
        acct = r.account or r.recipient or ""
        for h in r.new_hashes:
            key = (acct, h)
            first[key] = min(first.get(key, r.ended_at), r.ended_at)
    out = {}
    for s in history.sends:
        at = first.get((s.recipient or "", s.message_hash or ""))
        if s.ok and at is not None:
            out[s.op_id] = (at - s.started_at) * 1000.0
    return out


@checker("latency")
def latency(history: History, *, send_p95_ms: float | None = None,
            send_max_ms: float | None = None, delivery_p95_ms: float | None = None,
            delivery_max_ms: float | None = None) -> CheckResult:
    """p50/p95/max of send latency (the whole ``send`` operation), of the successful store
    request itself (``store_ms``: the onion round trip that stored it) and of delivery latency
    (send start → the recipient's receive that returned it), compared with the thresholds given.

    ``evidence["by_node"][name]`` has the store-request statistics of the sends whose successful
    store went through that node (as a hop or the destination), and ``others`` those of the
    sends that avoided it: the effect of a slow node shows there.

    Verdict: ``FAILED`` when a threshold is exceeded; else ``UNKNOWN`` when there is no
    successful send, or a threshold was given for a measurement without samples; else ``OK``."""
    sends = [s for s in history.sends if s.ok and s.duration_ms is not None]
    send_ms = [s.duration_ms for s in sends if s.duration_ms is not None]
    store_ms: dict[str, float] = {}
    through: dict[str, set[str]] = {}
    for s in sends:
        ok_stores = [a for a in s.attempts if a.method == "store" and a.ok]
        if not ok_stores:
            continue
        a = ok_stores[-1]
        store_ms[s.op_id] = a.elapsed_ms
        names = {history.node_name(h.get("ed25519")) or h.get("ed25519", "?")
                 for h in [*a.path, a.destination or {}] if h}
        through[s.op_id] = names
    deliver = delivery_times(history)

    by_node: dict[str, dict[str, Any]] = {}
    all_nodes = sorted(set(history.nodes) | {n for v in through.values() for n in v})
    for name in all_nodes:
        inside = [store_ms[o] for o, ns in through.items() if name in ns]
        outside = [store_ms[o] for o, ns in through.items() if name not in ns]
        st = stats(inside)
        st["others"] = stats(outside)
        by_node[name] = st

    res = {"send_ms": stats(send_ms), "store_ms": stats(list(store_ms.values())),
           "delivery_ms": stats(list(deliver.values()))}
    details = [f"send: {_fmt(res['send_ms'])}", f"store request: {_fmt(res['store_ms'])}",
               f"delivery: {_fmt(res['delivery_ms'])}"]
    violations: list[str] = []
    slow_ops: list[str] = []

    def limit(what: str, key: str, value: float | None, bound: float | None,
              per_op: dict[str, float]) -> None:
        if bound is None or value is None or value <= bound:
            return
        violations.append(f"{what} {value:.0f} ms > {bound:.0f} ms")
        slow_ops.extend(sorted((o for o, v in per_op.items() if v > bound),
                               key=lambda o: -per_op[o]))

    per_send = {s.op_id: s.duration_ms for s in sends if s.duration_ms is not None}
    limit("send p95", "send_ms", res["send_ms"]["p95"], send_p95_ms, per_send)
    limit("send max", "send_ms", res["send_ms"]["max"], send_max_ms, per_send)
    limit("delivery p95", "delivery_ms", res["delivery_ms"]["p95"], delivery_p95_ms, deliver)
    limit("delivery max", "delivery_ms", res["delivery_ms"]["max"], delivery_max_ms, deliver)
    for name, st in by_node.items():
        if st["count"] and st["others"]["count"]:
            details.append(f"through {name}: store p50 {st['p50']:.0f} ms (n={st['count']}) vs "
                           f"{st['others']['p50']:.0f} ms without it (n={st['others']['count']})")
    missing = []
    if not send_ms:
        missing.append("no successful send to measure")
    for what, key, bounds in (("send", "send_ms", (send_p95_ms, send_max_ms)),
                              ("delivery", "delivery_ms", (delivery_p95_ms, delivery_max_ms))):
        if send_ms and res[key]["count"] == 0 and any(b is not None for b in bounds):
            missing.append(f"a {what} threshold was given but no {what} latency was measured")
    for v in violations:
        details.insert(0, f"threshold exceeded: {v}")
    details[:0] = [f"unknown: {m}" for m in missing]
    thresholds = {"send_p95_ms": send_p95_ms, "send_max_ms": send_max_ms,
                  "delivery_p95_ms": delivery_p95_ms, "delivery_max_ms": delivery_max_ms}
    summary = (f"send p50 {_num(res['send_ms']['p50'])}/p95 {_num(res['send_ms']['p95'])} ms, "
               f"delivery p50 {_num(res['delivery_ms']['p50'])}/p95 "
               f"{_num(res['delivery_ms']['p95'])} ms")
    if violations:
        summary += "; " + "; ".join(violations)
    elif missing:
        summary += "; " + "; ".join(missing)
    verdict = Verdict.FAILED if violations else Verdict.UNKNOWN if missing else Verdict.OK
    return CheckResult("latency", verdict, summary, details, {
        **res, "by_node": by_node, "thresholds": thresholds, "violations": violations,
        "missing": missing,
        "per_send_ms": per_send, "per_store_ms": store_ms, "per_delivery_ms": deliver,
        "op_ids": list(dict.fromkeys(slow_ops)),
    })


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


__all__ = ["delivery_times", "latency", "percentile", "stats"]
