"""Client behaviour against the in-process fake network (pure: no processes, no sockets).

The fake network peels real onion layers and answers real storage RPCs, so these tests cover the
client's failure handling (421, Next node not found, dead guards, timeouts, clock offset,
stores that are dropped) and its operation records deterministically.
"""

from __future__ import annotations

import base64
import random

import pytest

from harness.client import (
    ONE_OFF_PATH,
    Account,
    BootstrapError,
    Client,
    OperationRecord,
    ReceiveRecord,
    SendRecord,
    SessionClient,
    StoreFailed,
    Timeout,
)
from harness.client.fakenet import FakeNetwork
from harness.client.paths import OnionPath
from nodes.protocol.onion import ENC_XCHACHA20

pytestmark = pytest.mark.unit


def check_records(records: list[OperationRecord]) -> None:
    """Invariants every record must satisfy."""
    for rec in records:
        assert rec.ended_at is not None and rec.outcome in ("ok", "error")
        for a in rec.attempts:
            if a.path:
                assert len(a.path) == 3
                assert len({h["ip"] for h in a.path}) == 3
                assert a.destination is not None
                assert a.destination["ed25519"] not in {h["ed25519"] for h in a.path}, \
                    "destination on its own onion path"


def make(net: FakeNetwork, records: list, account: Account | None = None, seed: int = 7, **kw) -> SessionClient:
    kw.setdefault("retry_backoff", 0.001)
    return SessionClient(net.seed_url, account or Account.generate(), transport=net, sink=records,
                         rng=random.Random(seed), **kw)


def member_names(net: FakeNetwork, session_id: str) -> set[str]:
    return {n.ed25519 for n in net.swarm_of(session_id)}


async def test_delivery_both_ways_with_records():
    net = FakeNetwork()
    records: list = []
    alice_acct, bob_acct = Account.generate(), Account.generate()
    async with make(net, records, alice_acct, 1) as alice, make(net, records, bob_acct, 2) as bob:
        sent = await alice.send(bob.session_id, "hi bob", display_name="Alice")
        assert isinstance(sent, SendRecord) and sent.ok
        assert sent.destination["ed25519"] in member_names(net, bob.session_id)
        assert sent.confirmations == 3 and sent.message_hash
        assert sent.recipient == bob.session_id and sent.account == alice.session_id
        assert sent.ttl_ms == 14 * 24 * 3600 * 1000 and sent.namespace == 0
        assert [a.method for a in sent.attempts][-1] == "store"
        assert all(sent.message_hash in net.stored(bob.session_id)[n.name] for n in net.swarm_of(bob.session_id))

        got = await bob.wait_for(count=1, timeout=5)
        assert [(m.sender, m.body, m.hash, m.display_name) for m in got] == [
            (alice.session_id, "hi bob", sent.message_hash, "Alice")]

        back = await bob.send(alice.session_id, "hi alice", enc_type=ENC_XCHACHA20)
        assert back.enc_type == ENC_XCHACHA20
        assert all(a.enc_type == ENC_XCHACHA20 for a in back.attempts if a.path)
        got = await alice.wait_for(count=1, timeout=5)
        assert got[0].sender == bob.session_id and got[0].body == "hi alice"

        recv = [r for r in records if isinstance(r, ReceiveRecord) and r.new_hashes]
        assert {h for r in recv for h in r.new_hashes} == {sent.message_hash, back.message_hash}
        assert all(r.polled and r.destination for r in recv)
    check_records(records)


async def test_receive_deduplicates_across_polls_and_nodes():
    net = FakeNetwork()
    records: list = []
    async with make(net, records) as alice, make(net, records, seed=3, poll_mode="all") as bob:
        s = await alice.send(bob.session_id, "once")
        first = await bob.receive()
        assert [m.hash for m in first] == [s.message_hash]
        rec = records[-1]
        assert len(rec.polled) == 3  # all members polled
        assert rec.new_hashes == [s.message_hash]
        assert rec.duplicate_hashes == [s.message_hash] * 2  # the other members had it too
        assert await bob.receive() == []  # last_hash per node: nothing new
        assert all(p["last_hash_before"] == s.message_hash for p in records[-1].polled)


async def test_offline_recipient_fetches_later():
    net = FakeNetwork()
    records: list = []
    bob_acct = Account.generate()
    async with make(net, records) as alice:
        hashes = [(await alice.send(bob_acct.session_id, f"m{i}")).message_hash for i in range(3)]
    async with make(net, records, bob_acct, 9) as bob:
        got = await bob.wait_for(count=3, timeout=5)
    assert sorted(m.hash for m in got) == sorted(hashes)
    assert [m.body for m in got] == ["m0", "m1", "m2"]


