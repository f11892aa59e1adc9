"""delete, delete_all, delete_before, expire, expire_all, get_expiries and the group subaccount
revocation list, with every swarm member's signed result verified exactly as the storage
server's network-tests do.  Sources: docs/conformance.md, section "Mutations"."""

from __future__ import annotations

from typing import Any

import pytest

from .wire import DAY_MS, Account, Wire, assert_t_hf, b64, is_int, verify_node_sig

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker", "swarm")]

FAKE = "bepQtTaYrzcuCXO3fZkmk/h3xkMQ3vCh94i5HzLmj3I"  # a valid-looking hash nobody stored


async def members_of(wire: Wire, account: Account) -> set[str]:
    body = (await wire.rpc(wire.nodes[0], "get_swarm", {"pubkey": account.pubkey})).expect(200)
    return {sn["pubkey_ed25519"] for sn in body["snodes"]}


async def store_n(wire: Wire, account: Account, n: int, *, ttl: int = 60_000,
                  base: bytes = b"omg123") -> list[dict[str, Any]]:
    """network-tests ss.store_n: n messages with decreasing timestamps (1 s apart)."""
    now = wire.now()
    out = []
    for i in range(n):
        data = base + str(i).encode()
        ts = now - i * 1000
        (await wire.store(account, data, timestamp=ts, ttl=ttl, signed=False)).expect(200)
        out.append({"data": data, "ts": ts, "expiry": ts + ttl, "hash": account.hash_of(data)})
    return out


def swarm_results(body: Any, members: set[str], *, what: str) -> dict[str, dict[str, Any]]:
    assert_t_hf(body, what=what)
    swarm = body.get("swarm")
    assert isinstance(swarm, dict) and set(swarm) == members, (
        f"{what}: results for {sorted(swarm or {})}, swarm is {sorted(members)}")
    for ed, res in swarm.items():
        assert not res.get("failed"), f"{what}: member {ed} failed: {res}"
    return swarm


async def test_delete(wire: Wire) -> None:
    """network-tests test_delete: deleted = sorted hashes actually deleted; signature over
    ( PUBKEY_HEX ‖ RMSG… ‖ DMSG… ) with the requested hashes in request order."""
    acct = Account.new("ed05")
    members = await members_of(wire, acct)
    msgs = await store_n(wire, acct, 5)
    actual = sorted(msgs[i]["hash"] for i in (1, 4))
    requested = sorted(actual + ["garbageYrzcuCXO3fZkmk/h3xkMQ3vCh94i5HzLmj3I"], reverse=True)
    params = {"pubkey": acct.pubkey, "messages": requested,
              "signature": acct.sign("delete" + "".join(requested))}
    body = (await wire.rpc(wire.member(acct), "delete", params)).expect(200)
    signed = acct.prefixed + "".join(requested) + "".join(actual)
    for ed, res in swarm_results(body, members, what="delete").items():
        assert res["deleted"] == actual, f"{ed}: deleted {res['deleted']}"
        verify_node_sig(ed, signed, res["signature"], what=f"delete@{ed[:12]}")
    left = await wire.retrieve_all(acct)
    assert sorted(m["hash"] for m in left) == sorted(m["hash"] for i, m in enumerate(msgs)
                                                     if i not in (1, 4))


async def test_delete_required(wire: Wire, account: Account) -> None:
    """required=true: 404 when no member deleted anything; without it, 200 even if nothing was
    found (network-tests test_delete_required)."""
    msgs = await store_n(wire, account, 2)
    hashes = sorted(m["hash"] for m in msgs) + ["garbageYrzcuCXO3fZkmk/h3xkMQ3vCh94i5HzLmj3I"]
    params = {"messages": hashes, "required": True, **account.auth("delete" + "".join(hashes))}
    node = wire.member(account)
    (await wire.rpc(node, "delete", params)).expect(200)
    again = await wire.rpc(node, "delete", params)
    assert again.status == 404, f"second required delete: {again}"
    del params["required"]
    (await wire.rpc(node, "delete", params)).expect(200)


async def test_delete_all_default_namespace(wire: Wire) -> None:
    """network-tests test_delete_all: signature ( PUBKEY_HEX ‖ TIMESTAMP ‖ DELETEDHASH… )."""
    acct = Account.new("ed05")
    members = await members_of(wire, acct)
    msgs = await store_n(wire, acct, 5)
    ts = wire.now()
    params = {"pubkey": acct.pubkey, "timestamp": ts, "signature": acct.sign(f"delete_all{ts}")}
    body = (await wire.rpc(wire.member(acct), "delete_all", params)).expect(200)
    hashes = sorted(m["hash"] for m in msgs)
    for ed, res in swarm_results(body, members, what="delete_all").items():
        assert res["deleted"] == hashes
        verify_node_sig(ed, acct.prefixed + str(ts) + "".join(hashes), res["signature"],
                        what=f"delete_all@{ed[:12]}")
    assert await wire.retrieve_all(acct) == []


