"""Partition scenarios: node-to-node links cut inside a swarm while clients still reach every
node, asserted only with the guarantees production gives: a message is acknowledged by the
members that signed its hash (the store's ``swarm_results``), it is retrievable from each of
them, and a recipient polling every member of its swarm receives every acknowledged message.

How a partition works on our nodes (docs/faults.md): every node reaches a peer at the address
the seed lists (the peer's Toxiproxy proxy) unless it was given a *peer override*;
``faults.partition(A, B)`` creates a disabled link proxy for every pair across the sides, in
both directions, and points the nodes at them, so swarm fan-out and onion relays between the
sides are refused while clients (which use the seed's addresses) reach every node. The nodes
here are on a 2 × 4 testnet so a swarm can be cut 2 | 2 as well as 1 | 3.

The client is the built-in one configured as production clients behave: a store counts as
acknowledged once the member it was sent to answers with its signature
(``store_confirmations=1``); the harness's default majority rule cannot be met by a swarm cut
in halves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness import rpc
from harness.checks import delivery
from harness.client import Account, SessionClient, StoreFailed
from harness.client.records import SendRecord
from harness.network import Testnet
from harness.recording import HistoryRecorder
from harness.suites.conftest import Clients
from harness.suites.support import CLIENT, client_settings, module_testnet, swarm_names
from nodes.protocol.signing import retrieve_message, sign_request

pytestmark = [pytest.mark.partitions, pytest.mark.integration, pytest.mark.builtin_client,
              pytest.mark.node_capabilities("partition"),
              pytest.mark.backends("process", "docker", "swarm")]

#: production clients take the answering member's signed hash as the acknowledgement
PRODUCTION = {**CLIENT, "store_confirmations": 1}
#: the recipient polls every member, and keeps polling one that some relays cannot reach (the
#: client's small-network suspect rule would drop a member whose routes through the cut failed
#: twice, although clients reach it)
RECIPIENT = {**CLIENT, "drop_route_suspects": False}


@pytest.fixture(scope="module")
def testnet4(request: pytest.FixtureRequest, testnet_backend: str) -> Iterator[Testnet]:
    """2 swarms × 4 nodes, shared by the module's scenarios."""
    yield from module_testnet(request, testnet_backend, swarms=2, swarm_size=4)


def stored_at(net: Testnet, node: str, account: Account) -> set[str]:
    """Hashes of ``account``'s namespace-0 messages that ``node`` returns to a signed retrieve
    (a direct storage RPC: what the node holds, whoever asks through whichever path)."""
    url = net.node(node).storage_url
    identity = account.identity

    async def call() -> set[str]:
        out: set[str] = set()
        last = ""
        async with rpc.new_session() as s:
            for _page in range(50):
                ts = int(time.time() * 1000)
                status, body = await rpc.storage_rpc(s, url, "retrieve", {
                    "pubkey": account.session_id, "namespace": 0, "last_hash": last,
                    "timestamp": ts, "signature": sign_request(identity, retrieve_message(0, ts)),
                    "pubkey_ed25519": identity.ed25519_hex})
                assert status == 200, f"retrieve at {node}: {status} {body!r}"
                msgs = body.get("messages", []) if isinstance(body, dict) else []
                out.update(m["hash"] for m in msgs)
                if not (msgs and body.get("more")):
                    return out
                last = msgs[-1]["hash"]
        return out

    return rpc.run_sync(call())


def acked_by(net: Testnet, rec: SendRecord) -> set[str]:
    """Names of the swarm members that acknowledged (signed) the send's message."""
    names = {n.pubkey_ed25519: n.name for n in net.nodes}
    return {names.get(k, k) for k, r in rec.swarm_results.items() if r.get("ok")}


def receive_all(client: Any, sends: list[SendRecord], timeout: float = 40) -> None:
    """Poll until ``client`` received every message of ``sends`` (by hash: a try the client
    gave up on may have been stored too, and arrives as an extra message)."""
    want = {s.message_hash for s in sends}
    client.wait_for(lambda got: want <= {m.hash for m in got}, timeout=timeout)


