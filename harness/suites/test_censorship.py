"""Censorship resistance: nodes that drop or corrupt what they should carry, a colluding swarm
majority, Sybil nodes, and firewalls between the client and part of the network (a /22 of
nodes, the seed) cannot stop delivery while an honest path and an honest swarm member exist.

Every scenario sends a few messages before the censors start (fraction 0) and the rest while
they censor, and asserts with :func:`harness.checks.censorship`, whose evidence keeps the
delivery rate versus the fraction of censoring nodes (``evidence["curve"]``, plotted in the
report). They share one 9-node testnet (3 swarms x 3): with 6 nodes, a path through a censor gets
its three nodes struck out of the client's pool and too few nodes remain for a path plus a
destination (client behaviour, as in production). The Sybil scenario adds nodes, so it runs
last.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest

from harness.checks import censorship, delivery
from harness.checks.result import CheckResult
from harness.client import Client
from harness.network import Testnet
from harness.recording import HistoryRecorder, RecordedClient
from harness.suites.conftest import Clients
from harness.suites.support import (
    CLIENT,
    account_for,
    module_testnet,
    send_like_an_app,
    swarm_names,
    swarm_of,
)

pytestmark = [pytest.mark.censorship, pytest.mark.integration,
              pytest.mark.backends("process", "docker")]

#: the built-in client keeps a failed path's nodes out of new paths for ``path_quarantine``
#: (60 s); on 9 nodes two censoring relays then leave it no path for a minute. session-desktop
#: has no such quarantine (it rebuilds a dropped path from the whole pool): so do these clients
SETTINGS: dict[str, Any] = {**CLIENT, "path_quarantine": 1.0}

#: messages sent before the censors start (the curve's point at fraction 0) and while they censor
BEFORE, DURING = 2, 6


@pytest.fixture(scope="module")
def net9(request: pytest.FixtureRequest, testnet_backend: str) -> Iterator[Testnet]:
    """The module's testnet: 3 swarms x 3 nodes."""
    yield from module_testnet(request, testnet_backend, swarms=3, swarm_size=3)


def send_all(alice: Any, to: str, label: str, count: int) -> list[str]:
    """Send ``count`` messages as an app does (a failed send is sent again: the censorship
    check counts the message, not the try)."""
    bodies = [f"{label} {i}" for i in range(count)]
    for body in bodies:
        send_like_an_app(alice, to, body)
    return bodies


def received_all(bob: Any, bodies: list[str], timeout: float = 40) -> None:
    want = set(bodies)
    bob.wait_for(lambda got: {m.body for m in got} >= want, timeout=timeout)


def path_nodes(net: Testnet, client: Any, hop: int) -> list[str]:
    """Node names at position ``hop`` (0: guard) of the built-in client's onion paths (it builds
    them first if it has none)."""
    if not client.aio.paths.paths:
        client.bootstrap()
    by_key = {n.pubkey_ed25519: n.name for n in net.nodes}
    return sorted({by_key[p.hops[hop].ed25519] for p in client.aio.paths.paths})


def members_by_use(net: Testnet, client: Any, session_id: str) -> list[str]:
    """The swarm members of ``session_id``, those on none of the client's onion paths first:
    the client stores on those first (a destination on a path can use only the other path), so
    censors chosen from the front of this list are met."""
    on_paths = set(path_nodes(net, client, 0) + path_nodes(net, client, 1)
                   + path_nodes(net, client, 2))
    return sorted(swarm_names(net, client, session_id), key=lambda m: (m in on_paths, m))


def met(history: HistoryRecorder, node: str, role: str) -> int:
    """Failed attempts of the history's clients that had ``node`` in ``role`` ("destination",
    "relay": any hop of the path, "guard")."""
    h = history.history
    n = 0
    for r in h.records:
        for a in r.attempts:
            if a.ok:
                continue
            hops = [h.node_name(x.get("ed25519")) for x in a.path]
            dest = h.node_name((a.destination or {}).get("ed25519"))
            if ((role == "destination" and dest == node) or (role == "relay" and node in hops)
                    or (role == "guard" and hops[:1] == [node])):
                n += 1
    return n


