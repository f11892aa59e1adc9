"""store and retrieve as desktop, libsession and the storage server's network-tests use them:
swarm fan-out with per-member signed results, duplicates, ttl vs expiry, namespaces and their
auth rules, paging with last_hash / max_count, message shape.  Sources: docs/conformance.md,
section "Store / retrieve"."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest

from .wire import Account, Wire, assert_t_hf, b64, is_int, verify_node_sig

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker", "swarm")]

MSG_KEYS = {"hash", "timestamp", "expiration", "data"}


async def swarm_keys(wire: Wire, account: Account) -> set[str]:
    body = (await wire.rpc(wire.nodes[0], "get_swarm", {"pubkey": account.pubkey})).expect(200)
    return {sn["pubkey_ed25519"] for sn in body["snodes"]}


def check_store_body(body: dict[str, Any], members: set[str], h: str, expiry: int, *,
                     already: bool = False, what: str = "store") -> None:
    """session-storage-server request_handler.cpp process_client_req(store) as checked by its
    network-tests (test_store_retrieve.py test_store): one entry per swarm member, each with the
    hash and that member's Ed25519 signature of the hash; "hash" also at top level."""
    assert_t_hf(body, what=what)
    assert body.get("hash") == h, f"{what}: top-level hash {body.get('hash')!r} != {h}"
    swarm = body.get("swarm")
    assert isinstance(swarm, dict), f"{what}: no 'swarm' object: {body!r:.300}"
    assert set(swarm) == members, f"{what}: swarm results for {sorted(swarm)}, members {sorted(members)}"
    for ed, res in swarm.items():
        assert not res.get("failed"), f"{what}: member {ed} failed: {res}"
        assert res.get("hash") == h, f"{what}: member {ed} hash {res.get('hash')!r}"
        verify_node_sig(ed, h, res.get("signature"), what=f"{what} signature of {ed[:12]}")
        assert res.get("expiry") == expiry, f"{what}: member {ed} expiry {res.get('expiry')!r} != {expiry}"
        if already:
            # the entry node says true; 2.8.0's peers say 1 (their answers travel bt-encoded
            # over OxenMQ, and bencode has no booleans): clients test truthiness
            assert res.get("already") in (True, 1), f"{what}: duplicate not flagged by {ed}: {res}"
        else:
            assert "already" not in res, f"{what}: first store flagged 'already' by {ed}: {res}"


def check_messages(msgs: Any) -> None:
    assert isinstance(msgs, list)
    for m in msgs:
        assert set(m) == MSG_KEYS, f"message keys {sorted(m)} != {sorted(MSG_KEYS)}"
        assert isinstance(m["hash"], str) and len(m["hash"]) == 43
        assert is_int(m["timestamp"]) and is_int(m["expiration"])
        assert isinstance(m["data"], str)
        base64.b64decode(m["data"], validate=True)


@pytest.mark.parametrize("style", ["session", "ed05", "group"])
async def test_store_fans_out_with_signed_results(wire: Wire, style: str) -> None:
    acct = Account.new(style)
    members = await swarm_keys(wire, acct)
    data = f"hello {style}".encode()
    ts = wire.now()
    r = await wire.store(acct, data, ttl=86_400_000, timestamp=ts)
    check_store_body(r.expect(200), members, acct.hash_of(data), ts + 86_400_000)
    assert abs(r.json["t"] - ts) <= 30_000  # network-tests test_store: t within 30 s of ts


async def test_store_entry_result_keeps_deprecated_t(wire: Wire, account: Account) -> None:
    """The entry node's own entry in "swarm" also carries "t" (kept for backwards compatibility,
    request_handler.cpp: 'we accidentally set this one inside the entry router's "swarm"')."""
    node = wire.member(account)
    body = (await wire.store(account, b"entry t", node=node)).expect(200)
    mine = body["swarm"][node.ed25519]
    assert is_int(mine.get("t")) and abs(mine["t"] - body["t"]) < 5000, mine


async def test_store_hash_is_blake2b_of_prefixed_pubkey_ns_and_data(wire: Wire) -> None:
    """hash = unpadded base64(BLAKE2b-256(prefix byte ‖ pubkey ‖ ns ‖ data)), ns "" for 0."""
    import hashlib

    acct = Account.new("group")
    data = b"\x00binary\xff"
    ts = wire.now()
    body = (await wire.store(acct, data, namespace=42, timestamp=ts, signed=True)).expect(200)
    raw = hashlib.blake2b(b"\x03" + acct.identity.ed25519_public + b"42" + data,
                          digest_size=32).digest()
    assert body["hash"] == base64.b64encode(raw).decode().rstrip("=")


