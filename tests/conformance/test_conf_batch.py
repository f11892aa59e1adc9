"""batch, sequence and ifelse meta-requests (how desktop does every poll and send, and what the
storage server's network-tests test_batch.py / test_ifelse.py expect).  Sources:
docs/conformance.md, section "Meta-requests"."""

from __future__ import annotations

from typing import Any

import pytest

from .wire import Account, Wire, assert_t_hf, b64, is_int

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker", "swarm")]


def store_req(acct: Account, data: bytes, ts: int, *, ttl: int = 86_400_000,
              namespace: int | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"pubkey": acct.pubkey, "timestamp": ts, "ttl": ttl,
                              "data": b64(data)}
    if namespace is not None:
        params["namespace"] = namespace
        if namespace % 10:
            params["signature"] = acct.sign(f"store{namespace}{ts}")
    return {"method": "store", "params": params}


def retrieve_req(acct: Account, ts: int, **extra: Any) -> dict[str, Any]:
    return {"method": "retrieve", "params": {"pubkey": acct.pubkey, "timestamp": ts,
                                             "signature": acct.sign(f"retrieve{ts}"), **extra}}


async def test_batch_json(wire: Wire) -> None:
    """network-tests test_batch_json: two signed stores to a 03 group namespace 42."""
    acct = Account.new("group")
    ts = wire.now()
    r = await wire.rpc(wire.member(acct), "batch", {"requests": [
        store_req(acct, b"abc 123", ts, namespace=42), store_req(acct, b"xyz 123", ts, namespace=42)]})
    body = r.expect(200)
    assert [x["code"] for x in body["results"]] == [200, 200]
    assert body["results"][0]["body"]["hash"] == acct.hash_of(b"abc 123", 42)
    assert body["results"][1]["body"]["hash"] == acct.hash_of(b"xyz 123", 42)


async def test_sequence(wire: Wire) -> None:
    """network-tests test_sequence: store, retrieve, store, delete_all, retrieve; the retrieve
    result is compared for equality with the exact message object."""
    acct = Account.new("ed05")
    ts = wire.now()
    ttl = 86_400_000
    seq = [store_req(acct, b"abc 123", ts), retrieve_req(acct, ts), store_req(acct, b"xyz 123", ts),
           {"method": "delete_all", "params": {"pubkey": acct.pubkey, "timestamp": ts,
                                               "signature": acct.sign(f"delete_all{ts}")}},
           retrieve_req(acct, ts)]
    body = (await wire.rpc(wire.member(acct), "sequence", {"requests": seq})).expect(200)
    res = body["results"]
    assert len(res) == 5 and [x["code"] for x in res] == [200] * 5, res
    h0, h1 = acct.hash_of(b"abc 123"), acct.hash_of(b"xyz 123")
    assert res[0]["body"]["hash"] == h0
    assert res[1]["body"]["messages"] == [
        {"data": "YWJjIDEyMw==", "expiration": ts + ttl, "hash": h0, "timestamp": ts}]
    assert res[2]["body"]["hash"] == h1
    assert res[3]["body"]["swarm"]
    for sw in res[3]["body"]["swarm"].values():
        assert set(sw["deleted"]) == {h0, h1}
    assert res[4]["body"]["messages"] == []


async def test_failing_sequence_stops_batch_does_not(wire: Wire) -> None:
    """network-tests test_failing_sequence: the error body of a sub-request is the plain error
    string."""
    acct = Account.new("ed05")
    ts = wire.now()
    reqs = {"requests": [store_req(acct, b"abc 123", ts) | {"params": {
        **store_req(acct, b"abc 123", ts)["params"], "namespace": 33}}, retrieve_req(acct, ts)]}
    node = wire.member(acct)
    seq = (await wire.rpc(node, "sequence", reqs)).expect(200)["results"]
    assert len(seq) == 1 and seq[0]["code"] == 401
    assert seq[0]["body"] == "store: signature required to store to namespace 33"
    bat = (await wire.rpc(node, "batch", reqs)).expect(200)["results"]
    assert len(bat) == 2 and bat[0]["code"] == 401
    assert bat[0]["body"] == "store: signature required to store to namespace 33"
    assert bat[1]["code"] == 200 and bat[1]["body"]["messages"] == []


