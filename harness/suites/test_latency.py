"""Latency / WAN scenarios: slow, jittery and bandwidth-capped nodes delay delivery within the
bounds each scenario states, and clients route around a node slower than their request
timeout.

Network faults are Toxiproxy toxics on the nodes' proxies (docs/faults.md): a ``latency`` toxic
delays what a node sends back on every connection made to it (clients' and peers'), a
``bandwidth`` toxic caps what crosses its proxy. The WAN profile comes from
:mod:`harness.faults.wan` (seeded by the testnet seed).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from harness.checks import delivery, latency
from harness.client import SessionClient
from harness.faults.wan import WAN_TAG, apply_wan, wan_profile
from harness.network import Testnet
from harness.nodekinds import kind_class
from harness.recording import HistoryRecorder
from harness.suites.conftest import Clients
from harness.suites.support import CLIENT, module_testnet, store_route, swarm_names

pytestmark = [pytest.mark.latency, pytest.mark.integration, pytest.mark.backends("process", "docker", "swarm")]

#: what a loaded 2-core machine (and one retried attempt) may add to any request, ms
SLACK_MS = 3_000


@pytest.fixture(scope="module")
def testnet9(request: pytest.FixtureRequest, testnet_backend: str) -> Iterator[Testnet]:
    """3 swarms × 3 nodes, shared by the module's scenarios: with 9 nodes a client's two paths
    differ, a node outside the recipient's swarm is on some routes and not on others, and a
    client has nodes enough to build a path around a failed one."""
    yield from module_testnet(request, testnet_backend, swarms=3, swarm_size=3)


def either_way(net: Testnet) -> bool:
    """Node-to-node requests of ``net``'s nodes may cross either end's proxy
    (:attr:`harness.nodekinds.base.NodeKind.peer_links_either_way`: the real server)."""
    return any(kind_class(k).peer_links_either_way for k in net.topology.kinds)


def _names(net: Testnet) -> dict[str, str]:
    """ed25519 -> node name."""
    return {n.pubkey_ed25519: n.name for n in net.nodes}


@pytest.mark.builtin_client
def test_latency_on_one_node(testnet9: Testnet, history: HistoryRecorder,
                             clients: Clients) -> None:
    """Latency added to one node slows exactly the sends routed through it (by at least most of
    the added delay), the others not, and every message is still delivered.

    9 nodes, so that the client's two paths differ and a node outside bob's swarm is on some
    sends' routes and not on others: the contrast between those sends measures the fault."""
    testnet = testnet9
    bob = clients.builtin(testnet, **CLIENT)
    warmups = 0
    partial: dict[str, int] = {}
    usage: dict[str, int] = {}
    warmup: list[Any] = []
    for _client in range(4):
        # a client whose one usable path is fixed (its other path holds bob's whole swarm, or a
        # guard test failed) routes every send alike; a new client builds new random paths
        alice = clients.builtin(testnet, **CLIENT)
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
    slow = min(sorted(partial), key=lambda name: abs(partial[name] - len(warmup) / 2))
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