def send_until_met(client: Any, to: str, label: str, count: int, history: HistoryRecorder,
                   censors: list[str], role: str, limit: int = 20) -> list[str]:
    """Send ``count`` messages, and more (up to ``limit``) until the client has run into one of
    ``censors`` in ``role`` at least once: a scenario whose censor was never met tests nothing
    (which member or relay a client picks is its own random choice)."""
    bodies = send_all(client, to, label, count)
    while len(bodies) < limit and not any(met(history, c, role) for c in censors):
        bodies += send_all(client, to, f"{label} more{len(bodies)}", 1)
    assert any(met(history, c, role) for c in censors), \
        f"{limit} sends never met {censors} as {role}"
    return bodies


def curve_of(result: CheckResult) -> list[dict[str, Any]]:
    """The censorship check's delivery-versus-censoring-fraction points, checked for shape:
    a point at fraction 0 and one above, every message delivered at each."""
    curve = list(result.evidence["curve"])
    fractions = [p["censoring_fraction"] for p in curve]
    assert fractions[0] == 0 and fractions[-1] > 0, curve
    assert all(p["delivery_rate"] == 1.0 for p in curve), curve
    return curve


def store_destinations(h: Any, nodes: Testnet) -> list[str]:
    """Node names of the destinations of every successful store."""
    by_key = {n.pubkey_ed25519: n.name for n in nodes.nodes}
    return [by_key.get(str((a.destination or {}).get("ed25519")), "?")
            for s in h.sends for a in s.attempts if a.method == "store" and a.ok]


@pytest.mark.builtin_client
@pytest.mark.node_capabilities("behaviour")
def test_censoring_destination_and_dropping_relay(net9: Testnet, history: HistoryRecorder,
                                                  clients: Clients) -> None:
    """A swarm member that drops stores and a relay that drops onion requests, both at once,
    cannot stop delivery: the client confirms stores on honest members and routes around the
    relay, and no successful store passes a censor in the role it censors in."""
    alice = clients.builtin(net9, **SETTINGS)
    bob = clients.builtin(net9, poll_mode="all", **SETTINGS)
    members = swarm_names(net9, alice, bob.session_id)
    dropper = sorted(members)[0]                                   # stores vanish there
    blocker = sorted({n.name for n in net9.nodes} - members)[0]    # relays die there
    bodies = send_all(alice, bob.session_id, "before", BEFORE)
    with history.faults(net9) as faults:
        faults.misbehave(dropper, drop_stores=True)
        faults.misbehave(blocker, drop_relays=True)
        bodies += send_all(alice, bob.session_id, "uncensored", DURING)
        received_all(bob, bodies)
    h = history.collect()
    history.require(delivery(h), censorship(h))
    c = history.results[-1]
    assert dropper in c.summary and blocker in c.summary
    assert set(c.evidence["avoided"]) == {dropper, blocker}
    assert c.evidence["avoided"][dropper]["successful_routes_through"] == 0
    assert c.evidence["sends_during"] == DURING
    assert curve_of(c)[-1]["censoring"] == 2