async def test_desktop_poll_batch(wire: Wire, account: Account) -> None:
    """desktop's poll: a batch of retrieves (namespaces 0 and config namespaces, negative
    max_size) plus an expire; every sub-result body carries t (getNetworkTime) and hf."""
    ts = wire.now()
    (await wire.store(account, b"poll me", timestamp=ts)).expect(200)
    h = account.hash_of(b"poll me")
    reqs = []
    for ns in (0, 2, 3, 4, 5):
        nss = "" if ns == 0 else str(ns)
        reqs.append({"method": "retrieve", "params": {
            "namespace": ns, "timestamp": ts, "last_hash": "", "max_size": -5,
            **account.auth(f"retrieve{nss}{ts}")}})
    exp = ts + 30 * 24 * 3600 * 1000 - 60_000
    reqs.append({"method": "expire", "params": {"messages": [h], "expiry": exp,
                                                **account.auth(f"expire{exp}{h}")}})
    body = (await wire.rpc(wire.member(account), "batch", {"requests": reqs})).expect(200)
    results = body["results"]
    assert isinstance(results, list) and len(results) == len(reqs)
    for i, res in enumerate(results):
        assert set(res) == {"code", "body"}, res
        assert res["code"] == 200, res
        assert_t_hf(res["body"], what=f"batch result {i}")
    assert [m["hash"] for m in results[0]["body"]["messages"]] == [h]
    assert all(r["body"]["messages"] == [] for r in results[1:5])


async def test_batch_limits_and_errors(wire: Wire, account: Account) -> None:
    node = wire.member(account)
    info = {"method": "info", "params": {}}
    ok = (await wire.rpc(node, "batch", {"requests": [info] * 20})).expect(200)
    assert [r["code"] for r in ok["results"]] == [200] * 20
    cases = [
        ({"requests": [info] * 21}, "invalid request: Invalid batch request: subrequest limit exceeded"),
        ({"requests": []}, 'invalid request: Invalid batch request: no valid "requests" field'),
        ({}, 'invalid request: Invalid batch request: no valid "requests" field'),
        ({"requests": [{"method": "batch", "params": {"requests": [info]}}]},
         "invalid request: Invalid batch subrequest: subrequests may not contain meta-requests"),
        ({"requests": [{"method": "nope", "params": {}}]},
         'invalid request: Invalid batch subrequest: invalid method "nope"'),
        ({"requests": [{"method": "info"}]},
         "invalid request: Invalid batch request: subrequests must have method/params keys"),
    ]
    for params, text in cases:
        for method in ("batch", "sequence"):
            r = await wire.rpc(node, method, params)
            assert (r.status, r.text) == (400, text), f"{method} {str(params)[:80]}: {r}"
    (await wire.rpc(node, "info", {})).expect(200)


async def test_ifelse(wire: Wire) -> None:
    """network-tests test_ifelse (the conditions that do not depend on the chain height): the
    answer carries hf, v, height and condition, and the chosen branch's result."""
    acct = Account.new("ed05")
    ts = wire.now()
    node = wire.member(acct)

    def store(msg: str, t: int) -> dict[str, Any]:
        return {"method": "store", "params": {"pubkey": acct.pubkey, "timestamp": t,
                                              "ttl": 86_400_000, "data": msg}}

    yes, no = "Yes=", "Nope"
    m_yes, m_no = b"\x61\xeb", b"\x36\x8a\x5e"
    cases = [
        ({"if": {"hf_at_least": [2000000]}, "then": store(yes, ts), "else": store(no, ts)},
         False, m_no),
        ({"if": {"hf_at_least": [19]}, "then": store(yes, ts + 1), "else": store(no, ts + 1)},
         True, m_yes),
        ({"if": {"hf_at_least": [19, 1]}, "then": store(yes, ts + 2)}, True, m_yes),
        ({"if": {"hf_before": [19]}, "then": store(yes, ts + 3)}, False, None),
        ({"if": {"hf_at_least": [19]}, "else": store(yes, ts + 4)}, True, None),
        ({"if": {"hf_before": [19]}, "else": store(no, ts + 5)}, False, m_no),
        ({"if": {"v_at_least": [2, 2]}, "then": {"method": "batch", "params": {"requests": [
            store(yes, ts + 6)]}}}, True, "batch"),
    ]
    for params, cond, data in cases:
        body = (await wire.rpc(node, "ifelse", params)).expect(200)
        assert body["condition"] is cond, (params["if"], body)
        assert is_int(body["height"]) and isinstance(body["hf"], list)
        assert isinstance(body["v"], list) and len(body["v"]) == 3
        if data is None:
            assert "result" not in body, body
        elif data == "batch":
            inner = body["result"]
            assert inner["code"] == 200 and inner["body"]["results"][0]["code"] == 200
            assert inner["body"]["results"][0]["body"]["hash"] == acct.hash_of(m_yes)
        else:
            assert body["result"]["code"] == 200
            assert body["result"]["body"]["hash"] == acct.hash_of(data)