async def test_delete_all_all_namespaces_desktop_style(wire: Wire, account: Account) -> None:
    """desktop DeleteAllFromUserNodeSubRequest: namespace "all", pubkey_ed25519 upper-cased;
    per member deleted = {ns: [sorted hashes]} and the signature is over every deleted hash,
    totally ordered (network-tests test_delete_all_all)."""
    members = await members_of(wire, account)
    msgs = await store_n(wire, account, 3)
    ts = wire.now()
    (await wire.store(account, b"abc 123", namespace=-42, timestamp=ts, ttl=30_000)).expect(200)
    h42 = account.hash_of(b"abc 123", -42)
    params = {"timestamp": ts, "namespace": "all", **account.auth(f"delete_allall{ts}")}
    params["pubkey_ed25519"] = params["pubkey_ed25519"].upper()
    body = (await wire.rpc(wire.member(account), "delete_all", params)).expect(200)
    expected = {"-42": [h42], "0": sorted(m["hash"] for m in msgs)}
    everything = sorted([h42] + [m["hash"] for m in msgs])
    for ed, res in swarm_results(body, members, what="delete_all(all)").items():
        assert res["deleted"] == expected, f"{ed}: {res['deleted']}"
        verify_node_sig(ed, account.prefixed + str(ts) + "".join(everything), res["signature"],
                        what=f"delete_all(all)@{ed[:12]}")
    assert await wire.retrieve_all(account) == []


async def test_delete_all_stale_timestamp(wire: Wire, account: Account) -> None:
    """network-tests test_stale_delete_all: ±120 s -> 406 with this exact text."""
    node = wire.member(account)
    for delta in (-120_000, 120_000):
        ts = wire.now() + delta
        r = await wire.rpc(node, "delete_all", {"timestamp": ts,
                                                **account.auth(f"delete_all{ts}")})
        assert (r.status, r.text) == (406, "delete_all timestamp too far from current time"), str(r)


async def test_delete_before(wire: Wire) -> None:
    """network-tests test_delete_before: deletes messages with timestamp <= before; signature
    ( PUBKEY_HEX ‖ BEFORE ‖ DELETEDHASH… ), also when nothing matched."""
    acct = Account.new("ed05")
    members = await members_of(wire, acct)
    msgs = await store_n(wire, acct, 6)
    before = msgs[3]["ts"]
    expected = sorted(msgs[i]["hash"] for i in range(3, 6))
    node = wire.member(acct)
    params = {"pubkey": acct.pubkey, "before": before,
              "signature": acct.sign(f"delete_before{before}")}
    body = (await wire.rpc(node, "delete_before", params)).expect(200)
    for ed, res in swarm_results(body, members, what="delete_before").items():
        assert res["deleted"] == expected
        verify_node_sig(ed, acct.prefixed + str(before) + "".join(expected), res["signature"],
                        what=f"delete_before@{ed[:12]}")
    left = await wire.retrieve_all(acct, node=node)
    assert len(left) == 3
    before = msgs[2]["ts"] - 1
    params = {"pubkey": acct.pubkey, "before": before,
              "signature": acct.sign(f"delete_before{before}")}
    body = (await wire.rpc(node, "delete_before", params)).expect(200)
    for ed, res in swarm_results(body, members, what="empty delete_before").items():
        assert res["deleted"] == []
        verify_node_sig(ed, acct.prefixed + str(before), res["signature"],
                        what=f"empty delete_before@{ed[:12]}")


async def test_expire(wire: Wire) -> None:
    """network-tests test_expire: updated = sorted hashes found; signature ( PUBKEY_HEX ‖ EXPIRY ‖
    RMSG… ‖ UMSG… ) with RMSG in request order; retrieve shows the new expiries."""
    acct = Account.new("ed05")
    members = await members_of(wire, acct)
    msgs = await store_n(wire, acct, 10)
    ts = msgs[6]["expiry"]
    picked = (0, 1, 5, 6, 7, 9)
    hashes = sorted([msgs[i]["hash"] for i in picked] + [FAKE], reverse=True)
    actual = sorted(msgs[i]["hash"] for i in picked)
    params = {"pubkey": acct.pubkey, "messages": hashes, "expiry": ts,
              "signature": acct.sign(f"expire{ts}{''.join(hashes)}")}
    node = wire.member(acct)
    body = (await wire.rpc(node, "expire", params)).expect(200)
    for ed, res in swarm_results(body, members, what="expire").items():
        assert res["updated"] == actual, f"{ed}: updated {res['updated']}"
        assert res["expiry"] == ts
        assert "unchanged" not in res, "'unchanged' only comes with shorten/extend"
        verify_node_sig(ed, acct.prefixed + str(ts) + "".join(hashes) + "".join(actual),
                        res["signature"], what=f"expire@{ed[:12]}")
    got = {m["hash"]: m["expiration"] for m in await wire.retrieve_all(acct, node=node)}
    for i, m in enumerate(msgs):
        assert got[m["hash"]] == (ts if i in picked else m["expiry"]), i


