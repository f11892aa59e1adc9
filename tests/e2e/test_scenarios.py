"""End-to-end scenarios, each asserted with the checkers (harness.checks): a failing check fails
the test and the ``history`` fixture writes report.md/report.json next to the saved node logs.

Runs once per backend (process, docker) on one module-scoped testnet (2 swarms × 3 nodes)."""

from __future__ import annotations

import pytest

from harness.checks import censorship, delivery, latency, privacy

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker")]

#: short request timeout: a killed container does not refuse, it stays silent
CLIENT = {"request_timeout": 4.0}


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


def test_metadata_privacy(testnet, history):
    alice, bob = history.client(testnet, **CLIENT), history.client(testnet, **CLIENT)
    for i in range(5):
        alice.send(bob.session_id, f"private {i}")
    bob.wait_for(count=5, timeout=30)
    h = history.collect()
    assert set(h.observations) == {n.name for n in testnet.nodes}
    history.require(delivery(h), privacy(h))
    p = history.results[-1]
    # every successful onion request (5 stores, swarm lookups, retrieves) was seen at guard
    # and destination; the guard's view gave the client-facing address
    assert p.evidence["verified"] == p.evidence["checked"] >= 6
    assert p.evidence["client_addresses"]


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


def test_censorship_resistance(testnet_factory, history):
    # 9 nodes: with 6, a path through the blocker gets its three nodes struck out of the pool
    # and too few nodes remain for a path plus a destination (client behaviour, as production)
    testnet = testnet_factory(swarms=3, swarm_size=3)
    alice = history.client(testnet, **CLIENT)
    bob = history.client(testnet, poll_mode="all", **CLIENT)
    members = swarm_names(testnet, alice, bob.session_id)
    dropper = sorted(members)[0]                                   # stores vanish there
    blocker = sorted({n.name for n in testnet.nodes} - members)[0]  # relays die there
    with history.faults(testnet) as faults:
        faults.misbehave(dropper, drop_stores=True)
        faults.misbehave(blocker, drop_relays=True)
        for i in range(10):
            alice.send(bob.session_id, f"uncensored {i}")
        bob.wait_for(count=10, timeout=40)
    h = history.collect()
    history.require(delivery(h), censorship(h))
    c = history.results[-1]
    assert dropper in c.summary and blocker in c.summary
    assert set(c.evidence["avoided"]) == {dropper, blocker}
    assert c.evidence["avoided"][dropper]["successful_routes_through"] == 0
    assert c.evidence["sends_during"] == 10