def assert_retrievable_from_acknowledgers(net: Testnet, sends: list[SendRecord],
                                          account: Account) -> None:
    holders = {n: stored_at(net, n, account) for s in sends for n in acked_by(net, s)}
    missing = [(s.op_id, n) for s in sends for n in acked_by(net, s)
               if s.message_hash not in holders[n]]
    assert not missing, f"acknowledged messages not retrievable from their acknowledgers: {missing}"


def test_swarm_cut_in_two_and_healed(testnet4: Testnet, history: HistoryRecorder,
                                     clients: Clients) -> None:
    """A swarm cut in two halves (no node-to-node traffic between them, clients reach all):
    every acknowledged message is acknowledged by one half only, is retrievable from each member
    that acknowledged it, and a recipient polling all members receives all of them; after the
    cut heals, new messages are acknowledged by the whole swarm, and everything is delivered
    and still retrievable from its acknowledgers.

    Two senders: one knowing the whole swarm (its stores land on either half; once a path
    through the cut failed it tends to keep to one), and one whose cached swarm of the
    recipient lists one half only (a stale cache, planted), once for each half, so that both
    halves hold messages the other lacks."""
    net = testnet4
    # a store whose destination forwards across the cut waits for its peers (the real server
    # answers after its forward timeout): the client's request timeout allows for it
    alice = clients.builtin(net, **client_settings(net, PRODUCTION))
    carol = clients.builtin(net, **client_settings(net, PRODUCTION))
    bob = clients.builtin(net, poll_mode="all", **client_settings(net, RECIPIENT))
    members = sorted(swarm_names(net, alice, bob.session_id))
    assert len(members) >= 4  # 4 here; more where the groups of --nodes make bigger swarms
    snodes = {m.ed25519: m for m in carol.get_swarm(bob.session_id)}
    with history.faults(net) as faults:
        half = sorted(faults.resolve(f"swarm-of:{bob.session_id}:2"))
        other = sorted(set(members) - set(half))
        sides = {tuple(half), tuple(other)}
        cut = faults.partition(half, other)
        during = [resend(alice, bob.session_id, f"cut {i}") for i in range(6)]
        for side in (half, other):
            # a send whose last relay is across the cut fails, and the client then re-reads the
            # swarm and may store on the other half: plant again and send until this half has
            # taken one (2 sends at least, 6 at most)
            for i in range(6):
                plant_swarm(carol, bob.session_id,
                            [snodes[net.node(n).pubkey_ed25519] for n in side])
                during.append(resend(carol, bob.session_id, f"cut {side[0]} {i}"))
                if i >= 1 and any(acked_by(net, s) == set(side) for s in during[-i - 1:]):
                    break
        receive_all(bob, during)
        assert_retrievable_from_acknowledgers(net, during, bob.account)
        h = history.collect()
        history.require(delivery(h))
        faults.heal()
        after = [resend(alice, bob.session_id, f"healed {i}") for i in range(4)]
        receive_all(bob, after)
    h = history.collect()
    history.require(delivery(h))
    assert len(cut.links) == 2 * len(half) * len(other)
    # the cut was real: no message was acknowledged across it, and both halves took some
    assert {tuple(sorted(acked_by(net, s))) for s in during} == sides, \
        [(s.op_id, sorted(acked_by(net, s))) for s in during]
    assert all(acked_by(net, s) == set(members) for s in after), \
        [(s.op_id, sorted(acked_by(net, s))) for s in after]
    assert_retrievable_from_acknowledgers(net, during + after, bob.account)


def plant_swarm(client: Any, session_id: str, members: list[Any]) -> None:
    """Make ``client``'s cached swarm of ``session_id`` list only ``members`` (Snodes)."""

    async def plant(c: SessionClient) -> None:
        c.set_cached_swarm(session_id, members)

    client.run(plant)