def test_seeded_wan_profile(testnet9: Testnet, history: HistoryRecorder, clients: Clients) -> None:
    """Under a seeded WAN profile on every node (region delays, jitter, bandwidth caps), messages
    flow both ways and arrive within the bounds the profile gives: send p95 <= twice the
    slowest 5-node route of the profile (guard, 2 relays, destination, its slowest swarm peer;
    twice for a new connection's handshake) + 3 s, delivery p95 <= three of those (the send,
    the reverse send in between, the retrieve).

    The profile comes from the testnet seed (harness.faults.wan): a replay with --seed applies
    the same delays to the same nodes."""
    testnet = testnet9
    profile = wan_profile(testnet.topology.seed, [n.name for n in testnet.nodes])
    route_ms = 2 * profile.slowest_route_ms(5) + SLACK_MS
    alice, bob = clients.new(testnet, **CLIENT), clients.new(testnet, **CLIENT)
    with history.faults(testnet) as faults:
        applied = apply_wan(faults, profile)
        status = faults.status()["nodes"]
        for link in profile.links:  # the profile is what Toxiproxy holds, node by node
            toxics = {t["name"]: t["attributes"] for t in status[link.node]["toxics"]}
            assert toxics[f"latency_downstream_{WAN_TAG}"] == {"latency": link.latency_ms,
                                                               "jitter": link.jitter_ms}
            assert toxics[f"bandwidth_upstream_{WAN_TAG}"] == {"rate": link.kbps}
        for i in range(10):
            alice.send(bob.session_id, f"wan a->b {i}")
            bob.send(alice.session_id, f"wan b->a {i}")
            bob.wait_for(count=1, timeout=30)
            alice.wait_for(count=1, timeout=30)
    h = history.collect()
    history.require(delivery(h), latency(h, send_p95_ms=route_ms, delivery_p95_ms=3 * route_ms))
    assert len(applied) == 2 * len(profile.links)
    assert history.results[0].evidence["delivered"] == 20
    # every send crossed at least one delayed node: none was faster than the least delay of
    # the profile; built-in sends name their route, and pay at least its delays
    least = min(link.latency_ms - link.jitter_ms for link in profile.links)
    sends = [s for s in h.sends if s.ok]
    assert all((s.duration_ms or 0) >= least for s in sends), (least, profile.describe())
    names = _names(testnet)
    routed = [(s, [names[k] for k in store_route(s) if k in names]) for s in sends
              if any(a.method == "store" and a.ok for a in s.attempts)]
    if clients.command is None:
        assert len(routed) == 20
    for s, route in routed:
        store_ms = [a.elapsed_ms for a in s.attempts if a.method == "store" and a.ok][-1]
        least_ms = profile.least_route_ms(route, either_end=either_way(testnet))
        assert store_ms >= least_ms - 5, (s.op_id, route, store_ms, profile.describe())


@pytest.mark.builtin_client
def test_node_slower_than_request_timeout_is_routed_around(
        testnet9: Testnet, history: HistoryRecorder, clients: Clients) -> None:
    """A node whose answers take longer than the client's request timeout (the guard of one of
    its onion paths, outside the recipient's swarm) is routed around: every send still
    succeeds, each attempt that meets the node gives up at the timeout, the node is on no
    successful route, each send takes at most the client's attempts (4) × its request timeout,
    and every message is delivered."""
    testnet = testnet9
    timeout_s = 3.0
    slow_ms = 4_000  # > the request timeout
    bob = clients.builtin(testnet, **{**CLIENT, "request_timeout": timeout_s})
    rng = random.Random(f"{testnet.topology.seed}/slow-guard")
    guards: list[str] = []
    alice: Any = None
    warmups = 0
    for _client in range(4):
        alice = clients.builtin(testnet, **{**CLIENT, "request_timeout": timeout_s})
        alice.send(bob.session_id, f"warm-up {warmups}")
        warmups += 1
        members = swarm_names(testnet, alice, bob.session_id)

        async def guards_of(c: SessionClient) -> list[str]:
            return [p.guard.ed25519 for p in c.paths.paths]

        names = _names(testnet)
        guards = sorted(names[g] for g in alice.run(guards_of) if names[g] not in members)
        if guards:
            break
    assert guards, "4 clients had only guards in bob's swarm"
    slow = rng.choice(guards)
    key = testnet.node(slow).pubkey_ed25519
    # bob has his paths and his swarm before the fault (the scenario is about alice's paths)
    bob.wait_for(count=warmups, timeout=30)
    sent: list[Any] = []
    with history.faults(testnet) as faults:
        faults.latency(slow, slow_ms)
        for i in range(8):
            sent.append(alice.send(bob.session_id, f"around {i}"))  # StoreFailed fails the test
        bob.wait_for(count=len(sent), timeout=40)
    h = history.collect()
    attempts = alice.config.max_attempts
    history.require(delivery(h), latency(h, send_max_ms=attempts * timeout_s * 1000))
    assert all(r.ok for r in sent)
    assert not [r.op_id for r in sent if key in store_route(r)], f"{slow} on a successful route"
    met = [a for r in sent for a in r.attempts
           if key in {x.get("ed25519") for x in [*a.path, a.destination or {}]}]
    # the client met the slow node (it was its guard) and gave up on it at the timeout
    assert met, f"no attempt went through the slow guard {slow}"
    assert all(not a.ok and a.error_kind == "timeout" for a in met), \
        [(a.ok, a.error_kind, a.error) for a in met]
    assert all(a.elapsed_ms < slow_ms for a in met)