async def test_duplicate_store_is_flagged_already(wire: Wire, account: Account) -> None:
    members = await swarm_keys(wire, account)
    ts = wire.now()
    await wire.store(account, b"dup", timestamp=ts, ttl=600_000)
    body = (await wire.store(account, b"dup", timestamp=ts, ttl=600_000)).expect(200)
    check_store_body(body, members, account.hash_of(b"dup"), ts + 600_000, already=True,
                     what="duplicate store")


async def test_store_with_expiry_instead_of_ttl(wire: Wire, account: Account) -> None:
    members = await swarm_keys(wire, account)
    ts = wire.now()
    expiry = ts + 123_456
    body = (await wire.store(account, b"exp", timestamp=ts, ttl=None, expiry=expiry)).expect(200)
    check_store_body(body, members, account.hash_of(b"exp"), expiry, what="store(expiry)")
    msgs = await wire.wait_retrievable(account, wire.member(account), [account.hash_of(b"exp")])
    assert [(m["timestamp"], m["expiration"]) for m in msgs] == [(ts, expiry)]


async def test_store_accepts_stringified_timestamp_and_ttl(wire: Wire, account: Account) -> None:
    """client_rpc_endpoints.cpp: timestamp and ttl may be stringified integers (backwards compat
    of old clients)."""
    ts = wire.now()
    r = await wire.rpc(wire.member(account), "store", {
        "pubkey": account.pubkey, "timestamp": str(ts), "ttl": "60000", "data": b64(b"str")})
    body = r.expect(200)
    assert body["hash"] == account.hash_of(b"str")
    msgs = await wire.wait_retrievable(account, wire.member(account), [body["hash"]])
    assert msgs[0]["timestamp"] == ts and msgs[0]["expiration"] == ts + 60_000


async def test_store_pubKey_alias(wire: Wire, account: Account) -> None:
    r = await wire.rpc(wire.member(account), "store", {
        "pubKey": account.pubkey, "timestamp": wire.now(), "ttl": 60_000, "data": b64(b"alias")})
    assert r.expect(200)["hash"] == account.hash_of(b"alias")


async def test_retrieve_message_shape(wire: Wire, account: Account) -> None:
    """retrieve -> {"messages": [{hash, timestamp, expiration, data}], "more", "t", "hf"}; data is
    base64 of the stored bytes (desktop swarmPolling, network-tests test_sequence compare the
    message objects for equality, so no other keys)."""
    data = bytes(range(256))
    ts = wire.now()
    await wire.store(account, data, timestamp=ts, ttl=3_600_000)
    for node in wire.swarm_of(account):
        await wire.wait_retrievable(account, node, [account.hash_of(data)])
        r = await wire.retrieve(account, node=node)
        body = r.expect(200)
        assert_t_hf(body, what=f"retrieve@{node}")
        assert body.get("more") is False
        check_messages(body["messages"])
        assert body["messages"] == [{"hash": account.hash_of(data), "timestamp": ts,
                                     "expiration": ts + 3_600_000, "data": b64(data)}]


async def test_retrieve_network_tests_style_accounts(wire: Wire) -> None:
    """network-tests test_store_retrieve_authenticated: 05+x25519 with pubkey_ed25519, and 03+ed
    signed by that key, both retrieve their own message."""
    for style in ("session", "group", "ed05"):
        acct = Account.new(style)
        ts = wire.now()
        await wire.store(acct, b"abc 123", timestamp=ts, ttl=86_400_000, signed=False)
        msgs = await wire.wait_retrievable(acct, wire.member(acct), [acct.hash_of(b"abc 123")])
        assert [m["hash"] for m in msgs] == [acct.hash_of(b"abc 123")], style
        assert msgs[0]["timestamp"] == ts and msgs[0]["expiration"] == ts + 86_400_000