async def test_expire_is_capped_at_30_days(wire: Wire, account: Account) -> None:
    """network-tests test_expire_extend: an expiry beyond the 30-day maximum is cut to now+30d,
    reported in "expiry" and used in the signature."""
    members = await members_of(wire, account)
    msgs = await store_n(wire, account, 1)
    far = wire.now() + 31 * DAY_MS
    h = msgs[0]["hash"]
    params = {"messages": [h], "expiry": far, **account.auth(f"expire{far}{h}")}
    body = (await wire.rpc(wire.member(account), "expire", params)).expect(200)
    for ed, res in swarm_results(body, members, what="expire(31d)").items():
        exp = res["expiry"]
        assert is_int(exp) and exp < far and abs(exp - (wire.now() + 30 * DAY_MS)) <= 5000, exp
        assert res["updated"] == [h]
        verify_node_sig(ed, account.prefixed + str(exp) + h + h, res["signature"],
                        what=f"expire(31d)@{ed[:12]}")


async def test_expire_shorten_reports_unchanged(wire: Wire, account: Account) -> None:
    """shorten: only earlier expiries apply; the others come back in "unchanged" {hash: expiry}
    and the signature appends (HASH ‖ EXPIRY) of them, sorted by hash (client_rpc_endpoints.h
    expire_msgs)."""
    members = await members_of(wire, account)
    msgs = await store_n(wire, account, 4, ttl=60_000)
    target = msgs[1]["expiry"]  # later than 2 and 3, earlier than 0
    hashes = [m["hash"] for m in msgs]
    params = {"messages": hashes, "expiry": target, "shorten": True,
              **account.auth(f"expireshorten{target}{''.join(hashes)}")}
    body = (await wire.rpc(wire.member(account), "expire", params)).expect(200)
    updated = [msgs[0]["hash"]]
    unchanged = {m["hash"]: m["expiry"] for m in msgs[1:]}
    tail = "".join(f"{h}{unchanged[h]}" for h in sorted(unchanged))
    for ed, res in swarm_results(body, members, what="expire(shorten)").items():
        assert res["updated"] == updated, res
        assert res["unchanged"] == unchanged, res
        assert res["expiry"] == target
        verify_node_sig(ed, account.prefixed + str(target) + "".join(hashes) + "".join(updated)
                        + tail, res["signature"], what=f"expire(shorten)@{ed[:12]}")


async def test_expire_in_the_past_is_refused(wire: Wire, account: Account) -> None:
    msgs = await store_n(wire, account, 1)
    past = wire.now() - 120_000
    h = msgs[0]["hash"]
    r = await wire.rpc(wire.member(account), "expire", {
        "messages": [h], "expiry": past, **account.auth(f"expire{past}{h}")})
    assert (r.status, r.text) == (401, "expire: timestamp should be >= current time"), str(r)


async def test_expire_all(wire: Wire) -> None:
    """network-tests test_expire_all: only shortens; updated = sorted hashes whose expiry was
    later; signature ( PUBKEY_HEX ‖ EXPIRY ‖ UPDATED… )."""
    acct = Account.new("ed05")
    members = await members_of(wire, acct)
    msgs = await store_n(wire, acct, 5)
    ts = msgs[2]["expiry"]
    node = wire.member(acct)
    params = {"pubkey": acct.pubkey, "expiry": ts, "signature": acct.sign(f"expire_all{ts}")}
    body = (await wire.rpc(node, "expire_all", params)).expect(200)
    updated = sorted(msgs[i]["hash"] for i in (0, 1))
    for ed, res in swarm_results(body, members, what="expire_all").items():
        assert res["updated"] == updated
        verify_node_sig(ed, acct.prefixed + str(ts) + "".join(updated), res["signature"],
                        what=f"expire_all@{ed[:12]}")
    got = {m["hash"]: m["expiration"] for m in await wire.retrieve_all(acct, node=node)}
    assert [got[m["hash"]] for m in msgs] == [ts, ts, ts, msgs[3]["expiry"], msgs[4]["expiry"]]