@pytest.mark.builtin_client
@pytest.mark.node_capabilities("behaviour")
def test_censoring_destination_alone(net9: Testnet, history: HistoryRecorder,
                                     clients: Clients) -> None:
    """A member of the recipient's swarm that acknowledges stores and keeps nothing cannot stop
    delivery: its lone confirmation is not a majority, so the client stores on an honest member,
    whose copies reach the rest of the swarm, and the recipient polling every member gets all."""
    alice = clients.builtin(net9, **SETTINGS)
    bob = clients.builtin(net9, poll_mode="all", **SETTINGS)
    dropper = members_by_use(net9, alice, bob.session_id)[0]
    bodies = send_all(alice, bob.session_id, "before", BEFORE)
    with history.faults(net9) as faults:
        faults.misbehave(dropper, drop_stores=True)
        bodies += send_until_met(alice, bob.session_id, "past a dropper", DURING, history,
                                 [dropper], "destination")
        received_all(bob, bodies)
    h = history.collect()
    history.require(delivery(h), censorship(h))
    c = history.results[-1]
    assert c.evidence["avoided"][dropper]["successful_routes_through"] == 0
    assert c.evidence["avoided"][dropper]["failed_attempts"] >= 1
    assert dropper not in store_destinations(h, net9)[BEFORE:]
    assert curve_of(c)[-1]["censoring_fraction"] == round(1 / 9, 4)


@pytest.mark.builtin_client
@pytest.mark.node_capabilities("behaviour")
@pytest.mark.parametrize("behaviour", ["drop_relays", "corrupt_relays"])
def test_misbehaving_relays(net9: Testnet, history: HistoryRecorder, clients: Clients,
                            behaviour: str) -> None:
    """Two relays that drop (or corrupt) every onion request they should pass on cannot stop
    delivery: the client drops the failing paths and builds new ones from honest nodes, and no
    successful request passes a censoring relay.

    One censor is the middle hop of the path the sender last stored through (so that it meets
    it), the other a node that leaves each client an honest path of its own: a corrupting
    relay makes the next hop answer 400 "Invalid ciphertext", which clients (as session-desktop:
    "no path strike for 400") do not count against the path, so a client whose every path holds
    a corrupting relay never rebuilds one."""
    alice = clients.builtin(net9, **SETTINGS)
    bob = clients.builtin(net9, **SETTINGS)
    bodies = send_all(alice, bob.session_id, "before", BEFORE)
    received_all(bob, bodies)  # Bob has his paths too
    bodies = []
    h = history.collect()
    last = [a for s in h.sends for a in s.attempts if a.method == "store" and a.ok][-1]
    on_path = str(h.node_name(last.path[1]["ed25519"]))
    by_key = {n.pubkey_ed25519: n.name for n in net9.nodes}
    paths = [{by_key[x.ed25519] for x in p.hops} for c in (alice, bob) for p in c.aio.paths.paths]

    def leaves_honest_paths(censors: set[str]) -> bool:
        return all(sum(bool(p & censors) for p in paths[i:i + 2]) < 2 for i in (0, 2))

    assert leaves_honest_paths({on_path})
    other = [n.name for n in net9.nodes
             if n.name != on_path and leaves_honest_paths({on_path, n.name})]
    censors = sorted({on_path, *other[:1]})
    with history.faults(net9) as faults:
        censor: dict[str, Any] = {behaviour: True}
        bad = faults.apply("misbehave", ",".join(censors), **censor).nodes
        bodies += send_until_met(alice, bob.session_id, f"past {behaviour}", DURING, history,
                                 bad, "relay")
        received_all(bob, bodies)
    h = history.collect()
    history.require(delivery(h), censorship(h))
    c = history.results[-1]
    assert bad == censors and len(bad) == 2, (censors, paths)
    assert all(c.evidence["avoided"][n]["successful_routes_through"] == 0 for n in bad)
    assert sum(c.evidence["avoided"][n]["failed_attempts"] for n in bad) >= 1
    assert curve_of(c)[-1]["censoring"] == len(bad)