async def test_stale_swarm_cache_gets_421_then_succeeds():
    net = FakeNetwork()
    records: list = []
    bob = Account.generate()
    right = net.swarm_of(bob.session_id)
    wrong = [n for n in net.nodes if n not in right]
    async with make(net, records) as alice:
        alice.set_cached_swarm(bob.session_id, [n.snode for n in wrong])
        rec = await alice.send(bob.session_id, "after 421")
    assert rec.ok
    stores = [a for a in rec.attempts if a.method == "store"]
    assert stores[0].status == 421 and not stores[0].ok
    assert stores[0].destination["ed25519"] in {n.ed25519 for n in wrong}
    assert "swarm_replaced:3" in stores[0].actions
    assert stores[-1].ok and stores[-1].destination["ed25519"] in {n.ed25519 for n in right}
    assert {m.ed25519 for m in alice.cached_swarm(bob.session_id)} == {n.ed25519 for n in right}
    check_records(records)


async def test_next_node_not_found_on_path_drops_node_and_repairs_path():
    net = FakeNetwork(swarms=3)
    records: list = []
    async with make(net, records, seed=11) as alice:
        await alice.bootstrap()
        bob = Account.generate()
        members = {n.ed25519 for n in net.swarm_of(bob.session_id)}
        # a relay that the network no longer knows, on every path (middle hop = hop 1)
        victims = {p.hops[1].ed25519 for p in alice.paths.paths}
        for v in victims:
            net.node(v).up = True
            net.unlisted.add(net.node(v).name)
        rec = await alice.send(bob.session_id, "through a repaired path")
        assert rec.ok
        failed = [a for a in rec.attempts if a.error_kind == "path"]
        assert failed, "expected a Next node not found attempt"
        first = failed[0]
        assert first.http_status == 502 and "Next node not found" in first.error
        assert first.failed_node["ed25519"] in victims
        assert any(x.startswith("drop_node:") for x in first.actions)
        assert any(x.startswith("path_replaced:") or x.startswith("path_dropped:") for x in first.actions)
        for v in victims - members:
            if any(v == a.failed_node["ed25519"] for a in failed):
                assert v not in alice.pool
                assert all(not p.contains(v) for p in alice.paths.paths)
    check_records(records)


async def test_destination_not_found_drops_it_and_uses_another_member():
    net = FakeNetwork(swarms=3)
    records: list = []
    async with make(net, records, seed=5) as alice:
        await alice.bootstrap()
        in_use = alice.paths.nodes_in_use()
        while True:  # a recipient whose swarm has a member on neither path
            bob = Account.generate()
            swarm = net.swarm_of(bob.session_id)
            free = [n for n in swarm if n.ed25519 not in in_use]
            if free:
                break
        alice.set_cached_swarm(bob.session_id, [n.snode for n in swarm])
        gone = free[0]
        net.unlisted.add(gone.name)
        for _ in range(4):  # enough sends that one picks the vanished member
            rec = await alice.send(bob.session_id, "x")
            assert rec.ok and rec.destination["ed25519"] != gone.ed25519
        hit = [a for r in records if isinstance(r, SendRecord) for a in r.attempts
               if a.failed_node and a.failed_node["ed25519"] == gone.ed25519]
        assert hit and hit[0].error_kind == "destination"
        assert gone.ed25519 not in alice.pool
        assert gone.ed25519 not in {m.ed25519 for m in alice.cached_swarm(bob.session_id)}


async def test_dead_guards_retire_paths_and_client_rebuilds():
    net = FakeNetwork(swarms=3)
    records: list = []
    async with make(net, records, seed=4) as alice:
        await alice.bootstrap()
        old = list(alice.paths.paths)
        dead = {p.guard.ed25519 for p in old}
        for ed in dead:
            net.node(ed).up = False
        bob = Account.generate()
        rec = await alice.send(bob.session_id, "after guard death")
        assert rec.ok
        connect_fail = [a for a in rec.attempts if a.error_kind == "connect" and a.method != "guard_test"]
        assert connect_fail, "the first request must have hit a dead guard"
        assert connect_fail[0].failed_node["ed25519"] in dead
        assert any(x.startswith("drop_path:") for x in connect_fail[0].actions)
        assert len(alice.paths) == 2
        assert not ({p.guard.ed25519 for p in alice.paths.paths} & dead)
        assert all(p.id not in {o.id for o in old} for p in alice.paths.paths)
        ok = [a for a in rec.attempts if a.ok and a.method == "store"][0]
        assert ok.path[0]["ed25519"] not in dead
    check_records(records)


async def test_relay_timeouts_strike_the_path_until_dropped():
    net = FakeNetwork(swarms=3)
    records: list = []
    async with make(net, records, seed=8, max_attempts=6) as alice:
        await alice.bootstrap()
        bad = alice.paths.paths[0]
        net.node(bad.hops[1].ed25519).drop_relays = True  # 504 Request time out
        bob = Account.generate()
        for i in range(6):
            assert (await alice.send(bob.session_id, f"m{i}")).ok
        timeouts = [a for r in records for a in r.attempts if a.http_status == 504]
        relay = bad.hops[1].ed25519
        assert timeouts, "no request went through the path with the dropping relay"
        # every 504 came from a path relaying through the dropping node
        assert all(relay in [h["ed25519"] for h in a.path[:-1]] for a in timeouts)
        on_bad = [a for a in timeouts if a.path[0]["ed25519"] == bad.guard.ed25519]
        assert all(f"strike_path:{bad.id}" in a.actions for a in on_bad)
        if len(on_bad) >= 3:
            assert alice.paths.get(bad.id) is None
            assert f"drop_path:{bad.id}" in on_bad[2].actions
        else:
            assert alice.paths.get(bad.id).failures == len(on_bad)
        # a timed-out request is retried on the other path in the same operation
        for r in records:
            if any(a.http_status == 504 for a in r.attempts):
                assert r.ok


