"""Churn: nodes dying, restarting, joining, leaving and freezing, and the seed going away, lose no
acknowledged message.

Each scenario records its history and asserts with the delivery checker (every ``ok`` send
reaches its recipient once, intact), plus plain asserts on what the churn must have done. Swarm
membership is always read live from the seed (``swarm-of:`` targets): churn re-forms swarms.
Scenarios on the module ``testnet`` leave it as they found it (every node back, ready); those
that change it for good (nodes joined, swarms split) use ``testnet_factory``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from harness.checks import delivery
from harness.client import Client, RetrieveFailed
from harness.faults.families.churn import seed_answers
from harness.network import Testnet
from harness.pytest_plugin import TestnetOwner
from harness.recording import HistoryRecorder
from harness.suites.conftest import Clients
from harness.suites.support import (
    client_settings,
    send_like_an_app,
    sends_during,
    standard_churn,
    store_route,
)
from nodes.protocol.swarm import swarm_for, swarm_space

pytestmark = [pytest.mark.churn, pytest.mark.integration,
              pytest.mark.backends("process", "docker", "swarm")]

#: a request timeout longer than a node's fan-out timeout (5 s): a store whose destination
#: waits for a frozen swarm member still answers in time (production clients wait 10+ s)
FROZEN_CLIENT: dict[str, Any] = {"request_timeout": 7.0}


# -- helpers -------------------------------------------------------------------------------------

def live_swarms(net: Testnet) -> dict[int, list[str]]:
    """Swarm id -> names of its active members, as the seed says now."""
    out: dict[int, list[str]] = {}
    for name, nr in net.refresh().nodes.items():
        if nr.active and nr.swarm_id is not None:
            out.setdefault(nr.swarm_id, []).append(name)
    return {sid: sorted(m) for sid, m in sorted(out.items())}


def swarm_id_of(swarms: dict[int, list[str]], session_id: str) -> int:
    return swarm_for(swarm_space(session_id), sorted(swarms))


def bodies(got: list[Any]) -> set[str]:
    return {m.body for m in got}


class Inbox:
    """The bodies a recipient received over all its waits (``wait_for`` returns only what
    arrived during that call)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.bodies: set[str] = set()

    def wait(self, expected: set[str], timeout: float = 40.0) -> None:
        got = self.client.wait_for(lambda got: self.bodies | bodies(got) >= expected,
                                   timeout=timeout)
        self.bodies |= bodies(got)


def registered(net: Testnet, name: str) -> bool:
    """The seed lists ``name`` (active or not)."""
    return net.refresh().nodes[name].registered


# -- scenarios -----------------------------------------------------------------------------------

def test_churn_kill_swarm_member_mid_stream(testnet: Testnet, history: HistoryRecorder,
                                            clients: Clients) -> None:
    """A swarm member killed in the middle of a stream of sends loses no acknowledged message:
    every send succeeds (at most one app-level resend per message on average) and the recipient
    gets every body.

    The client must notice a dead node it cannot tell from a broken path (504 "Request time
    out" from a live relay, as the storage server answers): on 6 nodes the dead member can be
    on every route a request can take (harness/client/policy.py suspect_routes)."""
    testnet.wait_ready(timeout=60)
    settings = client_settings(testnet)  # outlasts a store waiting for a killed peer
    alice, bob = clients.new(testnet, **settings), clients.new(testnet, **settings)
    expected = {f"churn {i}" for i in range(10)}
    with history.faults(testnet) as faults:
        members = faults.resolve(f"swarm-of:{bob.session_id}")
        for i in range(10):
            if i == 3:
                killed = faults.kill(f"swarm-of:{bob.session_id}:1")
            send_like_an_app(alice, bob.session_id, f"churn {i}")
        bob.wait_for(lambda got: bodies(got) >= expected, timeout=40)
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


def test_churn_rolling_restart_of_every_node(testnet: Testnet, history: HistoryRecorder,
                                             clients: Clients) -> None:
    """Restarting every node one after the other (each back and ready before the next goes)
    loses no acknowledged message, and sends during the roll succeed (app-style resends)."""
    testnet.wait_ready(timeout=60)
    settings = client_settings(testnet)  # outlasts a store waiting for a killed peer
    alice, bob = clients.new(testnet, **settings), clients.new(testnet, **settings)
    expected = {f"before {i}" for i in range(3)}
    for body in sorted(expected):
        send_like_an_app(alice, bob.session_id, body)
    names = [n.name for n in testnet.nodes]
    with history.faults(testnet) as faults:
        for name in names:
            faults.restart(name)
            for j in range(2):  # right after the restart: the node may still be starting
                body = f"during {name} {j}"
                send_like_an_app(alice, bob.session_id, body, tries=4)
                expected.add(body)
            testnet.wait_ready(timeout=30)
    bob.wait_for(lambda got: bodies(got) >= expected, timeout=40)
    h = history.collect()
    history.require(delivery(h))
    assert [(e.action, e.phase, e.nodes) for e in h.events] == [
        ("restart", "apply", [n]) for n in names]
    assert {h.sent[s.op_id]["body"] for s in h.sends if s.ok} == expected
    assert {d["body"] for d in h.deliveries} == expected