@pytest.mark.node_capabilities("partition", "observations")  # peers rerouted via link proxies
def test_a_range_blocked_from_the_client(net9: Testnet, history: HistoryRecorder,
                                         clients: Clients) -> None:
    """A national firewall making a whole address range (a /22 holding three nodes) unreachable
    from clients cannot stop delivery: clients enter the network through the nodes they can
    reach, and the blocked nodes keep serving as relays and swarm members (node-to-node traffic
    still flows)."""
    alice, bob = clients.new(net9, **SETTINGS), clients.new(net9, **SETTINGS)
    bodies = send_all(alice, bob.session_id, "before", BEFORE)
    # the built-in client's guard is in the range (so it meets the block): the guard of a path
    # it stored to Bob through (a path holding Bob's swarm members is never used for him); an
    # adapter's guards are unknown: node 1's range
    target = net9.nodes[0].name
    if clients.command is None:
        h0 = history.collect()
        target = [str(h0.node_name(a.path[0]["ed25519"])) for r in h0.sends for a in r.attempts
                  if a.method == "store" and a.ok and a.path][-1]
    with history.faults(net9) as faults:
        # node i is advertised in its own /24 (x.y.i.1), so a /22 holds 2-4 nodes
        block = faults.block_clients(target, prefix=22)
        blocked = block.nodes
        if clients.command is None:
            bodies += send_until_met(alice, bob.session_id, "over the firewall", DURING, history,
                                     blocked, "guard")
        else:
            bodies += send_all(alice, bob.session_id, "over the firewall", DURING)
        received_all(bob, bodies)
        h = history.collect()
    history.require(delivery(h), censorship(h))
    c = history.results[-1]
    (blocked_range,) = block.result["ranges"]
    assert blocked_range.endswith("/22") and target in blocked
    assert blocked == sorted(n.name for n in net9.nodes
                             if ipaddress.ip_address(n.public_ip) in ipaddress.ip_network(blocked_range))
    assert 2 <= len(blocked) <= 4 and curve_of(c)[-1]["censoring"] == len(blocked)
    t0 = block.event.wall if block.event else 0.0
    # node-to-node traffic reached the blocked nodes while the block was in force: onion
    # requests they relayed or answered, replication between swarm members
    served = {n for n in blocked for o in h.observations.get(n, [])
              if float(o.get("ts", 0)) > t0 and o.get("channel") in ("onion", "swarm")
              and int(o.get("status") or 0) < 400}
    assert served, f"no blocked node served any request during the block: {blocked}"
    if clients.command is None:  # the built-in client's records show its paths
        for s in h.sends:
            for a in s.attempts:
                if a.method == "store" and a.ok and a.started_at > t0:
                    assert h.node_name(a.path[0].get("ed25519")) not in blocked


@pytest.mark.builtin_client
@pytest.mark.node_capabilities("partition")  # its node block reroutes peers via link proxies
def test_the_seed_unreachable_from_the_client(net9: Testnet, history: HistoryRecorder,
                                              clients: Clients) -> None:
    """A client that cannot reach the seed (nor one node's range) still bootstraps, from the
    node list it kept and the service nodes' own ``get_service_nodes`` (asked through onion
    paths, as production clients refresh their pool), and delivers."""
    bob = clients.builtin(net9, **SETTINGS)
    first = clients.builtin(net9, **SETTINGS)
    first.bootstrap()
    kept = first.aio.pool.nodes()  # what an app keeps in its database
    first.close()
    seed = net9.seed_url.rsplit(":", 1)[0]
    blocked_seed = f"{seed}:9"  # nothing listens there: the client's seed is refused
    with history.faults(net9) as faults:
        block = faults.block_clients(net9.nodes[-1].name)
        alice = RecordedClient(Client(blocked_seed, account_for(net9, clients.label()),
                                      sink=history.history.records, nodes=kept,
                                      retry_backoff=0.05, **SETTINGS), history.history)
        try:
            boot = alice.bootstrap()
            bodies = send_all(alice, bob.session_id, "seedless", DURING)
        finally:
            alice.close()
        received_all(bob, bodies)
        h = history.collect()
    history.require(delivery(h), censorship(h))
    seed_tries = [a for a in boot.attempts if a.method == "get_n_service_nodes"]
    asked = [a for a in boot.attempts if a.method == "oxend_request" and a.ok]
    assert seed_tries and not any(a.ok for a in seed_tries)
    assert len(asked) == 3, [(a.method, a.ok, a.error) for a in boot.attempts]
    assert boot.details["pool_from_nodes"] == len(net9.nodes)
    assert block.nodes == [net9.nodes[-1].name]
    curve_of_seedless = history.results[-1].evidence["curve"]
    assert [p["delivery_rate"] for p in curve_of_seedless] == [1.0]


