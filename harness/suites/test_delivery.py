"""Delivery family: what a client stores reaches its recipient, once, intact; the storage RPC's
rules (size, TTL, delete, expire, auth) hold on every swarm member.

Every scenario runs on the module testnet (2 swarms × 3 nodes) of each backend. Client traffic is
asserted with the delivery checker over the recorded history; per-member rules are observed by
asking every member of the account's swarm directly (:mod:`harness.suites.storage_rpc`, each
call recorded in the history) and asserted with :func:`~harness.suites.storage_rpc.on_every_member`.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

from harness.checks import History, delivery, latency
from harness.client import Account, StoreFailed
from harness.network import Testnet
from harness.recording import HistoryRecorder
from harness.suites.storage_rpc import (
    CLEANUP_PERIOD_S,
    Member,
    StorageRpc,
    by_member,
    largest_body_within,
    now_ms,
    on_every_member,
    raw_hash,
    seeded_bytes,
    swarm_results,
    wait_until,
)
from harness.suites.support import CLIENT, account_for
from nodes.protocol.constants import MAX_MESSAGE_DATA
from nodes.protocol.signing import retrieve_message, sign_request, store_message

if TYPE_CHECKING:
    from harness.suites.conftest import Clients

pytestmark = [pytest.mark.delivery, pytest.mark.integration,
              pytest.mark.backends("process", "docker", "swarm")]

HOUR_MS = 3_600_000


def scenario_account(net: Testnet, clients: Clients) -> Account:
    """An account of the scenario (derived from the testnet's seed) that no client uses: raw
    storage RPC only."""
    return account_for(net, clients.label())


@pytest.fixture
def rpc(testnet: Testnet, history: HistoryRecorder) -> Iterator[StorageRpc]:
    """Direct storage RPC to the testnet's nodes, recorded into the scenario's history."""
    with StorageRpc(testnet, history.history) as r:
        yield r


def joined(pages: dict[str, list[list[str]]]) -> dict[str, list[str]]:
    return {name: list(itertools.chain.from_iterable(p)) for name, p in pages.items()}


def deliveries_to(h: History, session_id: str) -> list[dict[str, Any]]:
    return [d for d in h.deliveries if d.get("account") == session_id]


# -- 1. both ways ------------------------------------------------------------------------------

def test_delivery_both_ways(testnet: Testnet, history: HistoryRecorder, clients: Clients) -> None:
    """Two accounts messaging each other both receive every message exactly once, intact, from
    the right sender, within latency bounds.

    Ten messages each way, interleaved; each side polls until it has all ten."""
    alice, bob = clients.new(testnet, **CLIENT), clients.new(testnet, **CLIENT)
    for i in range(10):
        alice.send(bob.session_id, f"a->b {i}")
        bob.send(alice.session_id, f"b->a {i}")
    bob.wait_for(count=10, timeout=30)
    alice.wait_for(count=10, timeout=30)
    h = history.collect()
    history.require(delivery(h), latency(h, send_p95_ms=10_000, delivery_p95_ms=15_000))
    assert history.results[0].evidence["delivered"] == 20
    assert sorted(d["body"] for d in deliveries_to(h, bob.session_id)) == \
        sorted(f"a->b {i}" for i in range(10))
    assert sorted(d["body"] for d in deliveries_to(h, alice.session_id)) == \
        sorted(f"b->a {i}" for i in range(10))


# -- 2. fan-in ---------------------------------------------------------------------------------

def test_fan_in_twenty_senders(testnet: Testnet, history: HistoryRecorder,
                               clients: Clients) -> None:
    """Twenty senders writing to one recipient at about the same time: the recipient gets every
    message exactly once, each from its own sender.

    Each sender is a separate client (own account, own paths); they send concurrently, five at a
    time, so that stores to the one swarm overlap."""
    senders = 20
    bob = clients.new(testnet, **CLIENT)
    others = [clients.new(testnet, **CLIENT) for _ in range(senders)]
    with ThreadPoolExecutor(max_workers=5) as pool:
        list(pool.map(lambda ic: ic[1].send(bob.session_id, f"fan-in {ic[0]}"),
                      enumerate(others)))
    bob.wait_for(count=senders, timeout=60)
    h = history.collect()
    history.require(delivery(h))
    got = deliveries_to(h, bob.session_id)
    assert history.results[0].evidence["delivered"] == senders
    assert sorted(d["body"] for d in got) == sorted(f"fan-in {i}" for i in range(senders))
    assert {d["body"]: d["sender"] for d in got} == \
        {f"fan-in {i}": c.session_id for i, c in enumerate(others)}


# -- 3. size limit -----------------------------------------------------------------------------

@pytest.mark.builtin_client
def test_size_limit(testnet: Testnet, history: HistoryRecorder, clients: Clients,
                    rpc: StorageRpc) -> None:
    """A message at the size limit (76,800 bytes of decoded ``data``; for a 1-to-1 message the
    largest padded size that fits) is stored on every swarm member and delivered; one just over
    it is refused with an error that names the limit, and no member stores anything of it.

    Two ways: 1-to-1 Session messages through the client (the body is computed so that its
    padded, sealed and wrapped ``data`` is the largest that fits; one character more adds a
    160-byte padding step and goes over), and raw ``store`` of 76,800 and 76,801 bytes."""
    alice, bob = clients.builtin(testnet, **CLIENT), clients.builtin(testnet, **CLIENT)
    carol = scenario_account(testnet, clients)  # raw stores only: nobody polls it
    bob_members, carol_members = rpc.members(bob.session_id), rpc.members(carol.session_id)

    fits = largest_body_within(alice.account, bob.session_id)
    with pytest.raises(StoreFailed) as over:
        alice.send(bob.session_id, "x" * (fits + 1))
    over_rec = over.value.record
    assert over_rec is not None and over_rec.details["data_bytes"] > MAX_MESSAGE_DATA
    assert f"{MAX_MESSAGE_DATA} bytes" in str(over.value), str(over.value)
    # a refused request is not retried
    assert len([a for a in over_rec.attempts if a.method == "store"]) == 1
    too_big = rpc.store(carol_members[0], carol.session_id, seeded_bytes(testnet, "over",
                                                                         MAX_MESSAGE_DATA + 1))
    assert too_big.status == 400 and f"{MAX_MESSAGE_DATA} bytes" in too_big.text, str(too_big)
    history.require(
        on_every_member("nothing stored (client)", rpc.view(bob_members, bob.account),
                        [], prop="no member holds anything for the recipient of the refused send"),
        on_every_member("nothing stored (raw)", rpc.view(carol_members, carol), [],
                        prop="no member holds anything of the refused raw store"))

    rec = alice.send(bob.session_id, "x" * fits)
    assert MAX_MESSAGE_DATA - 160 < rec.details["data_bytes"] <= MAX_MESSAGE_DATA
    got = bob.wait_for(count=1, timeout=30)
    assert got[0].body == "x" * fits
    at_limit = seeded_bytes(testnet, "at-limit", MAX_MESSAGE_DATA)
    stored = rpc.store(carol_members[0], carol.session_id, at_limit)
    want = raw_hash(carol.session_id, 0, at_limit)
    swarm = swarm_results(stored)
    sizes = rpc.each(carol_members, lambda m: [
        (x["hash"], len(base64.b64decode(x["data"])))
        for x in rpc.messages(m, carol)])
    h = history.collect()
    history.require(
        delivery(h),
        on_every_member("stored at the limit (client)", rpc.view(bob_members, bob.account),
                        [rec.message_hash], prop="every member holds the message at the limit"),
        on_every_member("store acknowledged (raw)", by_member(carol_members, swarm,
                                                            lambda r: r.get("hash")),
                        want, prop="every member acknowledged the raw store at the limit"),
        on_every_member("stored at the limit (raw)", sizes, [(want, MAX_MESSAGE_DATA)],
                        prop="every member returns the 76,800-byte message intact"))
    assert stored.status == 200


# -- 4. two devices --------------------------------------------------------------------------

def test_two_devices_both_receive(testnet: Testnet, history: HistoryRecorder,
                                  clients: Clients) -> None:
    """Two devices of one account (two clients with the same keys, each with its own paths and
    last-hash cursors) each receive every message sent to the account, exactly once each.

    The sender is the client under test; the two devices are built-in clients sharing one
    account. The delivery checker runs per device (one device's receipts over the shared
    sends)."""
    alice = clients.new(testnet, **CLIENT)
    phone = clients.builtin(testnet, **CLIENT)
    laptop = clients.builtin(testnet, account=phone.account, **CLIENT)
    assert laptop.session_id == phone.session_id
    bodies = [f"to both devices {i}" for i in range(5)]
    for body in bodies:
        alice.send(phone.session_id, body)
    h = history.history
    views: list[History] = []
    for device in (phone, laptop):
        first_rec, first_del = len(h.records), len(h.deliveries)
        device.wait_for(count=len(bodies), timeout=30)
        sends = [r for r in h.records[:first_rec] if r.kind == "send"]
        views.append(History(records=[*sends, *h.records[first_rec:]], sent=h.sent,
                             deliveries=h.deliveries[first_del:], nodes=h.nodes))
    results = [delivery(v) for v in views]
    for n, r in enumerate(results, 1):
        r.name = f"delivery to device {n}"
    history.collect()
    history.require(*results)
    for v in views:
        assert sorted(d["body"] for d in v.deliveries) == sorted(bodies)
    assert all(r.evidence["delivered"] == len(bodies) for r in results)


# -- 5. paging ---------------------------------------------------------------------------------

def test_retrieve_paging_with_last_hash(testnet: Testnet, history: HistoryRecorder,
                                        clients: Clients, rpc: StorageRpc) -> None:
    """Retrieving with ``last_hash`` page by page (``max_count`` or ``max_size`` pages) returns
    every message of the account exactly once, in storage order, on every swarm member; an
    unknown ``last_hash`` returns everything.

    Ten messages, pages of three (by count) and of about three (by size): at least 4 pages, the
    last with ``more`` false."""
    alice = clients.new(testnet, **CLIENT)
    bob = clients.builtin(testnet, **CLIENT)
    bodies = [f"page me {i:02d}" for i in range(10)]
    for body in bodies:
        alice.send(bob.session_id, body)
    got = bob.wait_for(count=len(bodies), timeout=30)
    members = rpc.members(bob.session_id)
    full = rpc.view(members, bob.account)
    order = full[members[0].name]
    assert sorted(order) == sorted(m.hash for m in got)

    def pages(m: Member, max_count: int | None = None,
              max_size: int | None = None) -> list[list[str]]:
        out: list[list[str]] = []
        last: str | None = None
        while True:
            body = rpc.retrieve(m, bob.account, last_hash=last, max_count=max_count,
                                max_size=max_size).expect(200)
            page = [x["hash"] for x in body["messages"]]
            out.append(page)
            assert page, f"{m.name}: empty page after {last} with more={body.get('more')}"
            if not body["more"]:
                return out
            last = page[-1]
            assert len(out) < 20, f"{m.name}: paging does not end: {out}"

    sample = rpc.retrieve(members[0], bob.account, max_count=1).expect(200)["messages"][0]
    one = 100 + len(sample["hash"]) + len(sample["data"])  # a message's share of max_size
    by_count = rpc.each(members, lambda m: pages(m, max_count=3))
    by_size = rpc.each(members, lambda m: pages(m, max_size=3 * one))
    unknown = "A" * 43  # valid base64, no such message
    from_unknown = rpc.each(members, lambda m: [
        x["hash"] for x in rpc.retrieve(m, bob.account, last_hash=unknown).expect(200)["messages"]])
    history.require(
        delivery(history.collect()),
        on_every_member("same order", full, order, prop="every member stores the same messages "
                                                        "in the same order"),
        on_every_member("pages by count", joined(by_count), order,
                        prop="max_count pages joined are every message once, in order"),
        on_every_member("pages by size", joined(by_size), order,
                        prop="max_size pages joined are every message once, in order"),
        on_every_member("unknown last_hash", from_unknown, order,
                        prop="an unknown last_hash returns everything"))
    for name in by_count:
        assert [len(p) for p in by_count[name]] == [3, 3, 3, 1], by_count[name]
        assert len(by_size[name]) >= 3, by_size[name]


# -- 6. TTL ----------------------------------------------------------------------------------

@pytest.mark.builtin_client
def test_ttl_expiry(testnet: Testnet, history: HistoryRecorder, clients: Clients,
                    rpc: StorageRpc) -> None:
    """A message stored with a short TTL is delivered while it lives, then is gone from every
    swarm member: within the purge period after its expiry no member returns it or lists its
    expiry, and it never comes back (production purges every 10 s; our nodes also never return
    an expired message before the purge); a message with a normal TTL stays.

    The short message is sent with a TTL of 12 s (the minimum is 10 s), the long one with the
    default (14 days)."""
    ttl_ms = 12_000
    alice, bob = clients.builtin(testnet, **CLIENT), clients.builtin(testnet, **CLIENT)
    members = rpc.members(bob.session_id)
    short = alice.send(bob.session_id, "short-lived", ttl_ms=ttl_ms)
    expiry = (short.timestamp_ms or 0) + ttl_ms
    while_alive = rpc.view(members, bob.account)
    bob.wait_for(count=1, timeout=ttl_ms / 1000)
    long = alice.send(bob.session_id, "long-lived")
    bob.wait_for(count=1, timeout=30)
    history.require(
        delivery(history.collect()),
        on_every_member("held while alive", while_alive, [short.message_hash],
                        prop="every member holds the short-lived message before its expiry"))

    seen_after: list[str] = []  # members that returned it in an answer timed after its expiry
    both = [short.message_hash or "", long.message_hash or ""]

    def probe() -> dict[str, dict[str, list[str]]]:
        """Per member: what retrieve returns and what get_expiries lists (purged or not)."""
        out: dict[str, dict[str, list[str]]] = {}
        for m in members:
            answer = rpc.retrieve(m, bob.account)
            hashes = [x["hash"] for x in answer.expect(200)["messages"]]
            if short.message_hash in hashes and answer.at_ms >= expiry:
                seen_after.append(f"{m.name} at expiry+{answer.at_ms - expiry} ms")
            listed = sorted(rpc.get_expiries(m, bob.account, both).expect(200)["expiries"])
            out[m.name] = {"retrieve": hashes, "get_expiries": listed}
        return out

    # purged: neither returned nor listed (production purges every CLEANUP_PERIOD_S)
    wait = max(0.0, (expiry - now_ms()) / 1000) + CLEANUP_PERIOD_S + 5
    gone = wait_until("the short-lived message purged from every member", probe,
                      lambda v: all(short.message_hash not in hs
                                    for view in v.values() for hs in view.values()),
                      timeout=wait)
    after = probe()
    stays = {"retrieve": [long.message_hash], "get_expiries": [long.message_hash]}
    history.require(
        on_every_member("purged after expiry", gone, stays,
                        prop="no member returns or lists the expired message; the long-lived "
                             "one stays"),
        on_every_member("still gone", after, stays,
                        prop="the expired message does not come back"))
    if all(m.kind == "python" for m in members):
        # our nodes filter expired messages out of retrieve before the purge (production's
        # retrieve returns them until its next purge)
        assert not seen_after, f"expired message returned: {seen_after}"
    assert now_ms() >= expiry


# -- 7. delete ---------------------------------------------------------------------------------

def test_delete_by_owner(testnet: Testnet, history: HistoryRecorder, clients: Clients,
                         rpc: StorageRpc) -> None:
    """A message its owner deletes is gone from every swarm member (the others stay); a delete
    signed by anyone else is refused (401) and deletes nothing.

    Three messages are delivered first; the recipient then deletes the middle one through one
    member, which applies it on the whole swarm."""
    alice = clients.new(testnet, **CLIENT)
    bob = clients.builtin(testnet, **CLIENT)
    mallory = scenario_account(testnet, clients)
    for i in range(3):
        alice.send(bob.session_id, f"delete me? {i}")
    bob.wait_for(count=3, timeout=30)
    members = rpc.members(bob.session_id)
    before = rpc.view(members, bob.account)
    order = before[members[0].name]
    assert len(order) == 3
    victim = order[1]
    forged = rpc.delete(members[0], bob.account, [victim], signer=mallory)
    assert forged.status == 401, str(forged)
    untouched = rpc.view(members, bob.account)
    deleted = rpc.delete(members[-1], bob.account, [victim])
    reported = by_member(members, swarm_results(deleted), lambda r: r.get("deleted"))
    gone = wait_until("deleted everywhere", lambda: rpc.view(members, bob.account),
                      lambda v: all(victim not in hs for hs in v.values()), timeout=10)
    history.require(
        delivery(history.collect()),
        on_every_member("forged delete refused", untouched, order,
                        prop="a delete signed by another account deletes nothing"),
        on_every_member("delete acknowledged", reported, [victim],
                        prop="every member reports the owner's delete"),
        on_every_member("deleted everywhere", gone, [order[0], order[2]],
                        prop="the deleted message is gone from every member, the others stay"))
    assert deleted.status == 200, str(deleted)
    assert rpc.view(members, bob.account) == gone  # and it stays gone


# -- 8. expire ---------------------------------------------------------------------------------

def test_expire_extend_shorten(testnet: Testnet, history: HistoryRecorder, clients: Clients,
                               rpc: StorageRpc) -> None:
    """``expire`` with ``shorten`` never makes an expiry later and ``extend`` never makes one
    earlier; each member applies the rule, reports the same expiry, and ``get_expiries`` on
    every member agrees with it.

    Four steps on one delivered message (14-day TTL, expiry E): shorten to E−1h (applied),
    shorten to E (refused: later), extend to E−2h (refused: earlier), extend to E+1h
    (applied)."""
    alice = clients.new(testnet, **CLIENT)
    bob = clients.builtin(testnet, **CLIENT)
    alice.send(bob.session_id, "expire me")
    (msg,) = bob.wait_for(count=1, timeout=30)
    members = rpc.members(bob.session_id)
    start = rpc.each(members, lambda m: {x["hash"]: x["expiration"]
                                         for x in rpc.messages(m, bob.account)}.get(msg.hash))
    e0 = start[members[0].name]
    assert isinstance(e0, int), start
    results = [delivery(history.collect()),
               on_every_member("initial expiry", start, e0, prop="every member has one expiry")]
    steps = [("shorten", e0 - HOUR_MS, e0 - HOUR_MS), ("shorten", e0, e0 - HOUR_MS),
             ("extend", e0 - 2 * HOUR_MS, e0 - HOUR_MS), ("extend", e0 + HOUR_MS, e0 + HOUR_MS)]
    for n, (mode, asked, want) in enumerate(steps, 1):
        answer = rpc.expire(members[n % len(members)], bob.account, [msg.hash], asked, mode=mode)
        assert answer.status == 200, str(answer)
        swarm = swarm_results(answer)

        def reported(r: dict[str, Any]) -> Any:
            # "updated" lists the hash when the rule let it change ("expiry" is then the new
            # one); "unchanged" gives the expiry that stays otherwise
            if msg.hash in r.get("updated", []):
                return r.get("expiry")
            return (r.get("unchanged") or {}).get(msg.hash)

        label = f"step {n}: {mode} to E{(asked - e0) // HOUR_MS:+d}h"
        listed = rpc.each(members, lambda m: rpc.get_expiries(m, bob.account, [msg.hash])
                          .expect(200)["expiries"].get(msg.hash))
        stored = rpc.each(members, lambda m: {x["hash"]: x["expiration"]
                                              for x in rpc.messages(m, bob.account)}.get(msg.hash))
        results += [
            on_every_member(f"{label}: applied?", by_member(
                members, swarm, lambda r: msg.hash in r.get("updated", [])), asked == want,
                prop=f"{label}: every member {'applies' if asked == want else 'refuses'} it"),
            on_every_member(f"{label}: answer", by_member(members, swarm, reported), want,
                            prop=f"{label}: every member reports expiry E{(want - e0) // HOUR_MS:+d}h"),
            on_every_member(f"{label}: get_expiries", listed, want,
                            prop=f"{label}: get_expiries agrees on every member"),
            on_every_member(f"{label}: retrieve", stored, want,
                            prop=f"{label}: retrieve's expiration agrees on every member")]
    history.require(*results)


# -- 9. authenticated namespaces -----------------------------------------------------------------

def test_authenticated_namespace(testnet: Testnet, history: HistoryRecorder, clients: Clients,
                                 rpc: StorageRpc) -> None:
    """A config namespace (2, the user profile) accepts a store only with the owner's signature:
    unsigned is refused (400/401), a wrong signature is refused (401), neither stores anything on
    any member; the signed store is on every member and readable only with the owner's
    signature.

    Raw storage RPC (the Session client API stores 1-to-1 messages in namespace 0 only)."""
    ns = 2
    bob = scenario_account(testnet, clients)
    mallory = scenario_account(testnet, clients)
    members = rpc.members(bob.session_id)
    data = seeded_bytes(testnet, "config", 300)
    want = raw_hash(bob.session_id, ns, data)

    unsigned = rpc.store(members[0], bob.session_id, data, namespace=ns)
    assert unsigned.status in (400, 401) and "signature" in unsigned.text, str(unsigned)
    ts = now_ms()
    wrong = rpc.store(members[1], bob.session_id, data, namespace=ns, signer=bob,
                      timestamp=ts, signature=sign_request(mallory.identity,
                                                           store_message(ns, ts)))
    assert wrong.status == 401, str(wrong)
    other_ns = rpc.store(members[2 % len(members)], bob.session_id, data, namespace=ns,
                         signer=bob, timestamp=ts,
                         signature=sign_request(bob.identity, store_message(ns + 1, ts)))
    assert other_ns.status == 401, str(other_ns)  # signed for namespace 3, not 2
    nothing = rpc.view(members, bob, namespace=ns)

    signed = rpc.store(members[-1], bob.session_id, data, namespace=ns, signer=bob)
    acked = by_member(members, swarm_results(signed), lambda r: r.get("hash"))
    stored = rpc.view(members, bob, namespace=ns)
    anonymous = rpc.each(members, lambda m: rpc.retrieve(m, bob, namespace=ns, signed=False))
    as_mallory = rpc.each(members, lambda m: rpc.call(m, "retrieve", {
        **_signed_retrieve(mallory, ns), "pubkey": bob.session_id}))
    history.require(
        on_every_member("refused stores stored nothing", nothing, [],
                        prop="unsigned and wrongly signed stores leave nothing on any member"),
        on_every_member("signed store acknowledged", acked, want,
                        prop="every member acknowledges the owner's signed store"),
        on_every_member("signed store retrievable", stored, [want],
                        prop="every member returns it to its owner"),
        on_every_member("no anonymous read", {n: a.status in (400, 401)
                                              for n, a in anonymous.items()}, True,
                        prop="an unsigned retrieve of the config namespace is refused"),
        on_every_member("no foreign read", {n: a.status for n, a in as_mallory.items()}, 401,
                        prop="a retrieve signed by another account is refused"))
    assert signed.status == 200, str(signed)


def _signed_retrieve(who: Account, ns: int) -> dict[str, Any]:
    ts = now_ms()
    return {"namespace": ns, "timestamp": ts, "pubkey_ed25519": who.identity.ed25519_hex,
            "signature": sign_request(who.identity, retrieve_message(ns, ts))}


# -- 10. duplicates ----------------------------------------------------------------------------

def test_duplicate_store_is_idempotent(testnet: Testnet, history: HistoryRecorder,
                                       clients: Clients, rpc: StorageRpc) -> None:
    """Storing the same message twice is idempotent: both stores answer the same hash, every
    member marks the second one ``already``, and every member holds (and returns) one copy.

    Raw ``store`` of the same data through two different members (a client retrying through
    another member does exactly this)."""
    bob = scenario_account(testnet, clients)
    members = rpc.members(bob.session_id)
    data = seeded_bytes(testnet, "twice", 200)
    ts = now_ms()
    first = rpc.store(members[0], bob.session_id, data, timestamp=ts)
    second = rpc.store(members[1], bob.session_id, data, timestamp=ts + 1000)
    want = raw_hash(bob.session_id, 0, data)
    history.require(
        on_every_member("first store new", by_member(members, swarm_results(first),
                                                    lambda r: (r.get("hash"), r.get("already"))),
                        (want, None), prop="the first store is new on every member"),
        on_every_member("second store already", by_member(
            members, swarm_results(second), lambda r: (r.get("hash"), r.get("already"))),
            (want, True), prop="the second store is 'already' on every member"),
        on_every_member("one copy", rpc.view(members, bob), [want],
                        prop="every member holds one copy"))
    assert first.json.get("hash") == second.json.get("hash") == want