async def test_retry_goes_around_a_failed_path_when_no_other_fits():
    # one path only: after it fails, the retry must not go through the same relays again
    net = FakeNetwork(swarms=3)
    records: list = []
    async with make(net, records, seed=8, max_attempts=4, path_count=1) as alice:
        await alice.bootstrap()
        (bad,) = alice.paths.paths
        net.node(bad.hops[1].ed25519).drop_relays = True  # 504 Request time out
        bob = Account.generate()
        rec = await alice.send(bob.session_id, "around")
    first, second = rec.attempts[0], rec.attempts[1]  # (swarm lookup or store) then its retry
    assert first.http_status == 504 and [h["ed25519"] for h in first.path] == [h.ed25519 for h in bad.hops]
    assert second.ok and second.method == first.method
    assert not {h.ed25519 for h in bad.hops} & {h["ed25519"] for h in second.path}
    assert rec.ok and rec.details["fresh_paths"] >= 1 and len(rec.attempts) == 3
    # the retry's path is marked as built for that request only; attempts on the kept path not
    assert ONE_OFF_PATH in second.actions and ONE_OFF_PATH not in first.actions


async def kill_and_fail_guard_test(net: FakeNetwork, client: SessionClient, ed25519: str):
    """Take a node down and let the client learn it as it would from a guard candidate: a
    refused direct connection. Returns the probe operation."""
    net.node(ed25519).up = False
    op = client._start(OperationRecord(op_id="probe", kind="bootstrap"))
    assert not await client._test_guard(op, client.pool.get(ed25519))
    return op


async def test_node_that_fails_a_guard_test_stays_out_of_new_paths():
    net = FakeNetwork(swarms=3)
    records: list = []
    async with make(net, records, seed=8) as alice:
        await alice.bootstrap()
        dead = alice.paths.paths[0].hops[1]
        op = await kill_and_fail_guard_test(net, alice, dead.ed25519)
        for _ in range(10):  # new random paths, again and again: never through the dead node
            for p in list(alice.paths.paths):
                alice.paths.remove(p)
            await alice._ensure_paths(op)
            assert len(alice.paths.paths) == 2
            assert all(dead.ed25519 not in {h.ed25519 for h in p.hops} for p in alice.paths.paths)
        rec = await alice.send(Account.generate().session_id, "around the dead node")
        assert rec.ok and all(dead.ed25519 not in {h["ed25519"] for h in a.path} for a in rec.attempts)


async def test_unreachable_member_is_not_chosen_as_destination():
    net = FakeNetwork(swarms=3)
    records: list = []
    bob = Account.generate()
    async with make(net, records, seed=5) as alice:
        await alice.bootstrap()
        dead = net.swarm_of(bob.session_id)[0]
        await kill_and_fail_guard_test(net, alice, dead.ed25519)
        sends = [await alice.send(bob.session_id, f"m{i}") for i in range(8)]
    dests = [a.destination["ed25519"] for s in sends for a in s.attempts if a.method == "store"]
    # (a path built before it died may still relay through it: a retry, but never towards it)
    assert all(s.ok for s in sends) and len(dests) >= 8 and dead.ed25519 not in dests


async def test_too_small_pool_is_read_again_from_the_seed():
    net = FakeNetwork(swarms=2)
    records: list = []
    bob = Account.generate()
    async with make(net, records, seed=3) as alice:
        await alice.bootstrap()
        members = {n.ed25519 for n in net.swarm_of(bob.session_id)}
        # strikes (as after a churn burst) left 3 nodes: no path of 3 plus a destination
        keep = sorted(members)[:1] + sorted({n.ed25519 for n in net.nodes} - members)[:2]
        for n in net.nodes:
            if n.ed25519 not in keep:
                alice.policy.drop_node(n.ed25519, "struck out", None)  # as the failure rules do
        assert len(alice.pool) == 3
        rec = await alice.send(bob.session_id, "after a refresh")
    assert rec.ok
    assert [a.method for a in rec.attempts].count("get_n_service_nodes") == 1
    assert len(alice.pool) == len(net.nodes)