async def test_expire_all_stale(wire: Wire) -> None:
    """network-tests test_stale_expire_all."""
    acct = Account.new("ed05")
    await store_n(wire, acct, 1)
    ts = wire.now() - 120_000
    r = await wire.rpc(wire.member(acct), "expire_all", {
        "pubkey": acct.pubkey, "expiry": ts, "signature": acct.sign(f"expire_all{ts}")})
    assert (r.status, r.text) == (406, "expire_all timestamp should be >= current time"), str(r)


async def test_get_expiries(wire: Wire, account: Account) -> None:
    """desktop GetExpiriesFromNodeSubRequest (upper-cased pubkey_ed25519): {"expiries":
    {hash: expiry}} listing only messages that exist."""
    msgs = await store_n(wire, account, 3)
    ts = wire.now()
    hashes = [m["hash"] for m in msgs] + [FAKE]
    params = {"messages": hashes, "timestamp": ts,
              **account.auth(f"get_expiries{ts}{''.join(hashes)}")}
    params["pubkey_ed25519"] = params["pubkey_ed25519"].upper()
    for node in wire.swarm_of(account):
        body = (await wire.rpc(node, "get_expiries", params)).expect(200)
        assert body.get("expiries") == {m["hash"]: m["expiry"] for m in msgs}, body


async def test_get_expiries_stale_timestamp(wire: Wire, account: Account) -> None:
    ts = wire.now() - 120_000
    r = await wire.rpc(wire.member(account), "get_expiries", {
        "messages": [FAKE], "timestamp": ts, **account.auth(f"get_expiries{ts}{FAKE}")})
    assert (r.status, r.text) == (406, "get_expiries timestamp too far from current time"), str(r)


def make_subaccount(group: Account, *, read: bool = True, write: bool = True,
                    delete: bool = False) -> tuple[Account, bytes, str]:
    """A group subaccount: token = prefix 03 ‖ flags ‖ 00 00 ‖ member Ed25519 key, authorised by
    the admin's signature of the token (oxenss/common/subaccount_token.h; network-tests
    subaccount.py make_subaccount)."""
    member = Account.new("group")
    flags = int(read) | int(write) << 1 | int(delete) << 2
    token = bytes([0x03, flags, 0, 0]) + member.identity.ed25519_public
    return member, token, group.sign(token)


async def test_subaccount_auth_and_revocation(wire: Wire) -> None:
    """network-tests test_subaccount_auth.py: a read/write subaccount stores and retrieves in a
    group namespace; the admin revokes it (each member signs ( PUBKEY_HEX ‖ TIMESTAMP ‖ TOKEN
    BYTES ), revoked_subaccounts lists it, retrieval fails with 401 except in the unrevocable
    namespace -11), then unrevokes it.  desktop sends the tokens hex-encoded
    (SubaccountRevokeSubRequest); base64 is accepted too."""
    group = Account.new("group")
    members = await members_of(wire, group)
    node = wire.member(group)
    member, token, token_sig = make_subaccount(group)
    sub = {"subaccount": b64(token), "subaccount_sig": token_sig}
    ts = wire.now()
    stored = await wire.rpc(node, "store", {
        "pubkey": group.pubkey, "namespace": 42, "timestamp": ts, "ttl": 86_400_000,
        "data": b64(b"abc 123"), "signature": member.sign(f"store42{ts}"), **sub})
    h = group.hash_of(b"abc 123", 42)
    assert stored.expect(200)["hash"] == h
    (await wire.store(group, b"def 123", namespace=-11, timestamp=ts, node=node)).expect(200)
    h11 = group.hash_of(b"def 123", -11)

    def sub_retrieve(ns: int) -> dict[str, Any]:
        return {"pubkey": group.pubkey, "namespace": ns, "timestamp": ts,
                "signature": member.sign(f"retrieve{ns}{ts}"), **sub}

    got = (await wire.rpc(node, "retrieve", sub_retrieve(42))).expect(200)
    assert [m["hash"] for m in got["messages"]] == [h]

    def listed() -> dict[str, Any]:
        return {"pubkey": group.pubkey, "timestamp": ts,
                "signature": group.sign(f"revoked_subaccounts{ts}")}

    assert (await wire.rpc(node, "revoked_subaccounts", listed())).expect(200)[
        "revoked_subaccounts"] == []
    body = (await wire.rpc(node, "revoke_subaccount", {
        "pubkey": group.pubkey, "revoke": [token.hex()], "timestamp": ts,
        "signature": group.sign(f"revoke_subaccount{ts}".encode() + token)})).expect(200)
    for ed, res in swarm_results(body, members, what="revoke_subaccount").items():
        verify_node_sig(ed, group.prefixed.encode() + str(ts).encode() + token, res["signature"],
                        what=f"revoke_subaccount@{ed[:12]}")
        # 2.8.0: a member's revoke answer is its signature only (count is unrevoke's)
        assert set(res) == {"signature"}, f"revoke_subaccount@{ed[:12]}: {res}"
    revoked = (await wire.rpc(node, "revoked_subaccounts", listed())).expect(200)
    assert revoked["revoked_subaccounts"] == [b64(token)]
    denied = await wire.rpc(node, "retrieve", sub_retrieve(42))
    assert (denied.status, denied.text) == (401, "retrieve signature verification failed")
    still = (await wire.rpc(node, "retrieve", sub_retrieve(-11))).expect(200)
    assert [m["hash"] for m in still["messages"]] == [h11]
    body = (await wire.rpc(node, "unrevoke_subaccount", {
        "pubkey": group.pubkey, "unrevoke": b64(token), "timestamp": ts + 1,
        "signature": group.sign(f"unrevoke_subaccount{ts + 1}".encode() + token)})).expect(200)
    for ed, res in swarm_results(body, members, what="unrevoke_subaccount").items():
        verify_node_sig(ed, group.prefixed.encode() + str(ts + 1).encode() + token,
                        res["signature"], what=f"unrevoke_subaccount@{ed[:12]}")
        assert res.get("count") == 1, f"unrevoke_subaccount@{ed[:12]}: {res}"
    again = (await wire.rpc(node, "retrieve", sub_retrieve(42))).expect(200)
    assert [m["hash"] for m in again["messages"]] == [h]


