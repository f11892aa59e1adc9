"""Metadata privacy: no node learns who talks to whom. Asserted from what the nodes observed
(``GET /admin/v1/observations``: per request its channel, onion hop, next hop, method, accounts
and remote address) with :func:`harness.checks.privacy.observed_privacy`, which needs no client
records and so holds for any client under test; with the built-in client,
:func:`harness.checks.privacy.privacy` also matches every onion request of its records to the
guard's and the destination's observations.

Runs on the module testnet (2 swarms x 3 nodes).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.checks import delivery, privacy
from harness.checks.history import History
from harness.checks.privacy import observed_privacy
from harness.client import ONE_OFF_PATH
from harness.network import Testnet
from harness.recording import HistoryRecorder, observers
from harness.suites.conftest import Clients
from harness.suites.support import CLIENT, send_like_an_app

pytestmark = [pytest.mark.privacy, pytest.mark.integration,
              pytest.mark.node_capabilities("observations"),
              pytest.mark.backends("process", "docker")]


def exchange(clients: Clients, net: Testnet, label: str, count: int = 4) -> tuple[Any, Any]:
    """Alice sends ``count`` messages to Bob, who receives them all."""
    alice, bob = clients.new(net, **CLIENT), clients.new(net, **CLIENT)
    for i in range(count):
        alice.send(bob.session_id, f"{label} {i}")
    bob.wait_for(count=count, timeout=30)
    return alice, bob


def onion(h: History, hop: str) -> list[dict[str, Any]]:
    return [{**o, "node": n} for n, obs in h.observations.items() for o in obs
            if o.get("channel") == "onion" and o.get("hop") == hop]


def require_privacy(history: HistoryRecorder, clients: Clients) -> History:
    """Delivery and the observation rules; with the built-in client also the record-matched
    rules."""
    h = history.collect()
    history.require(delivery(h), observed_privacy(h))
    if clients.command is None:
        history.require(privacy(h))
    return h


@pytest.mark.builtin_client
def test_metadata_privacy(testnet: Testnet, history: HistoryRecorder, clients: Clients) -> None:
    """Every onion request of the built-in client took a 3-hop path of distinct nodes in
    distinct /24s; its guard saw the client but no account, relays saw no account, and the
    destination saw the accounts but only a node."""
    alice, bob = clients.builtin(testnet, **CLIENT), clients.builtin(testnet, **CLIENT)
    for i in range(5):
        alice.send(bob.session_id, f"private {i}")
    bob.wait_for(count=5, timeout=30)
    h = history.collect()
    assert set(h.observations) == set(observers(testnet))  # every node (and the file server)
    history.require(delivery(h), privacy(h))
    p = history.results[-1]
    # every successful onion request (5 stores, swarm lookups, retrieves) was seen at guard
    # and destination; the guard's view gave the client-facing address
    assert p.evidence["verified"] == p.evidence["checked"] >= 6
    assert p.evidence["client_addresses"]


def test_no_node_sees_the_sender_and_the_recipient(testnet: Testnet, history: HistoryRecorder,
                                                   clients: Clients) -> None:
    """No node observes both the sender's network address and the recipient's Session ID: the
    recipient's ID reaches nodes only inside onion requests (at their destination, which a node
    connected to) and in node-to-node replication, and what clients send nodes directly names no
    account."""
    _alice, bob = exchange(clients, testnet, "who talks to whom")
    h = require_privacy(history, clients)
    naming_bob = [(n, o) for n, obs in h.observations.items() for o in obs
                  if bob.session_id in (o.get("accounts") or [])]
    assert naming_bob, "no node saw the recipient's Session ID at all: nothing was checked"
    assert {(o["channel"], o.get("hop")) for _, o in naming_bob} <= {
        ("onion", "destination"), ("swarm", None)}
    direct = [o for obs in h.observations.values() for o in obs if o.get("channel") == "storage_rpc"]
    assert not [o for o in direct if o.get("accounts")], direct


def test_relays_never_see_a_payload_in_clear(testnet: Testnet, history: HistoryRecorder,
                                             clients: Clients) -> None:
    """Relays never see a destination payload in clear: every node that relayed an onion
    request recorded neither a storage method nor an account (it could not read what it passed
    on), while the destinations of the same requests read both."""
    exchange(clients, testnet, "sealed")
    h = require_privacy(history, clients)
    relays, dests = onion(h, "relay"), onion(h, "destination")
    assert len(relays) >= 2 * len(dests) > 0  # two relays (guard, middle) per request at least
    assert all(o.get("method") is None and not o.get("accounts") for o in relays)
    assert {o.get("method") for o in dests} >= {"store", "retrieve"}
    assert any(o.get("accounts") for o in dests)


def test_the_destination_never_sees_the_client(testnet: Testnet, history: HistoryRecorder,
                                               clients: Clients) -> None:
    """The destination never sees the client's address: every onion request a destination
    answered was relayed to it by another node (a relay observation naming it as the next hop),
    never sent by the client itself."""
    exchange(clients, testnet, "behind relays")
    h = require_privacy(history, clients)
    o = next(r for r in history.results if r.name == "observed_privacy")
    assert o.evidence["destinations"] >= 4 and o.evidence["relayed"] == o.evidence["destinations"]
    if clients.command is None:
        # the built-in client's records: a destination is never the first hop of its path
        for r in h.records:
            for a in r.attempts:
                if a.path and a.destination:
                    assert a.destination["ed25519"] != a.path[0]["ed25519"]


def guards_of(h: History, account: str, after: float = 0.0, ok: bool = True) -> list[str]:
    """Guard node names of the account's onion attempts through its kept paths (not paths built
    for one request) started after ``after``, in order."""
    return [str(h.node_name(a.path[0].get("ed25519"))) for r in h.records if r.account == account
            for a in r.attempts if a.path and a.started_at > after and (a.ok or not ok)
            and ONE_OFF_PATH not in a.actions]


def current_guards(net: Testnet, client: Any) -> set[str]:
    """Node names of the built-in client's guards now (one per path)."""
    by_key = {n.pubkey_ed25519: n.name for n in net.nodes}
    return {by_key[p.guard.ed25519] for p in client.aio.paths.paths}