async def test_skewed_network_clock_is_corrected_from_t():
    skew = 5 * 60 * 1000  # every node 5 minutes ahead: signatures outside ±60 s without correction
    net = FakeNetwork()
    for n in net.nodes:
        n.clock_offset_ms = skew
    records: list = []
    async with make(net, records) as alice, make(net, records, seed=3) as bob:
        sent = await alice.send(bob.session_id, "skewed")
        assert abs(alice.clock.offset_ms + skew) < 2000
        got = await bob.wait_for(count=1, timeout=5)
        assert got[0].hash == sent.message_hash
        assert abs(got[0].timestamp_ms - (sent.started_at * 1000 + skew)) < 5000
    assert all(abs(r.clock_offset_ms + skew) < 2000 for r in records if r.kind in ("send", "receive"))
    assert not [a for r in records for a in r.attempts if a.status == 406]


async def test_clock_jump_gives_406_then_resync_and_retry():
    net = FakeNetwork()
    records: list = []
    async with make(net, records, poll_mode="one") as bob:
        assert await bob.receive() == []
        for n in net.nodes:
            n.clock_offset_ms = 10 * 60 * 1000  # the network's clock jumps 10 minutes
        assert await bob.receive() == []
        rec = records[-1]
        assert rec.ok
        statuses = [a.status for a in rec.attempts if a.method == "retrieve"]
        assert statuses[0] == 406 and statuses[-1] == 200
        info = [a for a in rec.attempts if a.method == "info"]
        assert info and info[0].actions[0].startswith("clock_offset:")
        assert abs(rec.clock_offset_ms + 600_000) < 2000


async def test_skewed_local_clock_is_corrected():
    import time as _t
    net = FakeNetwork()
    records: list = []
    behind = lambda: int(_t.time() * 1000) - 15 * 60 * 1000  # noqa: E731 - our clock 15 min slow
    async with make(net, records, local_now_ms=behind) as alice, make(net, records, seed=2) as bob:
        sent = await alice.send(bob.session_id, "late clock")
        got = await bob.wait_for(count=1, timeout=5)
        assert got[0].hash == sent.message_hash
        assert abs(sent.timestamp_ms - _t.time() * 1000) < 5000  # corrected to network time
        assert abs(alice.clock.offset_ms + 15 * 60 * 1000) < 2000


async def test_dropped_stores_are_detected_and_retried_elsewhere():
    net = FakeNetwork()
    records: list = []
    bob = Account.generate()
    swarm = net.swarm_of(bob.session_id)
    droppers = swarm[:2]
    for n in droppers:
        n.drop_stores = True
    async with make(net, records, seed=21, max_attempts=4) as alice:
        sends = [await alice.send(bob.session_id, f"m{i}") for i in range(5)]
    unconfirmed = [a for s in sends for a in s.attempts if a.error_kind == "unconfirmed"]
    assert unconfirmed, "no attempt went to a node that drops stores"
    assert {a.destination["ed25519"] for a in unconfirmed} <= {n.ed25519 for n in droppers}
    assert all("confirmations:1/2" in a.actions for a in unconfirmed)
    for s in sends:
        assert s.ok and s.confirmations == 3  # the good member fanned out; members sign
        assert s.destination["ed25519"] == swarm[2].ed25519
        # the good member fanned it out, so every member (droppers included) has it
        assert all(s.message_hash in net.stored(bob.session_id)[n.name] for n in swarm)


async def test_retries_of_one_send_store_the_same_message():
    # an unconfirmed attempt may still have stored the message on some members: the retry must
    # carry the same data (same hash) even though answers in between moved the clock estimate
    net = FakeNetwork()
    records: list = []
    bob = Account.generate()
    swarm = net.swarm_of(bob.session_id)
    for n in swarm[:2]:
        n.drop_stores = True
        n.clock_offset_ms = 3_000  # within tolerance: no 406, but the averaged offset moves
    async with make(net, records, seed=21, max_attempts=4) as alice:
        sends = [await alice.send(bob.session_id, f"m{i}") for i in range(5)]
    assert any(a.error_kind == "unconfirmed" for s in sends for a in s.attempts)
    stored_data = {p["data"] for n in net.nodes for (m, p) in n.requests if m == "store"}
    assert len(stored_data) == len(sends)  # one message per send, however many attempts
    assert set(net.stored(bob.session_id)[swarm[2].name]) == {s.message_hash for s in sends}
    assert not any("rebuilt_for_clock" in s.details for s in sends)


async def test_rejected_request_is_not_retried():
    net = FakeNetwork()
    records: list = []
    bob = Account.generate()
    for n in net.swarm_of(bob.session_id):
        n.hook = lambda node, method, params: (401, "signature required") if method == "store" else None
    async with make(net, records) as alice:
        with pytest.raises(StoreFailed) as ei:
            await alice.send(bob.session_id, "nope")
    rec = ei.value.record
    assert rec is records[-1] and rec.outcome == "error" and rec.error_type == "StoreFailed"
    stores = [a for a in rec.attempts if a.method == "store"]
    assert len(stores) == 1 and stores[0].status == 401 and stores[0].error_kind == "rejected"
    assert "401" in str(ei.value) and "signature required" in str(ei.value)


