"""A realistic synthetic run for report tests (built with harness.checks.synth): 9 nodes, 30
sends over ~30 s, sn02 dropping stores from +8 s to +18 s (the sends routed to it then fail),
sn05 killed from +20 s to +24 s, 150 ms latency on sn07 throughout the second half."""

from __future__ import annotations

from harness.checks import History, censorship, delivery, latency
from harness.checks.result import CheckResult
from harness.checks.synth import T0, attempt, directory, event, receive, send

A, B = "05" + "aa" * 32, "05" + "bb" * 32
NODES = directory(9)
#: fault windows in seconds from T0: (action, nodes, start, end, params)
FAULTS = [("misbehave", ["sn02"], 8.0, 18.0, {"drop_stores": True}),
          ("kill", ["sn05"], 20.0, 24.0, {}),
          ("latency", ["sn07"], 15.0, 30.0, {"ms": 150})]


def sample_history() -> History:
    h = History(nodes=NODES)
    evs = [(s, "apply", a, n, p) for a, n, s, _, p in FAULTS]
    evs += [(e, "remove", a, n, p) for a, n, _, e, p in FAULTS]
    h.events = [event(a, ph, n, T0 + t, i, **p) for i, (t, ph, a, n, p) in enumerate(sorted(
        evs, key=lambda x: x[0]))]
    hashes = []
    for i in range(30):
        at = T0 + i
        guard, relay = f"sn0{1 + (i % 3) * 3}", f"sn0{3 + i % 2 * 5}"
        dest = "sn02" if i % 2 else "sn04"
        slow = 150.0 if 15 <= i < 30 and "sn07" in (guard, relay) else 0.0
        if dest == "sn02" and 8 <= i < 18:
            a = attempt(NODES, 1, [guard, relay], dest, at=at, ms=40 + slow, ok=False,
                        error_kind="destination", status=500, error="store dropped")
            h.records.append(send(f"send-{i:02d}", A, B, f"H{i}", [a], ok=False))
        else:
            a = attempt(NODES, 1, [guard, relay], dest, at=at, ms=45 + i % 7 * 9 + slow)
            h.records.append(send(f"send-{i:02d}", A, B, f"H{i}", [a]))
            hashes.append(f"H{i}")
        h.sent[f"send-{i:02d}"] = {"to": B, "body": f"message {i}"}
        if i % 5 == 4:
            h.records.append(receive(f"recv-{i}", B, hashes, at=at + 0.6))
            hashes = []
    h.records.append(receive("recv-last", B, hashes, at=T0 + 31))
    return h


def sample_results(h: History) -> list[CheckResult]:
    return [delivery(h), latency(h), censorship(h)]