@pytest.mark.node_capabilities("join")
def test_churn_nodes_join_until_a_swarm_splits(testnet_factory: TestnetOwner,
                                               history: HistoryRecorder,
                                               clients: Clients) -> None:
    """Nodes joining a swarm until it splits in two: the messages stored before the split
    follow their accounts to the new swarm (nodes push them to its members), and every
    recipient gets all of its messages after the split.

    16 recipients: each account lands in either swarm with probability 1/2, so at least one
    moves (a seed where none does would fail the scenario: 2^-16)."""
    # 4 nodes (an onion path and a destination), swarms of at least 3: 2 more nodes split it
    net = testnet_factory(swarms=1, swarm_size=4, min_swarm_size=3, new_swarm_size=3)
    alice = clients.new(net, **client_settings(net))
    recipients = [clients.new(net, **client_settings(net)) for _ in range(16)]
    before = live_swarms(net)
    assert len(before) == 1, before
    (old_id,) = before
    for i, r in enumerate(recipients):
        send_like_an_app(alice, r.session_id, f"before split {i}")
    with history.faults(net) as faults:
        joined = faults.add_nodes(2)
    after = live_swarms(net)
    assert len(after) == 2, f"4 + 2 nodes did not split into two swarms: {after}"
    new_id = next(sid for sid in after if sid != old_id)
    moved = [i for i, r in enumerate(recipients) if swarm_id_of(after, r.session_id) == new_id]
    assert moved, "no recipient's account moved to the new swarm"
    for i, r in enumerate(recipients):
        send_like_an_app(alice, r.session_id, f"after split {i}")
    for i, r in enumerate(recipients):
        r.wait_for(lambda got, i=i: bodies(got) >= {f"before split {i}", f"after split {i}"},
                   timeout=40)
    h = history.collect()
    history.require(delivery(h))
    assert len(joined.nodes) == 2
    # a moved account's old messages are served by the members of its new swarm
    new_members = {net.node(n).pubkey_ed25519 for n in after[new_id]}
    for i in moved:
        got = [d for d in h.deliveries if d["account"] == recipients[i].session_id
               and d["body"] == f"before split {i}"]
        assert got and all(d["node"] in new_members for d in got), (i, got, after)


def test_churn_decommission_and_deregistration(testnet_factory: TestnetOwner,
                                               history: HistoryRecorder,
                                               clients: Clients) -> None:
    """A member decommissioned at the seed, then another killed until the seed deregisters it:
    swarms re-form each time (and again when both come back) and no acknowledged message is
    lost."""
    net = testnet_factory(swarms=2, swarm_size=3)
    settings = client_settings(net)  # outlasts a store waiting for a killed peer
    alice, bob = clients.new(net, **settings), clients.new(net, **settings)
    inbox = Inbox(bob)
    expected: set[str] = set()

    def stream(label: str, n: int = 3) -> None:
        for i in range(n):
            send_like_an_app(alice, bob.session_id, f"{label} {i}")
            expected.add(f"{label} {i}")
        inbox.wait(expected)

    stream("before")
    layouts = [live_swarms(net)]
    with history.faults(net) as faults:
        dec = faults.decommission(f"swarm-of:{bob.session_id}:1")
        gone = dec.nodes[0]
        layouts.append(net.wait_for(
            lambda: (lambda s: s if all(gone not in m for m in s.values()) else None)(
                live_swarms(net)), timeout=20,
            what=f"swarms re-formed without the decommissioned {gone}"))
        stream("decommissioned")
        killed = faults.kill(f"swarm-of:{bob.session_id}:1", exclude=[gone])
        dead = killed.nodes[0]
        net.wait_for(lambda: not registered(net, dead), timeout=silence_limit(net, dead) + 24,
                     what=f"the seed deregistered the killed {dead}")
        layouts.append(live_swarms(net))
        stream("deregistered")
    net.wait_ready(timeout=60)  # recommissioned, and the killed node registered again
    layouts.append(live_swarms(net))
    stream("restored", 2)
    h = history.collect()
    history.require(delivery(h))
    assert [(e.action, e.phase) for e in h.events] == [
        ("decommission", "apply"), ("kill", "apply"), ("kill", "remove"),
        ("decommission", "remove")]
    members = [sorted(n for m in lay.values() for n in m) for lay in layouts]
    assert gone not in members[1] and gone not in members[2] and dead not in members[2]
    assert members[3] == sorted(n.name for n in net.nodes)
    assert {d["body"] for d in h.deliveries} >= expected