async def test_undecryptable_messages_are_reported_not_returned():
    net = FakeNetwork()
    records: list = []
    async with make(net, records, poll_mode="all") as bob:
        garbage = base64.b64encode(b"not a session message").decode()
        from nodes.protocol.hashing import message_hash
        h = message_hash(bob.session_id, 0, b"not a session message")
        for n in net.swarm_of(bob.session_id):
            n.messages[bob.session_id] = [{"hash": h, "namespace": 0, "timestamp": 1, "expiration": 2,
                                           "data": garbage}]
        assert await bob.receive() == []
        rec = records[-1]
        assert rec.new_hashes == [h] and rec.undecryptable[0]["hash"] == h


async def test_wait_for_times_out_with_a_clear_message():
    net = FakeNetwork()
    async with make(net, []) as bob:
        with pytest.raises(Timeout, match=r"waited 0.3s .* got 0"):
            await bob.wait_for(count=1, timeout=0.3, poll_interval=0.05)


async def test_unreachable_seed_is_a_bootstrap_error():
    net = FakeNetwork()
    net.seed_up = False
    records: list = []
    async with make(net, records) as c:
        with pytest.raises(BootstrapError, match="seed.fake"):
            await c.bootstrap()
    assert records[-1].kind == "bootstrap" and records[-1].outcome == "error"
    assert records[-1].attempts[0].error_kind == "seed"


async def test_single_subnet_network_still_works():
    net = FakeNetwork(same_subnet=True)
    records: list = []
    async with make(net, records) as alice, make(net, records, seed=2) as bob:
        await alice.send(bob.session_id, "docker-like")
        assert (await bob.wait_for(count=1, timeout=5))[0].body == "docker-like"
        assert all("no_subnet_diversity" in p.relaxed for p in alice.paths.paths)


def test_sync_client_facade():
    net = FakeNetwork()
    records: list = []
    bob_acct = Account.generate()
    with Client(net.seed_url, transport=net, sink=records, rng=random.Random(1)) as alice, \
            Client(net.seed_url, bob_acct, transport=net, sink=records, rng=random.Random(2)) as bob:
        assert bob.session_id == bob_acct.session_id
        rec = alice.send(bob.session_id, "sync")
        assert rec.ok
        got = bob.wait_for(count=1, timeout=5)
        assert got[0].body == "sync" and got[0].sender == alice.session_id
        assert {m.ed25519 for m in alice.get_swarm(bob.session_id)} == member_names(net, bob.session_id)
    check_records(records)


async def test_invalid_recipient_and_lookup_are_client_errors():
    net = FakeNetwork()
    records: list = []
    async with make(net, records) as alice:
        with pytest.raises(StoreFailed, match="Session ID"):
            await alice.send("not-an-id", "x")
        with pytest.raises(StoreFailed, match="05 Session ID"):
            await alice.send("03" + "11" * 32, "x")
        from harness.client import SwarmError
        with pytest.raises(SwarmError):
            await alice.get_swarm("zz")
    assert [r.outcome for r in records] == ["error", "error"]
    assert not net.log  # nothing was sent for invalid input


async def test_partial_poll_failure_keeps_accepted_messages():
    net = FakeNetwork()
    records: list = []
    async with make(net, records) as alice, make(net, records, seed=4, namespaces=(0, 10)) as bob:
        sent = await alice.send(bob.session_id, "keep me")
        for n in net.swarm_of(bob.session_id):  # namespace 10 fails everywhere
            n.hook = lambda node, m, p: (500, "boom") if m == "retrieve" and p.get("namespace") == 10 else None
        got = await bob.receive()
        assert [m.hash for m in got] == [sent.message_hash]
        rec = records[-1]
        assert rec.ok and rec.details["partial_errors"] and "500" in rec.details["partial_errors"][0]


async def test_guard_timeout_strikes_the_path_and_retries_on_the_other():
    net = FakeNetwork(swarms=3)
    records: list = []
    async with make(net, records, seed=6) as alice:
        await alice.bootstrap()
        slow = alice.paths.paths[0]
        net.node(slow.guard.ed25519).hang = True
        bob = Account.generate()
        for i in range(8):
            rec = await alice.send(bob.session_id, f"m{i}")
            assert rec.ok
            if any(a.error_kind == "timeout" for a in rec.attempts):
                break
        t = [a for a in rec.attempts if a.error_kind == "timeout"][0]
        assert t.path[0]["ed25519"] == slow.guard.ed25519
        assert t.failed_node is None and t.http_status is None  # nobody to blame but the path
        assert t.actions == [f"strike_path:{slow.id}"]
        assert slow.failures >= 1 and alice.paths.get(slow.id) is slow  # kept until 3 strikes
        ok = [a for a in rec.attempts if a.ok and a.method == "store"][-1]
        assert ok.n > t.n and ok.path[0]["ed25519"] != slow.guard.ed25519