async def test_subaccount_without_delete_only_extends(wire: Wire) -> None:
    """network-tests test_expire_subaccount: a subaccount without the delete bit can extend but
    not shorten expiries."""
    group = Account.new("group")
    node = wire.member(group)
    msgs = await store_n(wire, group, 3)
    member, token, token_sig = make_subaccount(group)
    sub = {"subaccount": b64(token), "subaccount_sig": token_sig}
    now = wire.now()
    day = now + DAY_MS
    body = (await wire.rpc(node, "expire", {
        "pubkey": group.pubkey, "messages": [msgs[0]["hash"]], "expiry": day,
        "signature": member.sign(f"expire{day}{msgs[0]['hash']}"), **sub})).expect(200)
    for res in body["swarm"].values():
        assert res["expiry"] == day and res["updated"] == [msgs[0]["hash"]]
    half = now + DAY_MS // 2
    hashes = [m["hash"] for m in msgs]
    body = (await wire.rpc(node, "expire", {
        "pubkey": group.pubkey, "messages": hashes, "expiry": half,
        "signature": member.sign(f"expire{half}{''.join(hashes)}"), **sub})).expect(200)
    for res in body["swarm"].values():
        assert res["expiry"] == half and set(res["updated"]) == set(hashes[1:])


async def test_revocation_list_endpoints(wire: Wire) -> None:
    """revoke_subaccount / revoked_subaccounts / unrevoke_subaccount on their own (admin key
    only, no subaccount authentication involved); "count" is the number of tokens actually
    un-revoked (client_rpc_endpoints.h)."""
    group = Account.new("group")
    members = await members_of(wire, group)
    node = wire.member(group)
    _, token, _ = make_subaccount(group)
    ts = wire.now()
    body = (await wire.rpc(node, "revoke_subaccount", {
        "pubkey": group.pubkey, "revoke": [token.hex()], "timestamp": ts,
        "signature": group.sign(f"revoke_subaccount{ts}".encode() + token)})).expect(200)
    swarm_results(body, members, what="revoke_subaccount")
    listed = (await wire.rpc(node, "revoked_subaccounts", {
        "pubkey": group.pubkey, "timestamp": ts,
        "signature": group.sign(f"revoked_subaccounts{ts}")})).expect(200)
    assert_t_hf(listed, what="revoked_subaccounts")
    assert listed["revoked_subaccounts"] == [b64(token)]
    body = (await wire.rpc(node, "unrevoke_subaccount", {
        "pubkey": group.pubkey, "unrevoke": [token.hex()], "timestamp": ts,
        "signature": group.sign(f"unrevoke_subaccount{ts}".encode() + token)})).expect(200)
    for res in swarm_results(body, members, what="unrevoke_subaccount").values():
        assert res.get("count") == 1, res