def test_churn_seed_down_for_a_while(testnet: Testnet, history: HistoryRecorder,
                                     clients: Clients) -> None:
    """With the seed stopped for longer than a proof timeout, nodes and clients keep working
    from the lists they have (sends and receives succeed); once it is back, nothing was
    deregistered for the silence, proofs and new registrations work and new clients bootstrap.
    """
    testnet.wait_ready(timeout=60)
    settings = client_settings(testnet)  # outlasts a store waiting for a killed peer
    alice, bob = clients.new(testnet, **settings), clients.new(testnet, **settings)
    inbox = Inbox(bob)
    expected = {"with the seed"}
    send_like_an_app(alice, bob.session_id, "with the seed")
    inbox.wait(expected)  # both clients have their node lists now
    down_for = testnet.topology.proof_timeout + 2
    heights = {n.name: registration_height(testnet, n.name) for n in testnet.nodes}
    with history.faults(testnet) as faults:
        stopped = faults.apply("stop_seed")
        since = time.monotonic()
        assert not seed_answers(testnet.seed_url)
        i = 0
        while i < 4 or time.monotonic() - since < down_for:  # a steady stream while it is down
            send_like_an_app(alice, bob.session_id, f"seedless {i}")
            expected.add(f"seedless {i}")
            i += 1
            inbox.wait(expected)
        assert not seed_answers(testnet.seed_url)
        faults.remove(stopped)
    testnet.wait_ready(timeout=60)  # every node registered and in its swarm again
    # nobody was deregistered for the silence (a restarted seed restarts every proof age)
    assert {n.name: registration_height(testnet, n.name) for n in testnet.nodes} == heights
    # a new registration: the seed forgets a node, whose next proofs register it again
    name = testnet.nodes[0].name
    before = registration_height(testnet, name)
    testnet.seed_admin("deregister", {"pubkey_ed25519": testnet.node(name).pubkey_ed25519})
    testnet.wait_for(lambda: (registration_height(testnet, name) or 0) > (before or 0),
                     timeout=30, what=f"{name} registered again")
    testnet.wait_ready(timeout=60)
    carol = clients.new(testnet, **client_settings(testnet))  # bootstraps from the restarted seed
    send_like_an_app(carol, bob.session_id, "after the seed")
    expected.add("after the seed")
    inbox.wait(expected)
    h = history.collect()
    history.require(delivery(h))
    assert [(e.action, e.phase) for e in h.events] == [("stop_seed", "apply"),
                                                       ("stop_seed", "remove")]
    assert {h.sent[s.op_id]["body"] for s in h.sends if s.ok} == expected


def silence_limit(net: Testnet, name: str) -> float:
    """Seconds of silence after which the seed deregisters ``name``: the proof timeout for a
    node that sends proofs (ours), the OxenMQ timeout (90 s) for one that joined over OxenMQ
    (the real server)."""
    state = net.seed_admin("state", method="GET")
    key = net.node(name).pubkey_ed25519
    liveness = next((n.get("liveness") for n in state.get("nodes", [])
                     if n.get("pubkey_ed25519") == key), "proof")
    return float(state["oxenmq_timeout"] if liveness == "oxenmq" else state["proof_timeout"])


def registration_height(net: Testnet, name: str) -> int | None:
    state = net.seed_admin("state", method="GET")
    key = net.node(name).pubkey_ed25519
    for n in state.get("nodes", []):
        if n.get("pubkey_ed25519") == key:
            h = n.get("registration_height")
            return h if isinstance(h, int) else None
    return None