async def test_dead_member_on_one_path_with_the_others_on_the_other_is_found_by_its_routes():
    # the CI failure of the churn kill scenario, made deterministic: 6 nodes, so the two paths
    # hold every node; the killed member K of bob's swarm is a relay of P1 and bob's two other
    # members are on P2. A store to K goes through P2 and a store to b or c must go through
    # P1: every route meets K, and every failure is a 504 "Request time out" from a live relay
    # (the storage server's answer when the next node does not answer), blamed on a path.
    # Path strikes alone rebuild P1 from the same three nodes (nothing else is free): the
    # client must see that K is the one node on every failed route and leave it.
    net = FakeNetwork(swarms=2, swarm_size=3)
    net.relay_timeout_on_down = True
    records: list = []
    bob = Account.generate()
    members = net.swarm_of(bob.session_id)
    others = [n for n in net.nodes if n not in members]
    killed, b, c = members
    async with make(net, records, seed=3) as alice:
        await alice.bootstrap()
        await alice.get_swarm(bob.session_id)
        def snode(n):
            return alice.pool.get(n.ed25519)

        p1 = OnionPath([snode(others[0]), snode(killed), snode(others[1])])
        p2 = OnionPath([snode(others[2]), snode(b), snode(c)])
        alice.paths.paths = [p1, p2]
        killed.up = False
        sends = [await alice.send(bob.session_id, f"m{i}") for i in range(5)]
    assert all(s.ok for s in sends)
    first = sends[0]
    # three failed routes at most (K as destination, b and c through K) single K out
    assert len([a for a in first.attempts if a.method == "store"]) <= 4
    suspects = [a for a in first.attempts if any(x.startswith("suspect_on_every_failed_route:")
                                                 for x in a.actions)]
    assert suspects and f"drop_node:{killed.ed25519[-8:]}" in suspects[0].actions
    assert killed.ed25519 not in alice.pool
    # once found, it is neither a destination nor a relay of the later sends
    for s in sends[1:]:
        assert len(s.attempts) == 1
        assert killed.ed25519 not in store_route_keys(s)
    check_records(records)


def store_route_keys(rec: SendRecord) -> set[str]:
    ok = [a for a in rec.attempts if a.method == "store" and a.ok][-1]
    return {h["ed25519"] for h in ok.path} | {ok.destination["ed25519"]}


@pytest.mark.parametrize("seed", [4, 11, 23, 42])
async def test_frozen_member_is_singled_out_across_sends_by_the_routes_that_worked(seed):
    # a frozen (paused) member of bob's swarm: requests to it or through it time out, one per
    # send at most before the retry works elsewhere, so no single send fails twice. Across
    # sends, the node on every failed route and on no route that worked is found and left.
    net = FakeNetwork(swarms=2, swarm_size=3)
    records: list = []
    bob = Account.generate()
    async with make(net, records, seed=seed) as alice:
        await alice.bootstrap()
        await alice.get_swarm(bob.session_id)
        frozen = net.swarm_of(bob.session_id)[0]
        frozen.frozen = True
        sends = [await alice.send(bob.session_id, f"m{i}") for i in range(12)]
    assert all(s.ok for s in sends)
    timeouts = [a for s in sends for a in s.attempts if a.error_kind == "timeout"]
    found = [a for s in sends for a in s.attempts
             if f"suspect_on_every_failed_route:{frozen.ed25519[-8:]}" in a.actions]
    assert len(found) == 1 and len(timeouts) >= 2
    assert frozen.ed25519 not in alice.pool
    # asked directly once found, it did not answer either
    (test,) = [a for s in sends for a in s.attempts if a.method == "suspect_test"]
    assert test.destination["ed25519"] == frozen.ed25519 and test.error_kind == "timeout"
    assert f"drop_node:{frozen.ed25519[-8:]}" in found[0].actions
    # nothing timed out after that; its swarm results say it never confirmed
    after = [a for s in sends for a in s.attempts if a.started_at > test.started_at]
    assert after and not any(a.error_kind == "timeout" for a in after)
    assert all(not s.swarm_results[frozen.ed25519]["ok"] for s in sends)
    check_records(records)


async def test_unrelated_failures_single_out_nobody():
    from harness.client.config import ClientConfig
    from harness.client.paths import PathSet
    from harness.client.policy import PathPolicy
    from harness.client.pool import NodePool
    from harness.client.records import AttemptRecord

    policy = PathPolicy(ClientConfig(), NodePool(), PathSet(), {})
    a = AttemptRecord(n=1, method="store")
    assert policy.route_failed({"a", "b", "c", "d"}, a) is None  # one failure is no evidence
    assert policy.route_failed({"e", "f", "g", "h"}, a) is None  # nothing in common: start over
    policy.route_worked({"e", "f"})  # these answered since: {g, h} are left
    assert policy.route_failed({"e", "f", "x", "y"}, a) is None  # nothing in common: start over
    assert policy.route_failed({"e", "g", "x", "z"}, a) is None  # {e, x}: two suspects
    assert policy.route_failed({"x", "q", "r", "s"}, a) == "x"
    assert a.actions[-1] == "suspect_on_every_failed_route:x"
    # singled out is not dropped: the client asks it first (convict / acquit); bookkeeping
    # starts over either way
    assert policy.route_failed({"x", "t", "u", "v"}, a) is None