def was_tested_before(h: History, node: str, before: float) -> bool:
    """The node observed a direct ``info`` request naming no account before ``before`` (the
    guard test production clients make before using a node as a guard)."""
    return any(o.get("channel") == "storage_rpc" and o.get("method") == "info"
               and not o.get("accounts") and float(o.get("ts", 0)) <= before
               for o in h.observations.get(node, []))


@pytest.mark.builtin_client
def test_guards_rotate_as_production_clients_do(testnet: Testnet, history: HistoryRecorder,
                                                clients: Clients) -> None:
    """Guards rotate as production clients rotate them (session-desktop onionPath.ts): a client
    keeps its guards (one per path) for every request while they work, replaces a guard only
    when its path is dropped (the guard became unreachable from the client), tests a new guard with a direct request
    before using it, and keeps the guard of its working path."""
    # session-desktop rebuilds a dropped path from the whole pool at once; the built-in client
    # keeps a failed path's nodes out of new paths for path_quarantine, which on 6 nodes leaves
    # too few for a second path: a short quarantine behaves as desktop does
    alice = clients.builtin(testnet, path_quarantine=1.0, **CLIENT)
    # polls every member: the downed guard may be one, and misses what is stored meanwhile
    bob = clients.builtin(testnet, poll_mode="all", **CLIENT)
    for i in range(6):
        alice.send(bob.session_id, f"steady {i}")
    h = history.collect()
    by_key = {n.pubkey_ed25519: n.name for n in testnet.nodes}
    guards = {by_key[p.guard.ed25519] for p in alice.aio.paths.paths}  # one per path
    used = guards_of(h, alice.session_id)
    assert len(guards) == alice.config.path_count and set(used) <= guards, (guards, used)
    first = sorted(guards)
    # the guard of a path the client stores to Bob through (a path holding Bob's swarm
    # members is never used for him, so the client would never notice its guard gone)
    lost = [str(h.node_name(a.path[0]["ed25519"])) for r in h.sends for a in r.attempts
            if a.method == "store" and a.ok][-1]
    kept = sorted(guards - {lost})
    with history.faults(testnet) as faults:
        # the guard becomes unreachable for the client only (it stays a relay of other paths)
        block = faults.block_clients(lost)
        t0 = block.event.wall if block.event else 0.0
        sent = 6
        # send until the client has replaced the lost guard (it meets it on a request that
        # picks that path), then a few more
        while sent < 30 and current_guards(testnet, alice) == set(first):
            send_like_an_app(alice, bob.session_id, f"rotated {sent}")
            sent += 1
        for _ in range(4):
            send_like_an_app(alice, bob.session_id, f"rotated {sent}")
            sent += 1
    bob.wait_for(count=sent, timeout=30)
    h = history.collect()
    history.require(delivery(h), observed_privacy(h), privacy(h, require_evidence=False))
    after = guards_of(h, alice.session_id, after=t0)
    assert lost not in after, after
    # the path that lost its guard got one new guard; the other path kept its guard
    current = current_guards(testnet, alice)
    new = sorted(current - set(first))
    assert len(new) == 1 and current == set(kept) | set(new), (first, sorted(current))
    # every request after the block went through a guard the client holds now (the new path
    # may never carry a store to Bob: its hops can hold his swarm members)
    assert set(after) <= current, (sorted(current), after)
    g = new[0]
    tests = [a.started_at for r in h.records if r.account == alice.session_id
             for a in r.attempts if a.method == "guard_test" and a.ok
             and h.node_name((a.destination or {}).get("ed25519")) == g]
    assert tests and min(tests) > t0, f"new guard {g} was never tested after the block"
    uses = [a.started_at for r in h.records if r.account == alice.session_id for a in r.attempts
            if a.path and ONE_OFF_PATH not in a.actions and h.node_name(a.path[0]["ed25519"]) == g]
    if uses:
        assert was_tested_before(h, g, min(uses) + 1.0), f"new guard {g} was used untested"