@pytest.mark.builtin_client
def test_bandwidth_capped_node_with_large_messages(
        testnet9: Testnet, history: HistoryRecorder, clients: Clients) -> None:
    """Large messages (50 KB bodies) whose stores cross a node capped at 48 KB/s are stored and
    delivered: each store that crosses it takes at least the message's size at that rate (the
    cap is in force) and each send at most two crossings of twice the message's size plus 3 s;
    each message reaches its recipient at most one more such crossing plus 3 s after its send
    ended.

    On our nodes the capped node is a member of the recipient's swarm, which every store crosses
    (the destination, or a fan-out peer the destination waits for, reached at its proxy). The
    real server may reach a peer over a connection the peer opened (through the other node's
    proxy), so there the capped node is a guard of the sender's paths, whose proxy carries the
    client's own connection: messages are sent (up to 12) until at least one store went through
    that guard, and the cap is on what the guard receives only (the onion request)."""
    testnet = testnet9
    kbps = 48
    body_bytes = 50_000
    alice = clients.builtin(testnet, **CLIENT)
    bob = clients.builtin(testnet, **CLIENT)
    as_guard = either_way(testnet)
    if as_guard:
        alice.bootstrap()  # its paths, hence its guards
        target, stream = sorted(_names(testnet)[p.guard.ed25519] for p in alice.aio.paths.paths)[0], "upstream"
    else:
        target, stream = f"swarm-of:{bob.session_id}:1", "both"
    with history.faults(testnet) as faults:
        capped = faults.bandwidth(target, kbps, stream=stream).nodes[0]
        key = testnet.node(capped).pubkey_ed25519
        sent: list[Any] = []
        crossing: list[Any] = []
        while len(sent) < 3 or (as_guard and not crossing and len(sent) < 12):
            body = f"large {len(sent)} " + "0123456789abcdef"[len(sent) % 16] * body_bytes
            r = alice.send(bob.session_id, body)
            sent.append(r)
            ok = [a for a in r.attempts if a.method == "store" and a.ok][-1]
            if not as_guard or (ok.path and ok.path[0].get("ed25519") == key):
                crossing.append(r)
            got = bob.wait_for(count=1, timeout=40)
            assert [m.body for m in got] == [body]
    h = history.collect()
    size = max(int(r.details["data_bytes"]) for r in sent)
    crossing_ms = 2 * size / (kbps * 1000) * 1000  # twice the size: base64 and onion layers
    history.require(delivery(h), latency(h, send_max_ms=2 * crossing_ms + SLACK_MS,
                                         delivery_max_ms=3 * crossing_ms + 2 * SLACK_MS))
    assert as_guard or capped in swarm_names(testnet, alice, bob.session_id)
    assert size > body_bytes
    assert crossing, f"{len(sent)} stores, none through the capped {capped}"
    for r in crossing:
        store_ms = [a.elapsed_ms for a in r.attempts if a.method == "store" and a.ok][-1]
        assert store_ms >= 0.9 * r.details["data_bytes"] / (kbps * 1000) * 1000, (r.op_id, store_ms)