def test_node_isolated_from_its_swarm_peers(testnet4: Testnet, history: HistoryRecorder,
                                            clients: Clients) -> None:
    """A swarm member cut off from its swarm peers only (it still reaches, and is reached by,
    clients and the other nodes) keeps the guarantees: what it acknowledged alone is
    retrievable from it, what the other members acknowledged is retrievable from them, no
    acknowledgement spans the cut, and the recipient polling all members receives everything;
    after the heal, new messages are acknowledged by the whole swarm and delivered.

    Two senders: one knowing the whole swarm (its stores land on any member, and it avoids the
    isolated one once a path through the cut failed), and one whose cached swarm of the
    recipient lists only the isolated member (a stale cache, planted), so that some messages
    usually exist on the isolated member alone."""
    net = testnet4
    # a store whose destination forwards across the cut waits for its peers (the real server
    # answers after its forward timeout): the client's request timeout allows for it
    alice = clients.builtin(net, **client_settings(net, PRODUCTION))
    carol = clients.builtin(net, **client_settings(net, PRODUCTION))
    bob = clients.builtin(net, poll_mode="all", **client_settings(net, RECIPIENT))
    members = sorted(swarm_names(net, alice, bob.session_id))
    with history.faults(net) as faults:
        isolated = faults.resolve(f"swarm-of:{bob.session_id}:1")[0]
        peers = [m for m in members if m != isolated]
        key = net.node(isolated).pubkey_ed25519
        plant_swarm(carol, bob.session_id,
                    [m for m in carol.get_swarm(bob.session_id) if m.ed25519 == key])
        cut = faults.partition(isolated, peers)
        during = [resend(alice, bob.session_id, f"isolated {i}") for i in range(6)]
        alone: list[SendRecord] = []
        for i in range(2):  # a path's last relay may be a peer (cut): resend as an app does
            alone.append(resend(carol, bob.session_id, f"alone {i}"))
        receive_all(bob, during + alone)
        assert_retrievable_from_acknowledgers(net, during + alone, bob.account)
        # what the isolated member alone acknowledged did not cross the cut to its peers
        held = {p: stored_at(net, p, bob.account) for p in peers}
        history.require(delivery(history.collect()))
        # it is reachable by clients: a direct request to it is answered
        info: Any = rpc.run_sync(_info(net.node(isolated).storage_url))
        assert info[0] == 200, info
        faults.heal()
        after = [resend(alice, bob.session_id, f"rejoined {i}") for i in range(4)]
        receive_all(bob, after)
    h = history.collect()
    history.require(delivery(h))
    assert sorted(cut.result["side_b"]) == peers and len(cut.links) == 2 * len(peers)
    # every store: acknowledged by the peers together, or by the isolated member alone (carol
    # stores there first; when its routes through the cut fail it re-reads the swarm and may
    # store on the peers: both sides are legitimate, an acknowledgement across the cut is not)
    assert all(acked_by(net, s) in (set(peers), {isolated}) for s in during + alone), \
        [(s.op_id, sorted(acked_by(net, s))) for s in during + alone]
    only_isolated = [s for s in during + alone if acked_by(net, s) == {isolated}]
    # what the isolated member alone acknowledged did not reach its peers during the cut
    assert not [s.op_id for s in only_isolated for p in peers if s.message_hash in held[p]]
    assert all(acked_by(net, s) == set(members) for s in after), \
        [(s.op_id, sorted(acked_by(net, s))) for s in after]
    assert_retrievable_from_acknowledgers(net, during + alone + after, bob.account)


def resend(client: Any, to: str, body: str, tries: int = 3) -> SendRecord:
    """Send; resend if the client gives up, as a messenger app's send job does (the failed
    tries stay in the history; a path whose relays straddle the cut fails, and a client's 4
    attempts can all meet such paths)."""
    for n in range(1, tries + 1):
        try:
            rec: SendRecord = client.send(to, body)
            return rec
        except StoreFailed:
            if n == tries:
                raise
    raise AssertionError("unreachable")


async def _info(url: str) -> tuple[int, Any]:
    async with rpc.new_session() as s:
        return await rpc.storage_rpc(s, url, "info", {})