@pytest.mark.builtin_client
def test_churn_pause_and_unpause_a_swarm_member(testnet_factory: TestnetOwner,
                                                history: HistoryRecorder,
                                                clients: Clients) -> None:
    """A frozen swarm member (paused, not dead, still registered) is routed around: sends
    succeed without it, the recipient gets everything, and after it is unpaused it answers
    retrieves again with what it held.

    Production guarantees delivery through the other members only: the storage server has no
    anti-entropy, a member that missed stores while frozen is not guaranteed to get them later
    (ours store them only if the fan-out requests queued while it was frozen are still
    processed, or when a swarm change makes members push). So the messages stored during the
    freeze are asserted on the recipient, not on the unpaused node. The seed's proof timeout is
    raised so that the freeze does not become a deregistration (that is the decommission
    scenario)."""
    net = testnet_factory(swarms=2, swarm_size=3, proof_timeout=300.0)
    alice = clients.builtin(net, **FROZEN_CLIENT)
    bob = clients.builtin(net, **FROZEN_CLIENT)
    inbox = Inbox(bob)
    expected = {f"before {i}" for i in range(2)}
    for body in sorted(expected):
        send_like_an_app(alice, bob.session_id, body)
    inbox.wait(expected)
    with history.faults(net) as faults:
        paused = faults.pause(f"swarm-of:{bob.session_id}:1")
        frozen = paused.nodes[0]
        key = net.node(frozen).pubkey_ed25519
        for i in range(3):
            send_like_an_app(alice, bob.session_id, f"frozen {i}")
            expected.add(f"frozen {i}")
        faults.remove(paused)
    inbox.wait(expected)
    # every member read afresh by a second, unrecorded client of bob's account (its messages
    # would count as duplicate deliveries)
    records: list[Any] = []
    with Client(net.seed_url, bob.account, sink=records, poll_mode="all",
                **FROZEN_CLIENT) as check:
        counts = net.wait_for(
            lambda: (lambda c: c if key in c else None)(polled(check, records)),
            timeout=30, poll=0.5, what=f"{frozen} answering retrieves again")
    h = history.collect()
    history.require(delivery(h))
    frozen_at, thawed_at = (e.wall for e in h.events)
    during = [s for s in h.sends if s.ok and frozen_at < s.started_at < thawed_at]
    assert len(during) == 3
    for s in during:  # routed around: stored and confirmed by the other members
        assert s.destination is not None and s.destination["ed25519"] != key
        assert key not in store_route(s)
        assert not s.swarm_results.get(key, {}).get("ok"), s.swarm_results
    assert counts[key] >= 2, counts  # it still serves what it held before the freeze


def polled(client: Client, records: list[Any]) -> dict[str, int]:
    """Poll every member of the client's swarm once: ed25519 -> messages each one returned
    (nodes that did not answer are missing)."""
    try:
        client.receive(poll="all")
    except RetrieveFailed:
        return {}
    rec = [r for r in records if r.kind == "receive"][-1]
    return {p["ed25519"]: p["count"] for p in rec.polled}


def test_churn_standard_schedule_keeps_delivering(testnet: Testnet, history: HistoryRecorder,
                                                  clients: Clients) -> None:
    """Under the standard churn schedule (seeded from the testnet seed: every 10 s one node,
    never the last live member of a swarm, is killed and started again 10 s later, long enough
    to be deregistered and to register again) for 2 minutes, with a steady stream of sends, at
    least 99.9 % of the acknowledged sends are delivered."""
    testnet.wait_ready(timeout=60)
    settings = client_settings(testnet)  # outlasts a store waiting for a killed peer
    alice, bob = clients.new(testnet, **settings), clients.new(testnet, **settings)
    swarms = live_swarms(testnet)
    schedule = standard_churn(testnet, 120.0, swarms)
    with history.faults(testnet) as faults:
        sends = sends_during(schedule, faults, alice, bob.session_id)
    acked, failed = sends.acked, sends.failed
    testnet.wait_ready(timeout=60)
    bob.wait_for(lambda got: bodies(got) >= acked, timeout=60)
    h = history.collect()
    check = delivery(h)
    history.check(check)
    assert sends.run is not None and sends.run.ok, (
        sends.run.errors if sends.run else "the schedule did not run")
    ok_sends = [s for s in h.sends if s.ok]
    lost = len(check.evidence.get("lost", [])) if isinstance(check.evidence, dict) else 0
    ratio = (len(ok_sends) - lost) / len(ok_sends)
    print(f"standard churn: {len(schedule.steps)} kills, {len(ok_sends)} acknowledged sends "
          f"({failed} gave up after app resends), {ratio:.4%} delivered")
    assert ratio >= 0.999, f"{ratio:.4%} of {len(ok_sends)} acknowledged sends delivered: {check}"
    assert check.ok, str(check)
    assert len(schedule.steps) == 12 and len(acked) >= 60, (len(schedule.steps), len(acked))
    assert failed <= len(acked) // 20, f"{failed} sends failed after app resends, {len(acked)} ok"