@pytest.mark.builtin_client
@pytest.mark.node_capabilities("behaviour")
def test_a_colluding_swarm_majority(net9: Testnet, history: HistoryRecorder,
                                    clients: Clients) -> None:
    """Two of the three members of the recipient's swarm acknowledging stores and keeping
    nothing cannot stop delivery while one member is honest: the client keeps storing until a
    store is confirmed by a majority (only the honest member's fan-out gets one), and the
    recipient polling every member receives every message."""
    alice = clients.builtin(net9, **SETTINGS)
    bob = clients.builtin(net9, poll_mode="all", **SETTINGS)
    members = members_by_use(net9, alice, bob.session_id)
    colluders, honest = members[:2], members[2]
    bodies = send_all(alice, bob.session_id, "before", BEFORE)
    with history.faults(net9) as faults:
        faults.misbehave(",".join(colluders), drop_stores=True)
        bodies += send_until_met(alice, bob.session_id, "past a majority", DURING, history,
                                 colluders, "destination")
        received_all(bob, bodies)
    h = history.collect()
    history.require(delivery(h), censorship(h))
    c = history.results[-1]
    assert set(store_destinations(h, net9)[BEFORE:]) == {honest}
    assert all(c.evidence["avoided"][n]["successful_routes_through"] == 0 for n in colluders)
    assert curve_of(c)[-1]["censoring"] == 2


@pytest.mark.builtin_client
@pytest.mark.node_capabilities("join", "behaviour")
def test_sybil_nodes_that_join_and_drop(net9: Testnet, history: HistoryRecorder,
                                        clients: Clients) -> None:
    """Nodes that join the network and then drop every store and every onion request (Sybils)
    cannot stop delivery: honest nodes remain on other paths and in every swarm, and the
    recipient polling every member receives every message. (The recipient is an account whose
    swarm a Sybil joined, so that the sender meets it; runs last: it adds nodes.)"""
    with history.faults(net9) as faults:
        sybils = faults.add_nodes(2).nodes
        bob_account = next(a for a in (account_for(net9, f"{clients.nodeid}/bob-{i}")
                                       for i in range(64))
                           if set(swarm_of(net9, a.session_id)) & set(sybils))
        bob = clients.builtin(net9, account=bob_account, poll_mode="all", **SETTINGS)
        alice = clients.builtin(net9, **SETTINGS)  # its first node list has the Sybils
        bodies = send_all(alice, bob.session_id, "before", BEFORE)
        faults.misbehave(",".join(sybils), drop_stores=True, drop_relays=True)
        bodies += send_until_met(alice, bob.session_id, "past sybils", DURING, history,
                                 sybils, "destination")
        received_all(bob, bodies)
    h = history.collect()
    history.require(delivery(h), censorship(h))
    c = history.results[-1]
    assert len(sybils) == 2 and set(sybils) <= set(c.evidence["avoided"])
    pools = [act for r in h.records if r.account == alice.session_id for a in r.attempts
             if a.method == "get_n_service_nodes" and a.ok for act in a.actions]
    assert pools and pools[0] == f"pool:{len(net9.nodes)}", pools  # the sender knew the Sybils
    assert all(c.evidence["avoided"][n]["successful_routes_through"] == 0 for n in sybils)
    assert curve_of(c)[-1]["censoring_fraction"] == round(2 / len(net9.nodes), 4)