async def test_retrieve_last_hash_paging(wire: Wire, account: Account) -> None:
    """Messages come back in storage order; last_hash (alias lastHash) returns what came after;
    an unknown 43-character hash or "" returns everything (network-tests
    test_store_retrieve_multiple)."""
    now = wire.now()
    hashes = []
    for i in range(5):
        data = f"msg {i}".encode()
        (await wire.store(account, data, timestamp=now - (5 - i) * 1000, ttl=600_000)).expect(200)
        hashes.append(account.hash_of(data))
    node = wire.member(account)
    await wire.wait_retrievable(account, node, hashes)
    all_msgs = (await wire.retrieve(account, node=node)).expect(200)["messages"]
    assert [m["hash"] for m in all_msgs] == hashes, "messages are not in storage order"
    after = (await wire.retrieve(account, node=node, last_hash=hashes[1])).expect(200)
    assert [m["hash"] for m in after["messages"]] == hashes[2:]
    alias = (await wire.rpc(node, "retrieve", wire.retrieve_params(
        account, lastHash=hashes[3]))).expect(200)
    assert [m["hash"] for m in alias["messages"]] == hashes[4:]
    unknown = (await wire.retrieve(account, node=node,
                                   last_hash="0123456789012345678901234567890123456789123"))
    assert [m["hash"] for m in unknown.expect(200)["messages"]] == hashes
    empty = (await wire.retrieve(account, node=node, last_hash="")).expect(200)
    assert [m["hash"] for m in empty["messages"]] == hashes
    last = (await wire.retrieve(account, node=node, last_hash=hashes[-1])).expect(200)
    assert last["messages"] == [] and last["more"] is False


async def test_retrieve_max_count_and_more(wire: Wire, account: Account) -> None:
    now = wire.now()
    hashes = []
    for i in range(3):
        data = f"page {i}".encode()
        (await wire.store(account, data, timestamp=now - (3 - i) * 1000)).expect(200)
        hashes.append(account.hash_of(data))
    node = wire.member(account)
    await wire.wait_retrievable(account, node, hashes)
    first = (await wire.retrieve(account, node=node, max_count=2)).expect(200)
    assert [m["hash"] for m in first["messages"]] == hashes[:2] and first["more"] is True
    second = (await wire.retrieve(account, node=node, max_count=2,
                                  last_hash=hashes[1])).expect(200)
    assert [m["hash"] for m in second["messages"]] == hashes[2:] and second["more"] is False
    # desktop sends negative max_size (a fraction of the network maximum); 0 means unset
    for size in (-1, -5, 0):
        got = (await wire.retrieve(account, node=node, max_size=size)).expect(200)
        assert [m["hash"] for m in got["messages"]] == hashes


async def test_namespaces_are_separate_mailboxes(wire: Wire, account: Account) -> None:
    ts = wire.now()
    (await wire.store(account, b"in zero", timestamp=ts)).expect(200)
    (await wire.store(account, b"in ten", namespace=10, timestamp=ts)).expect(200)  # public: no sig
    (await wire.store(account, b"in three", namespace=3, timestamp=ts)).expect(200)  # signed
    node = wire.member(account)
    await wire.wait_retrievable(account, node, [account.hash_of(b"in zero")])
    zero = await wire.retrieve_all(account, node=node)
    ten = await wire.wait_retrievable(account, node, [account.hash_of(b"in ten", 10)], namespace=10)
    three = await wire.wait_retrievable(account, node, [account.hash_of(b"in three", 3)],
                                        namespace=3)
    assert [m["hash"] for m in zero] == [account.hash_of(b"in zero")]
    assert [m["hash"] for m in ten] == [account.hash_of(b"in ten", 10)]
    assert [m["hash"] for m in three] == [account.hash_of(b"in three", 3)]


async def test_store_sig_timestamp(wire: Wire) -> None:
    """network-tests test_store_sig_timestamp: in an authenticated namespace the signature is over
    sig_timestamp when given, else over timestamp; an old timestamp is fine with a fresh
    sig_timestamp, but not as the signature timestamp (406)."""
    acct = Account.new("ed05")
    node = wire.member(acct)
    ns, ttl = 123, 86_400_000
    ts = wire.now()
    ok = await wire.rpc(node, "store", {"pubkey": acct.pubkey, "namespace": ns, "timestamp": ts,
                                        "ttl": ttl, "data": b64(b"msg1"),
                                        "signature": acct.sign(f"store{ns}{ts}")})
    assert "hash" in ok.expect(200)
    old = ts - 100_000
    stale = await wire.rpc(node, "store", {"pubkey": acct.pubkey, "namespace": ns,
                                           "timestamp": old, "ttl": ttl, "data": b64(b"msg2"),
                                           "signature": acct.sign(f"store{ns}{old}")})
    assert (stale.status, stale.text) == (406, "store signature timestamp too far from current time")
    sig_ts = wire.now()
    fresh = await wire.rpc(node, "store", {"pubkey": acct.pubkey, "namespace": ns,
                                           "timestamp": old, "sig_timestamp": sig_ts, "ttl": ttl,
                                           "data": b64(b"msg3"),
                                           "signature": acct.sign(f"store{ns}{sig_ts}")})
    body = fresh.expect(200)
    assert all(not v.get("failed") for v in body["swarm"].values())
    assert {v["hash"] for v in body["swarm"].values()} == {body["hash"]}


