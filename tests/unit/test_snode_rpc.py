"""Storage RPC validation and handlers (nodes.snode.rpc) against a real SQLite store."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from nodes.protocol import signing
from nodes.protocol.constants import HARDFORK, MAX_MESSAGE_DATA
from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import Identity, verify_ed25519
from nodes.snode.behaviours import Behaviours
from nodes.snode.clock import Clock
from nodes.snode.rpc import RpcHandler
from nodes.snode.storage import Storage
from nodes.snode.testing import account_in_swarm, make_view, node_identity

pytestmark = pytest.mark.unit

SWARM_A, SWARM_B = 0, 0x7FFFFFFFFFFFFFFF


class FakeForwarder:
    def __init__(self, results: dict[str, dict[str, Any]] | None = None) -> None:
        self.calls: list[tuple[list[str], str, dict[str, Any]]] = []
        self.results = results

    async def forward(self, peers, method, params):
        self.calls.append(([p.pubkey_ed25519 for p in peers], method, dict(params)))
        if self.results is not None:
            return self.results
        return {p.pubkey_ed25519: {"failed": True, "timeout": True} for p in peers}


@pytest.fixture
def net():
    nodes = [node_identity(f"sn{i}") for i in range(6)]
    me = nodes[0]
    view = make_view(me, {SWARM_A: nodes[:3], SWARM_B: nodes[3:]})
    return me, nodes, view


@pytest.fixture
def storage(tmp_path):
    s = Storage(tmp_path / "storage.db")
    yield s
    s.close()


@pytest.fixture
def handler(net, storage):
    me, nodes, view = net
    fwd = FakeForwarder(results={})
    h = RpcHandler(me, storage, Clock(), lambda: view, fwd, None, Behaviours())
    h.fake_forwarder = fwd  # type: ignore[attr-defined]
    return h


@pytest.fixture
def acct(net):
    return account_in_swarm(net[2], SWARM_A)


@pytest.fixture
def foreign(net):
    return account_in_swarm(net[2], SWARM_B)


def now_ms() -> int:
    return int(time.time() * 1000)


def store_params(acct: Identity, data: bytes = b"hello", ns: int = 0, ttl: int = 60_000,
                 ts: int | None = None, sign: bool = False, **extra) -> dict[str, Any]:
    ts = now_ms() if ts is None else ts
    p: dict[str, Any] = {"pubkey": acct.session_id, "timestamp": ts, "ttl": ttl,
                         "data": base64.b64encode(data).decode()}
    if ns:
        p["namespace"] = ns
    if sign:
        p["sig_timestamp"] = ts
        p["pubkey_ed25519"] = acct.ed25519_hex
        p["signature"] = signing.sign_request(acct, signing.store_message(ns, ts))
    p.update(extra)
    return p


def retrieve_params(acct: Identity, ns: int = 0, ts: int | None = None, **extra) -> dict[str, Any]:
    ts = now_ms() if ts is None else ts
    p: dict[str, Any] = {"pubkey": acct.session_id, "timestamp": ts, "pubkey_ed25519": acct.ed25519_hex,
                         "signature": signing.sign_request(acct, signing.retrieve_message(ns, ts))}
    if ns:
        p["namespace"] = ns
    p.update(extra)
    return p


async def call(h: RpcHandler, method: str, params: Any):
    resp, _, _ = await h.handle_body(json.dumps({"method": method, "params": params}))
    return resp


# --- envelope ------------------------------------------------------------------------------------

async def test_malformed_json_and_envelope_errors(handler):
    r, _, _ = await handler.handle_body(b"{not json")
    assert (r.status, r.body) == (400, "invalid json")
    r, _, _ = await handler.handle_body(b'{"params": {}}')
    assert (r.status, r.body) == (400, "invalid json: no `method` field")
    r, _, _ = await handler.handle_body(b'{"method": "info"}')
    assert (r.status, r.body) == (400, "invalid json: no `params` field")
    r = await call(handler, "frobnicate", {})
    assert (r.status, r.body) == (400, "no method frobnicate")


async def test_info_and_get_swarm_carry_t_and_hf(handler, net, foreign):
    r = await call(handler, "info", {})
    assert r.status == 200
    assert r.body["hf"] == list(HARDFORK)
    assert abs(r.body["t"] - now_ms()) < 5_000
    assert len(r.body["version"]) == 3
    r = await call(handler, "get_snodes_for_pubkey", {"pubKey": foreign.session_id})
    assert r.status == 200 and r.body["swarm"] == "7fffffffffffffff"
    assert {s["pubkey_ed25519"] for s in r.body["snodes"]} == {n.ed25519_hex for n in net[1][3:]}
    s = r.body["snodes"][0]
    assert set(s) >= {"address", "pubkey_legacy", "pubkey_x25519", "pubkey_ed25519", "port",
                      "port_https", "port_omq", "ip"}
    assert isinstance(s["port"], str) and s["address"].endswith(".snode")


# --- store ---------------------------------------------------------------------------------------

async def test_store_returns_protocol_hash_and_node_signature(handler, net, acct):
    me = net[0]
    r = await call(handler, "store", store_params(acct, b"payload"))
    assert r.status == 200, r.body
    h = message_hash(acct.session_id, 0, b"payload")
    assert r.body["hash"] == h
    mine = r.body["swarm"][me.ed25519_hex]
    assert mine["hash"] == h
    assert verify_ed25519(me.ed25519_public, h.encode(), base64.b64decode(mine["signature"]))
    assert "already" not in mine
    assert r.body["hf"] == list(HARDFORK)
    # fanned out to both peers of swarm A with the original params
    peers, method, params = handler.fake_forwarder.calls[0]
    assert method == "store" and sorted(peers) == sorted(n.ed25519_hex for n in net[1][1:3])
    assert params["data"] == base64.b64encode(b"payload").decode()
    # duplicate store is flagged: true by the entry node, 1 in a peer's (forwarded) answer, as
    # 2.8.0's peers answer over bt-encoded OxenMQ
    r2 = await call(handler, "store", store_params(acct, b"payload"))
    assert r2.body["swarm"][me.ed25519_hex]["already"] is True
    r3 = await handler.handle("store", store_params(acct, b"payload"), forwarded=True)
    assert r3.status == 200 and r3.body["already"] == 1 and r3.body["already"] is not True


async def test_store_stringified_ttl_and_expiry(handler, acct):
    ts = now_ms()
    r = await call(handler, "store", store_params(acct, b"a", ts=ts, ttl="20000"))
    assert r.status == 200 and r.body["swarm"][handler.my_ed]["expiry"] == ts + 20_000
    p = store_params(acct, b"b", ts=ts)
    del p["ttl"]
    p["expiry"] = ts + 30_000
    r = await call(handler, "store", p)
    assert r.status == 200 and r.body["swarm"][handler.my_ed]["expiry"] == ts + 30_000
    p["ttl"] = 1000
    r = await call(handler, "store", p)
    assert r.status == 400 and "Cannot specify both" in r.body


@pytest.mark.parametrize("ttl", [9_999, 14 * 86_400_000 + 1])
async def test_store_bad_ttl_is_403(handler, acct, ttl):
    r = await call(handler, "store", store_params(acct, ttl=ttl))
    assert (r.status, r.body) == (403, "Provided expiry/TTL is not valid.")


async def test_store_private_namespace_allows_30_days(handler, acct):
    r = await call(handler, "store", store_params(acct, ns=5, ttl=29 * 86_400_000, sign=True))
    assert r.status == 200, r.body


async def test_store_clock_skew_is_406(handler, acct):
    r = await call(handler, "store", store_params(acct, ts=now_ms() + 20_000))
    assert (r.status, r.body) == (406, "Timestamp error: check your clock")
    r = await call(handler, "store", store_params(acct, ts=now_ms() - 120_000, ttl=60_000))
    assert r.status == 406


async def test_store_clock_offset_shifts_validation(handler, acct):
    handler.clock.offset_ms = 3_600_000  # node thinks it is an hour later
    r = await call(handler, "store", store_params(acct))
    assert r.status == 406
    r = await call(handler, "info", {})
    assert r.body["t"] - now_ms() > 3_500_000


async def test_store_auth_namespace_needs_valid_signature(handler, acct):
    p = store_params(acct, ns=3)
    r = await call(handler, "store", p)
    assert (r.status, r.body) == (401, "store: signature required to store to namespace 3")
    p = store_params(acct, ns=3, sign=True)
    p["signature"] = signing.sign_request(node_identity("intruder"), signing.store_message(3, p["timestamp"]))
    r = await call(handler, "store", p)
    assert (r.status, r.body) == (401, "store signature verification failed")
    r = await call(handler, "store", store_params(acct, ns=3, sign=True))
    assert r.status == 200
    p = store_params(acct, ns=3, sign=True, signature="not-base64!")
    r = await call(handler, "store", p)
    assert r.status == 400 and r.body.startswith("invalid request: invalid signature")


async def test_store_oversized_data(handler, acct):
    r = await call(handler, "store", store_params(acct, b"x" * MAX_MESSAGE_DATA))
    assert r.status == 200
    r = await call(handler, "store", store_params(acct, b"x" * (MAX_MESSAGE_DATA + 1)))
    assert r.status == 400
    assert r.body == "invalid request: Message body exceeds maximum allowed length of 76800 bytes"


@pytest.mark.parametrize("params,reason", [
    ({"pubkey": "05" + "00" * 32, "timestamp": 1, "expiry": 5, "data": ""}, "Invalid timestamp"),
    ({"timestamp": 1, "ttl": 1, "data": ""}, "Required field 'pubkey' missing"),
    ({"pubkey": "05abc", "timestamp": 1_700_000_000_000, "ttl": 20_000, "data": ""}, "Pubkey must be 66"),
    ({"pubkey": "05" + "00" * 32, "ttl": 20_000, "data": ""}, "Required field 'timestamp' missing"),
    ({"pubkey": "05" + "00" * 32, "timestamp": 1_700_000_000_000, "data": ""}, "'expiry' or 'ttl'"),
    ({"pubkey": "05" + "00" * 32, "timestamp": 1_700_000_000_000, "ttl": 20_000, "data": "%%%"},
     "not base64"),
    ({"pubkey": "05" + "00" * 32, "timestamp": 1_700_000_000_000, "ttl": 20_000, "data": "",
      "namespace": 40000}, "value out of range"),
    ({"pubkey": "05" + "00" * 32, "timestamp": True, "ttl": 20_000, "data": ""}, "'timestamp'"),
])
async def test_store_parse_errors_are_400(handler, params, reason):
    r = await call(handler, "store", params)
    assert r.status == 400 and r.body.startswith("invalid request: ") and reason in r.body, r.body


async def test_wrong_swarm_is_421_with_correct_swarm(handler, net, foreign):
    r = await call(handler, "store", store_params(foreign))
    assert r.status == 421
    assert r.body["swarm"] == "7fffffffffffffff"
    assert {s["pubkey_ed25519"] for s in r.body["snodes"]} == {n.ed25519_hex for n in net[1][3:]}
    assert "t" in r.body and r.body["hf"] == list(HARDFORK)
    r = await call(handler, "retrieve", retrieve_params(foreign))
    assert r.status == 421


async def test_drop_stores_answers_but_keeps_nothing(handler, acct):
    handler.behaviours.drop_stores = True
    r = await call(handler, "store", store_params(acct, b"dropped"))
    assert r.status == 200 and r.body["hash"] == message_hash(acct.session_id, 0, b"dropped")
    assert handler.fake_forwarder.calls == []
    assert await handler.storage.count() == 0


# --- fan-out results -----------------------------------------------------------------------------

async def test_fanout_failures_and_all_failed_is_500(net, storage, acct):
    me, nodes, view = net
    fwd = FakeForwarder()  # every peer times out
    h = RpcHandler(me, storage, Clock(), lambda: view, fwd, None, Behaviours())
    r = await call(h, "store", store_params(acct))
    assert r.status == 200  # this node succeeded
    for n in nodes[1:3]:
        assert r.body["swarm"][n.ed25519_hex] == {"failed": True, "timeout": True}

    async def broken_store(m):
        raise RuntimeError("disk on fire")
    storage.store = broken_store  # type: ignore[method-assign]
    r = await call(h, "store", store_params(acct, b"other"))
    assert r.status == 500
    assert r.body["swarm"][me.ed25519_hex]["failed"] is True


async def test_forwarded_store_answers_own_result(handler, acct):
    r = await handler.handle("store", store_params(acct, b"fw"), forwarded=True)
    assert r.status == 200
    assert r.body["hash"] == message_hash(acct.session_id, 0, b"fw")
    assert "swarm" not in r.body
    assert handler.fake_forwarder.calls == []
    r = await handler.handle("retrieve", retrieve_params(acct), forwarded=True)
    assert r.status == 400


# --- retrieve ------------------------------------------------------------------------------------

async def test_retrieve_auth_paging_and_last_hash(handler, acct):
    hashes = []
    for i in range(5):
        r = await call(handler, "store", store_params(acct, f"m{i}".encode()))
        hashes.append(r.body["hash"])
    r = await call(handler, "retrieve", {"pubkey": acct.session_id})
    assert (r.status, r.body) == (401, "retrieve: request signature required")
    r = await call(handler, "retrieve", retrieve_params(acct))
    assert r.status == 200
    assert [m["hash"] for m in r.body["messages"]] == hashes and r.body["more"] is False
    assert base64.b64decode(r.body["messages"][0]["data"]) == b"m0"
    assert set(r.body["messages"][0]) == {"hash", "timestamp", "expiration", "data"}
    r = await call(handler, "retrieve", retrieve_params(acct, max_count=2))
    assert [m["hash"] for m in r.body["messages"]] == hashes[:2] and r.body["more"] is True
    r = await call(handler, "retrieve", retrieve_params(acct, lastHash=hashes[1]))
    assert [m["hash"] for m in r.body["messages"]] == hashes[2:]
    r = await call(handler, "retrieve", retrieve_params(acct, last_hash="A" * 43))  # unknown
    assert [m["hash"] for m in r.body["messages"]] == hashes
    r = await call(handler, "retrieve", retrieve_params(acct, last_hash="short"))
    assert r.status == 400 and "last_hash" in r.body


async def test_retrieve_bad_signature_and_skew(handler, acct):
    p = retrieve_params(acct)
    p["signature"] = signing.sign_request(acct, signing.retrieve_message(0, p["timestamp"] + 1))
    r = await call(handler, "retrieve", p)
    assert (r.status, r.body) == (401, "retrieve signature verification failed")
    r = await call(handler, "retrieve", retrieve_params(acct, ts=now_ms() - 120_000))
    assert (r.status, r.body) == (406, "retrieve timestamp too far from current time")


async def test_retrieve_namespace_minus_10_needs_no_auth(handler, acct):
    r = await call(handler, "store", store_params(acct, b"grp", ns=-10))
    assert r.status == 200
    r = await call(handler, "retrieve", {"pubkey": acct.session_id, "namespace": -10})
    assert r.status == 200 and len(r.body["messages"]) == 1


# --- delete / expire -----------------------------------------------------------------------------

def auth(acct: Identity, msg: bytes) -> dict[str, str]:
    return {"pubkey": acct.session_id, "pubkey_ed25519": acct.ed25519_hex,
            "signature": signing.sign_request(acct, msg)}


async def test_delete_and_node_signature(handler, net, acct):
    me = net[0]
    h1 = (await call(handler, "store", store_params(acct, b"d1"))).body["hash"]
    h2 = (await call(handler, "store", store_params(acct, b"d2"))).body["hash"]
    missing = "B" * 43
    req = [h2, missing]
    r = await call(handler, "delete", {**auth(acct, signing.delete_message(req)), "messages": req})
    assert r.status == 200, r.body
    mine = r.body["swarm"][me.ed25519_hex]
    assert mine["deleted"] == [h2]
    signed = (acct.session_id + "".join(req) + h2).encode()
    assert verify_ed25519(me.ed25519_public, signed, base64.b64decode(mine["signature"]))
    r = await call(handler, "delete", {**auth(acct, signing.delete_message([h1])), "messages": [h2]})
    assert (r.status, r.body) == (401, "delete_msgs signature verification failed")
    r = await call(handler, "delete", {**auth(acct, signing.delete_message([missing])),
                                       "messages": [missing], "required": True})
    assert r.status == 404
    # a missing signature: the storage server's parser answers 400 (PROTOCOL.md §4)
    r = await call(handler, "delete", {"pubkey": acct.session_id, "messages": [h1]})
    assert (r.status, r.body) == (400, "invalid request: Required field 'signature' missing")
    r = await call(handler, "retrieve", {"pubkey": acct.session_id, "namespace": 2})
    assert (r.status, r.body) == (400, "invalid request: Required field 'signature' missing")
    r = await call(handler, "retrieve", {"pubkey": acct.session_id})
    assert (r.status, r.body) == (401, "retrieve: request signature required")


async def test_delete_all_and_delete_before(handler, net, acct):
    me = net[0]
    ts = now_ms()
    h0 = (await call(handler, "store", store_params(acct, b"a", ts=ts - 5000))).body["hash"]
    h5 = (await call(handler, "store", store_params(acct, b"b", ns=5, sign=True, ts=ts))).body["hash"]
    r = await call(handler, "delete_before", {**auth(acct, signing.delete_before_message("all", ts - 1000)),
                                              "before": ts - 1000, "namespace": "all"})
    assert r.status == 200
    assert r.body["swarm"][me.ed25519_hex]["deleted"] == {"0": [h0]}
    r = await call(handler, "delete_all", {**auth(acct, signing.delete_all_message(5, ts)),
                                           "timestamp": ts, "namespace": 5})
    mine = r.body["swarm"][me.ed25519_hex]
    assert r.status == 200 and mine["deleted"] == [h5]
    signed = f"{acct.session_id}{ts}{h5}".encode()
    assert verify_ed25519(me.ed25519_public, signed, base64.b64decode(mine["signature"]))
    old = ts - 120_000
    r = await call(handler, "delete_all", {**auth(acct, signing.delete_all_message(0, old)), "timestamp": old})
    assert (r.status, r.body) == (406, "delete_all timestamp too far from current time")


async def test_expire_get_expiries_and_expire_all(handler, net, acct):
    me = net[0]
    ts = now_ms()
    h = (await call(handler, "store", store_params(acct, b"e", ts=ts, ttl=600_000))).body["hash"]
    new_exp = ts + 120_000
    r = await call(handler, "expire", {**auth(acct, signing.expire_message("shorten", new_exp, [h])),
                                       "messages": [h], "expiry": new_exp, "shorten": True})
    assert r.status == 200, r.body
    mine = r.body["swarm"][me.ed25519_hex]
    assert mine["updated"] == [h] and mine["expiry"] == new_exp and mine["unchanged"] == {}
    signed = f"{acct.session_id}{new_exp}{h}{h}".encode()
    assert verify_ed25519(me.ed25519_public, signed, base64.b64decode(mine["signature"]))
    # extend-only to an earlier time leaves it unchanged
    earlier = ts + 60_000
    r = await call(handler, "expire", {**auth(acct, signing.expire_message("extend", earlier, [h])),
                                       "messages": [h], "expiry": earlier, "extend": True})
    mine = r.body["swarm"][me.ed25519_hex]
    assert mine["updated"] == [] and mine["unchanged"] == {h: new_exp}
    gts = now_ms()
    r = await call(handler, "get_expiries", {**auth(acct, signing.get_expiries_message(gts, [h])),
                                             "messages": [h], "timestamp": gts})
    assert r.status == 200 and r.body == {"expiries": {h: new_exp}}  # no t/hf, as the storage server
    all_exp = ts + 30_000
    r = await call(handler, "expire_all", {**auth(acct, signing.expire_all_message(0, all_exp)),
                                           "expiry": all_exp})
    assert r.status == 200 and r.body["swarm"][me.ed25519_hex]["updated"] == [h]
    past = ts - 120_000
    r = await call(handler, "expire", {**auth(acct, signing.expire_message("", past, [h])),
                                       "messages": [h], "expiry": past})
    assert (r.status, r.body) == (401, "expire: timestamp should be >= current time")


# --- batch / sequence / oxend ------------------------------------------------------------------

async def test_batch_and_sequence(handler, acct, foreign):
    reqs = [
        {"method": "store", "params": store_params(acct, b"b1")},
        {"method": "store", "params": store_params(acct, b"b2", ttl=1)},  # 403
        {"method": "store", "params": store_params(foreign, b"b3")},  # 421
        {"method": "info", "params": {}},
    ]
    r = await call(handler, "batch", {"requests": reqs})
    assert r.status == 200
    assert [x["code"] for x in r.body["results"]] == [200, 403, 421, 200]
    assert r.body["results"][1]["body"] == "Provided expiry/TTL is not valid."
    r = await call(handler, "sequence", {"requests": reqs})
    assert [x["code"] for x in r.body["results"]] == [200, 403]
    r = await call(handler, "batch", {"requests": []})
    assert r.status == 400 and "requests" in r.body
    r = await call(handler, "batch", {"requests": [{"method": "info", "params": {}}] * 21})
    assert r.status == 400 and "limit exceeded" in r.body
    nested = {"method": "batch", "params": {"requests": [{"method": "info", "params": {}}]}}
    r = await call(handler, "batch", {"requests": [nested]})
    assert (r.status, r.body) == (
        400, "invalid request: Invalid batch subrequest: subrequests may not contain meta-requests")
    # like the storage server, the nested request is parsed (and can fail) first
    r = await call(handler, "batch", {"requests": [{"method": "batch", "params": {"requests": []}}]})
    assert (r.status, r.body) == (400, 'invalid request: Invalid batch request: no valid "requests" field')
    r = await call(handler, "batch", {"requests": [{"method": "store", "params": {"pubkey": "zz"}}]})
    assert r.status == 400  # subrequest parse errors fail the whole batch


async def test_oxend_request_whitelist(net, storage):
    me, _, view = net
    calls = []

    async def oxend(endpoint, params):
        calls.append((endpoint, params))
        return {"service_node_states": [], "height": 7}

    h = RpcHandler(me, storage, Clock(), lambda: view, None, oxend, Behaviours())
    r = await call(h, "oxend_request", {"endpoint": "get_service_nodes", "params": {"limit": 3}})
    assert r.status == 200 and r.body["result"]["height"] == 7 and "t" in r.body
    assert calls == [("get_service_nodes", {"limit": 3})]
    r = await call(h, "oxend_request", {"endpoint": "get_block"})
    assert (r.status, r.body) == (400, "invalid request: Invalid oxend endpoint 'get_block'")