async def test_two_dropping_relays_keep_the_honest_member_their_routes_share():
    # the flaky censorship scenario (drop_relays), made deterministic: two relays that answer
    # 504 to what they should pass on, one in each path, and a one-member swarm, so both failed
    # routes share exactly one node: the honest destination. It answers a direct request, so
    # it stays; the paths are struck and rebuilt around the censors and the sends get through
    net = FakeNetwork(swarms=12, swarm_size=1)
    records: list = []
    bob = Account.generate()
    (member,) = net.swarm_of(bob.session_id)
    others = [n for n in net.nodes if n is not member]
    async with make(net, records, seed=7) as alice:
        await alice.bootstrap()
        await alice.get_swarm(bob.session_id)

        def snode(n):
            return alice.pool.get(n.ed25519)

        alice.paths.paths = [OnionPath([snode(n) for n in others[0:3]]),
                             OnionPath([snode(n) for n in others[3:6]])]
        others[1].drop_relays = others[4].drop_relays = True
        sends = [await alice.send(bob.session_id, f"m{i}") for i in range(4)]
        assert member.ed25519 in alice.pool
    assert all(s.ok for s in sends)
    attempts = [a for s in sends for a in s.attempts]
    singled = [a for a in attempts
               if f"suspect_on_every_failed_route:{member.ed25519[-8:]}" in a.actions]
    assert singled, "the two failed routes never singled out the member they share"
    assert all(f"suspect_answered:{member.ed25519[-8:]}" in a.actions for a in singled)
    tests = [a for a in attempts if a.method == "suspect_test"]
    assert tests and all(a.ok and a.destination["ed25519"] == member.ed25519 for a in tests)
    assert not [x for a in attempts for x in a.actions if x == f"drop_node:{member.ed25519[-8:]}"]
    bad = {others[1].ed25519, others[4].ed25519}
    assert all(not bad & {h["ed25519"] for h in a.path} for a in attempts if a.ok and a.path)
    check_records(records)


async def test_sample_polling_gets_what_one_out_of_sync_member_missed():
    # desktop polls 2 random members at once and merges (RETRIEVE_SNODES_COUNT): a member that
    # missed a message (frozen while it was stored) cannot hide it from a recipient that had a
    # last hash there (the older sticky one-node polling would never ask anyone else)
    net = FakeNetwork(swarms=2, swarm_size=3)
    records: list = []
    bob_acct = Account.generate()
    async with make(net, records, seed=5) as alice, make(net, records, bob_acct, seed=6) as bob:
        assert bob.config.poll_mode == "sample"
        await alice.send(bob.session_id, "everyone has it")
        assert [m.body for m in await bob.receive()] == ["everyone has it"]
        missing = net.swarm_of(bob.session_id)[0]
        missing.frozen = True
        await alice.send(bob.session_id, "one member missed it")
        missing.frozen = False
        got = await bob.wait_for(count=1, timeout=5, poll_interval=0.01)
    assert [m.body for m in got] == ["one member missed it"]
    assert got[0].hash not in net.stored(bob.session_id)[missing.name]  # it really missed it
    polls = [r for r in records if isinstance(r, ReceiveRecord) and r.account == bob_acct.session_id]
    assert all(len({p["ed25519"] for p in r.polled}) <= 2 for r in polls)
    assert any(len({p["ed25519"] for p in r.polled}) == 2 for r in polls)


@pytest.mark.parametrize("seed", [9, 13, 21, 34])
async def test_a_not_ready_node_behind_the_guard_is_named_and_struck_not_the_guard(seed):
    # a decommissioned relay: the storage server's relay gets 503 "Snode not ready: <its key>"
    # from it (the node<->node answer; our relays give the same) and passes it back. The client
    # strikes that node (libsession SnodeNotReady), not the guard nor the path's other nodes,
    # and three such answers drop it
    net = FakeNetwork(swarms=2, swarm_size=3)
    records: list = []
    bob = Account.generate()
    async with make(net, records, seed=seed) as alice:
        await alice.bootstrap()
        await alice.get_swarm(bob.session_id)
        gone = alice.paths.paths[0].hops[1]
        net.node(gone.ed25519).not_ready = True
        sends = [await alice.send(bob.session_id, f"m{i}") for i in range(6)]
        assert all(s.ok for s in sends)
        failures = [a for s in sends for a in s.attempts if a.http_status == 503]
        assert failures
        for a in failures:
            assert a.failed_node is not None and a.failed_node["ed25519"] == gone.ed25519
            assert a.actions[0] == f"strike_node:{gone.ed25519[-8:]}", a.actions
            assert not any(x.startswith(("strike_path:", "suspect_on_every")) for x in a.actions)
        assert len(failures) <= 3
        if len(failures) == 3:
            assert gone.ed25519 not in alice.pool
    check_records(records)