async def test_legacy_closed_group_namespace_needs_no_auth(wire: Wire, account: Account) -> None:
    """Namespace -10: unauthenticated store and retrieve (namespace.h LegacyClosed)."""
    ts = wire.now()
    (await wire.store(account, b"legacy", namespace=-10, timestamp=ts, signed=False)).expect(200)
    node = wire.member(account)
    deadline = time.monotonic() + 10
    while True:
        r = await wire.rpc(node, "retrieve", {"pubkey": account.pubkey, "namespace": -10})
        msgs = r.expect(200)["messages"]
        if msgs or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert [m["hash"] for m in msgs] == [account.hash_of(b"legacy", -10)]


async def test_public_outbox_namespace(wire: Wire, account: Account) -> None:
    """Negative namespaces -(20n+1) (e.g. -1, -21) are "public outboxes": storing needs the
    owner's signature, retrieving needs none (namespace.h is_public_outbox_namespace,
    is_noauth_retrieve_namespace)."""
    unsigned = await wire.store(account, b"outbox", namespace=-21, signed=False)
    assert (unsigned.status, unsigned.text) == (
        401, "store: signature required to store to namespace -21"), str(unsigned)
    (await wire.store(account, b"outbox", namespace=-21, signed=True)).expect(200)
    node = wire.member(account)
    r = await wire.rpc(node, "retrieve", {"pubkey": account.pubkey, "namespace": -21})
    msgs = r.expect(200)["messages"]
    assert account.hash_of(b"outbox", -21) in [m["hash"] for m in msgs]


async def test_unprefixed_pubkey_is_an_05_account(wire: Wire) -> None:
    """On a testnet the storage server accepts a 64-hex pubkey without the network prefix and
    treats it as 05 (oxenss/common/pubkey.cpp, !is_mainnet); the network-tests' ss.py helpers
    (expire_all, delete_all, delete_msgs, delete_before) send such pubkeys."""
    acct = Account.new("bare")
    ts = wire.now()
    node = wire.member(acct)
    body = (await wire.rpc(node, "store", {"pubkey": acct.pubkey, "timestamp": ts,
                                           "ttl": 60_000, "data": b64(b"bare")})).expect(200)
    assert body["hash"] == acct.hash_of(b"bare")  # hashed as 05 ‖ key
    params = {"pubkey": acct.pubkey, "timestamp": ts, "signature": acct.sign(f"retrieve{ts}")}
    msgs = (await wire.rpc(node, "retrieve", params)).expect(200)["messages"]
    assert [m["hash"] for m in msgs] == [acct.hash_of(b"bare")]


async def test_max_message_size(wire: Wire, account: Account) -> None:
    """data may be up to 76,800 bytes; one more is a 400 (client_rpc_endpoints.h
    store::MAX_MESSAGE_BODY)."""
    big = bytes(76_800)
    (await wire.store(account, big)).expect(200)
    r = await wire.store(account, bytes(76_801))
    assert (r.status, r.text) == (
        400, "invalid request: Message body exceeds maximum allowed length of 76800 bytes"), str(r)


async def test_uppercase_pubkey_ed25519_is_accepted(wire: Wire, account: Account) -> None:
    """desktop sends pubkey_ed25519 upper-cased for delete_all and get_expiries
    (SnodeRequestTypes.ts); hex parsing must be case-insensitive."""
    (await wire.store(account, b"upper")).expect(200)
    node = wire.member(account)
    await wire.wait_retrievable(account, node, [account.hash_of(b"upper")])
    ts = wire.now()
    params = account.auth(f"retrieve{ts}")
    params["pubkey_ed25519"] = params["pubkey_ed25519"].upper()
    params["timestamp"] = ts
    msgs = (await wire.rpc(node, "retrieve", params)).expect(200)["messages"]
    assert [m["hash"] for m in msgs] == [account.hash_of(b"upper")]
