"""End-to-end scenarios, each asserted with the checkers (harness.checks): a failing check fails
the test and the ``history`` fixture writes report.md/report.json next to the saved node logs.

Runs once per backend (process, docker) on one module-scoped testnet (2 swarms × 3 nodes)."""

from __future__ import annotations

import pytest

from harness.checks import delivery, latency
from harness.client import StoreFailed

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker")]

#: short request timeout: a killed container does not refuse, it stays silent
CLIENT = {"request_timeout": 4.0}


def send_like_an_app(client, to: str, body: str, tries: int = 3) -> None:
    """Send; if the client gives up, resend as a messenger app's send job does (its 4 attempts
    can all meet a just-killed node that the client cannot tell from a broken path: on 6 nodes
    every destination lies on one of its two paths). Failed tries stay in the history (the
    report shows them)."""
    for n in range(1, tries + 1):
        try:
            client.send(to, body)
            return
        except StoreFailed:
            if n == tries:
                raise


def swarm_names(net, client, session_id: str) -> set[str]:
    by_key = {n.pubkey_ed25519: n.name for n in net.nodes}
    return {by_key[m.ed25519] for m in client.get_swarm(session_id)}


def test_delivery_both_ways(testnet, history):
    alice, bob = history.client(testnet, **CLIENT), history.client(testnet, **CLIENT)
    for i in range(10):
        alice.send(bob.session_id, f"a->b {i}")
        bob.send(alice.session_id, f"b->a {i}")
    bob.wait_for(count=10, timeout=30)
    alice.wait_for(count=10, timeout=30)
    history.require(delivery(history.collect()), latency(history.history, send_p95_ms=10_000,
                                                         delivery_p95_ms=15_000))
    assert history.results[0].evidence["delivered"] == 20


def store_route(record) -> set[str]:
    """ed25519 keys of the path and destination of a send's successful store."""
    ok = [a for a in record.attempts if a.method == "store" and a.ok][-1]
    return {h["ed25519"] for h in [*ok.path, ok.destination]}


def test_latency_on_one_node(testnet_factory, history):
    # 9 nodes, so that the client's two paths differ and a node outside bob's swarm is on some
    # sends' routes and not on others: the contrast between those sends measures the fault
    testnet = testnet_factory(swarms=3, swarm_size=3)
    bob = history.client(testnet, **CLIENT)
    warmups = 0
    for _client in range(4):
        # a client whose one usable path is fixed (its other path holds bob's whole swarm, or a
        # guard test failed) routes every send alike; a new client builds new random paths
        alice = history.client(testnet, **CLIENT)
        # the slow node must not be in bob's swarm, else every store (fan-out) would be slowed
        outside = {n.pubkey_ed25519: n.name for n in testnet.nodes
                   if n.name not in swarm_names(testnet, alice, bob.session_id)}
        warmup = [alice.send(bob.session_id, f"warm-up {warmups + i}") for i in range(12)]
        warmups += len(warmup)
        usage = {name: sum(key in store_route(r) for r in warmup) for key, name in outside.items()}
        partial = {name: n for name, n in usage.items() if 0 < n < len(warmup)}
        if partial:
            break
    assert partial, f"no node outside bob's swarm is on only some routes of 4 clients: {usage}"
    slow = min(partial, key=lambda name: abs(partial[name] - len(warmup) / 2))
    key = testnet.node(slow).pubkey_ed25519
    through: list[float] = []  # send times while the fault is in force, via the slow node
    around: list[float] = []   # … and avoiding it
    with history.faults(testnet) as faults:
        faults.latency(slow, 200)
        for i in range(40):
            r = alice.send(bob.session_id, f"slow {i}")
            (through if key in store_route(r) else around).append(r.duration_ms)
            if len(through) >= 3 and len(around) >= 3:
                break
        bob.wait_for(count=warmups + len(through) + len(around), timeout=30)
    history.require(delivery(history.collect()), latency(history.history, send_p95_ms=15_000))
    assert len(through) >= 3 and len(around) >= 3, (slow, usage, through, around)
    # a 200 ms downstream delay on every connection to the node: sends through it are slower
    median_gap = sorted(through)[len(through) // 2] - sorted(around)[len(around) // 2]
    assert median_gap >= 150, (slow, through, around)


def test_churn_kill_swarm_member_mid_stream(testnet, history):
    alice, bob = history.client(testnet, **CLIENT), history.client(testnet, **CLIENT)
    members = swarm_names(testnet, alice, bob.session_id)
    expected = {f"churn {i}" for i in range(10)}
    with history.faults(testnet) as faults:
        for i in range(10):
            if i == 3:
                killed = faults.kill(f"swarm-of:{bob.session_id}:1")
            send_like_an_app(alice, bob.session_id, f"churn {i}")
        bob.wait_for(lambda got: {m.body for m in got} >= expected, timeout=40)
        h = history.collect()
        assert killed.nodes[0] not in h.observations  # it really was down when collected
    history.require(delivery(h))
    assert len(killed.nodes) == 1 and killed.nodes[0] in members
    assert [(e.action, e.phase) for e in h.events] == [("kill", "apply")]
    after = [s for s in h.sends if s.started_at > h.events[0].wall]
    assert len([s for s in after if s.ok]) == 7
    assert len(after) <= 14  # at most one failed try per message on average
    # every body arrives; a body arrives twice only when the client reported its first send as
    # failed although some member stored it (indeterminate, as in Jepsen) and the app resent it
    assert {d["body"] for d in h.deliveries} == expected
    ok_hashes = {s.message_hash for s in h.sends if s.ok}
    failed_hashes = {s.message_hash for s in h.sends if not s.ok}
    assert sorted(d["body"] for d in h.deliveries if d["hash"] in ok_hashes) == sorted(expected)
    assert all(d["hash"] in ok_hashes | failed_hashes for d in h.deliveries)