async def test_a_not_ready_guard_is_struck_as_the_edge():
    # only the edge answers "Service node is not ready: <reason>" (HTTPS): libsession's
    # EdgeNotReady, one strike for the guard
    net = FakeNetwork(swarms=2, swarm_size=3)
    records: list = []
    bob = Account.generate()
    async with make(net, records, seed=5) as alice:
        await alice.bootstrap()
        await alice.get_swarm(bob.session_id)
        guard = alice.paths.paths[0].guard
        net.node(guard.ed25519).not_ready = True
        sends = [await alice.send(bob.session_id, f"m{i}") for i in range(6)]
    assert all(s.ok for s in sends)
    failures = [a for s in sends for a in s.attempts if a.http_status == 503]
    assert failures
    assert any(a.path[0]["ed25519"] == guard.ed25519 for a in failures)
    for a in failures:  # as the guard, or named by a relay
        assert a.failed_node is not None and a.failed_node["ed25519"] == guard.ed25519
        assert a.actions[0] == f"strike_node:{guard.ed25519[-8:]}", a.actions
        assert not any(x.startswith("strike_path:") for x in a.actions)
    check_records(records)


@pytest.mark.parametrize("seed", range(12))
async def test_decommissioned_node_and_a_killed_one_single_out_no_innocent_node(seed):
    # the churn scenario on Docker: one member of the recipient's swarm decommissioned (503 not
    # ready; it left its swarm and the seed's list, the client's caches still have it) and
    # another node killed and deregistered, whose address no longer answers (connections time
    # out, as a stopped container's: `frozen`; relays do not know it any more). When the
    # not-ready answers named nobody, their routes and the timed-out ones were intersected, an
    # innocent node common to both was dropped, and the sends kept failing on the not-ready
    # node. Every not-ready answer now names its node, which is kept off the operation's
    # routes; no innocent node is singled out
    net = FakeNetwork(swarms=2, swarm_size=3)
    records: list = []
    bob = Account.generate()
    rng = random.Random(seed)
    async with make(net, records, seed=seed, request_timeout=0.05) as alice:
        await alice.bootstrap()
        await alice.get_swarm(bob.session_id)
        members = net.swarm_of(bob.session_id)
        gone = rng.choice(members)
        dead = rng.choice([n for n in net.nodes if n not in members])
        gone.not_ready = dead.frozen = True
        net.unlisted.add(dead.name)
        ok = 0
        for i in range(4):
            try:
                await alice.send(bob.session_id, f"m{i}")
                ok += 1
            except StoreFailed:
                pass
    assert ok >= 3
    attempts = [a for r in records for a in r.attempts]
    assert any(a.http_status == 503 for a in attempts)
    for a in attempts:
        if a.http_status == 503:
            assert a.failed_node is not None and a.failed_node["ed25519"] == gone.ed25519
            assert a.actions[0] == f"strike_node:{gone.ed25519[-8:]}", a.actions
        for x in a.actions:
            if x.startswith(("suspect_on_every_failed_route:", "drop_node:")):
                assert x.endswith((gone.ed25519[-8:], dead.ed25519[-8:])), (x, a.actions)
    check_records(records)


async def test_corrupting_relays_single_out_no_innocent_node():
    # two relays garble what they pass on (the next hop answers 400 "Invalid ciphertext"), one
    # in each path, both paths to the same destination: a relayed 400 is no path failure
    # (production: no path strike), so the route intersection must not take it as a dead node
    # (it would drop the honest destination the failed routes share). 12 nodes: a path around
    # both failed paths and the destination exists
    net = FakeNetwork(swarms=4)
    records: list = []
    bob = Account.generate()
    members = net.swarm_of(bob.session_id)
    others = [n for n in net.nodes if n not in members]
    async with make(net, records, seed=5) as alice:
        await alice.bootstrap()
        await alice.get_swarm(bob.session_id)

        def snode(n):
            return alice.pool.get(n.ed25519)

        p1 = OnionPath([snode(others[0]), snode(others[1]), snode(others[2])])
        p2 = OnionPath([snode(others[3]), snode(others[4]), snode(others[5])])
        alice.paths.paths = [p1, p2]
        others[1].corrupt_relays = others[4].corrupt_relays = True
        sends = [await alice.send(bob.session_id, f"m{i}") for i in range(5)]
        pool = {n.ed25519 for n in alice.pool.nodes()}
    assert all(s.ok for s in sends)
    attempts = [a for s in sends for a in s.attempts]
    garbled = [a for a in attempts if a.http_status == 400]
    assert garbled and all("Invalid ciphertext" in (a.error or "") for a in garbled)
    assert not [x for a in attempts for x in a.actions
                if x.startswith(("suspect_on_every_failed_route:", "drop_node:"))]
    assert pool == {n.ed25519 for n in net.nodes}
    # the stores that worked went around both corrupting relays
    bad = {others[1].ed25519, others[4].ed25519}
    assert all(not bad & {h["ed25519"] for h in a.path} for a in attempts if a.ok and a.path)
