"""Storage RPC behaviours matched to the production storage server (nodes.snode.rpc, in-process
against a real SQLite store): active_nodes_bin, ifelse, group subaccounts and their revocation,
public outbox namespaces, unprefixed (testnet) pubkeys and the storage server's error texts."""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import struct
import time
from typing import Any

import pytest

from nodes.protocol import signing
from nodes.protocol.constants import HARDFORK, STORAGE_SERVER_VERSION
from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import Identity, derive_seed, verify_ed25519
from nodes.protocol.subaccount import DELETE, READ, WRITE, SubaccountToken, sign_token
from nodes.snode.behaviours import Behaviours
from nodes.snode.clock import Clock
from nodes.snode.rpc import RpcHandler, active_nodes_blob
from nodes.snode.storage import Storage
from nodes.snode.swarm_view import SwarmView
from nodes.snode.testing import account_in_swarm, node_identity, seed_entry

pytestmark = pytest.mark.unit

SWARM_A, SWARM_B = 0, 0x7FFFFFFFFFFFFFFF
HEIGHT = 150


class RecordingForwarder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def forward(self, peers, method, params):
        self.calls.append((method, dict(params)))
        return {}


@pytest.fixture
def net():
    nodes = [node_identity(f"sn{i}") for i in range(6)]
    entries = [seed_entry(n, f"127.77.{k + 1}.1", 22021, SWARM_A if k < 3 else SWARM_B, lmq_port=22020 + k)
               for k, n in enumerate(nodes)]
    view = SwarmView.build(nodes[0].ed25519_hex, entries, height=HEIGHT, block_hash="00" * 32)
    return nodes[0], nodes, view


@pytest.fixture
def storage(tmp_path):
    s = Storage(tmp_path / "storage.db")
    yield s
    s.close()


@pytest.fixture
def handler(net, storage):
    me, _, view = net
    fwd = RecordingForwarder()
    h = RpcHandler(me, storage, Clock(), lambda: view, fwd, None, Behaviours())
    h.fwd = fwd  # type: ignore[attr-defined]
    return h


def find(view: SwarmView, pubkey_of, swarm: int = SWARM_A) -> Identity:
    for i in itertools.count():
        ident = Identity.from_seed(derive_seed("prod", "account", str(i)))
        if view.swarm_of(pubkey_of(ident)) == swarm:
            return ident
    raise AssertionError("unreachable")


@pytest.fixture
def group(net) -> Identity:
    """A 03 group whose key maps to swarm A."""
    return find(net[2], lambda i: "03" + i.ed25519_hex)


@pytest.fixture
def acct(net) -> Identity:
    return account_in_swarm(net[2], SWARM_A)


def now_ms() -> int:
    return int(time.time() * 1000)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def call(h: RpcHandler, method: str, params: Any):
    resp, _, _ = await h.handle_body(json.dumps({"method": method, "params": params}))
    return resp


def gid(g: Identity) -> str:
    return "03" + g.ed25519_hex


def gsign(ident: Identity, msg: str | bytes) -> str:
    return b64(ident.sign(msg.encode() if isinstance(msg, str) else msg))


# --- active_nodes_bin ----------------------------------------------------------------------------

async def test_active_nodes_bin_records(handler, net):
    _, nodes, view = net
    r = await call(handler, "active_nodes_bin", {})
    assert r.status == 200 and r.is_binary and not r.is_json
    blob = bytes(r.body)
    assert len(blob) == 51 * len(nodes)
    recs = [blob[i:i + 51] for i in range(0, len(blob), 51)]
    # ordered by swarm id, then key
    expected_order = sorted(nodes, key=lambda n: (0 if nodes.index(n) < 3 else 1, n.ed25519_hex))
    assert [rec[:32] for rec in recs] == [n.ed25519_public for n in expected_order]
    for rec, n in zip(recs, expected_order, strict=True):
        k = nodes.index(n)
        swarm, ip, https, quic = struct.unpack(">Q4sHH", rec[32:48])
        assert swarm == (SWARM_A if k < 3 else SWARM_B)
        assert str(ipaddress.IPv4Address(ip)) == f"127.77.{k + 1}.1"
        assert (https, quic) == (22021, 22020 + k)
        assert rec[48:] == bytes([2, 11, 3])
    # inside a batch the binary body is base64 text (as in onion answers)
    r = await call(handler, "batch", {"requests": [{"method": "active_nodes_bin", "params": {}}]})
    res = r.body["results"][0]
    assert res["code"] == 200 and base64.b64decode(res["body"]) == blob
    assert r.body_text() and json.loads(r.body_text())["results"][0]["body"] == b64(blob)


def test_active_nodes_blob_skips_inactive_and_zeroes_unknown_addresses(net):
    _, nodes, _ = net
    entries = [seed_entry(nodes[0], "127.0.0.9", 22021, 5),
               seed_entry(nodes[1], "0.0.0.0", 0, 5),  # active, address not known yet
               seed_entry(nodes[2], "127.0.0.8", 22021, 5, active=False),
               {**seed_entry(nodes[3], "127.0.0.7", 22021, 0), "swarm_id": None},  # unassigned
               {**seed_entry(nodes[4], "127.0.0.6", 22021, 3), "storage_server_version": [2, 300, 1]}]
    blob = active_nodes_blob(SwarmView.build(nodes[0].ed25519_hex, entries))
    recs = {blob[i:i + 32]: blob[i + 32:i + 51] for i in range(0, len(blob), 51)}
    assert set(recs) == {nodes[0].ed25519_public, nodes[1].ed25519_public, nodes[4].ed25519_public}
    assert recs[nodes[1].ed25519_public][8:16] == bytes(8)  # ip and both ports zero
    assert recs[nodes[4].ed25519_public][16:] == bytes([2, 255, 1])  # versions capped at 255
    assert blob[:32] == nodes[4].ed25519_public  # swarm 3 before swarm 5


# --- ifelse --------------------------------------------------------------------------------------

def store_req(acct: Identity, data: bytes, ts: int | None = None) -> dict[str, Any]:
    return {"method": "store", "params": {"pubkey": acct.session_id, "timestamp": ts or now_ms(),
                                          "ttl": 60_000, "data": b64(data)}}


@pytest.mark.parametrize("cond,expected", [
    ({"hf_at_least": list(HARDFORK)}, True),
    ({"hf_at_least": [HARDFORK[0], HARDFORK[1] + 1]}, False),
    ({"hf_at_least": [HARDFORK[0]]}, True),  # zero-padded: [21] == [21, 0]
    ({"hf_at_least": HARDFORK[0] + 1}, False),  # a single integer is a one-element array
    ({"hf_before": [HARDFORK[0] + 1]}, True),
    ({"hf_before": list(HARDFORK)}, False),
    ({"v_at_least": list(STORAGE_SERVER_VERSION)}, True),
    ({"v_at_least": [2, 2]}, True),
    ({"v_before": [2, 2]}, False),
    ({"v_at_least": [99]}, False),
    ({"height_at_least": HEIGHT}, True),
    ({"height_at_least": HEIGHT + 1}, False),
    ({"height_before": HEIGHT + 1}, True),
    ({"height_before": HEIGHT}, False),
    ({"hf_at_least": [19], "height_before": HEIGHT}, False),  # conditions are and-ed
    ({"hf_at_least": [19], "v_at_least": [2], "height_at_least": 1}, True),
    ({"hf_at_least": [], "v_at_least": [2]}, True),  # an empty array counts as absent
])
async def test_ifelse_conditions(handler, acct, cond, expected):
    r = await call(handler, "ifelse", {"if": cond, "then": store_req(acct, b"yes"),
                                       "else": store_req(acct, b"no")})
    assert r.status == 200, r.body
    assert r.body["condition"] is expected
    assert (r.body["hf"], r.body["v"], r.body["height"]) == (
        list(HARDFORK), list(STORAGE_SERVER_VERSION), HEIGHT)
    assert "t" not in r.body  # request_handler.cpp's ifelse answer has no "t"
    assert r.body["result"]["code"] == 200
    assert r.body["result"]["body"]["hash"] == message_hash(acct.session_id, 0, b"yes" if expected else b"no")


async def test_ifelse_missing_branch_nested_and_binary(handler, acct):
    r = await call(handler, "ifelse", {"if": {"hf_before": [19]}, "then": store_req(acct, b"x")})
    assert r.status == 200 and r.body["condition"] is False and "result" not in r.body
    assert await handler.storage.count() == 0
    r = await call(handler, "ifelse", {"if": {"v_at_least": [2, 2]}, "then": {
        "method": "batch", "params": {"requests": [store_req(acct, b"in batch")]}}})
    inner = r.body["result"]
    assert inner["code"] == 200 and inner["body"]["results"][0]["code"] == 200
    r = await call(handler, "ifelse", {"if": {"hf_at_least": [19]}, "then": {
        "method": "ifelse", "params": {"if": {"hf_before": [19]}, "else": {
            "method": "active_nodes_bin", "params": {}}}}})
    nested = r.body["result"]["body"]
    assert nested["condition"] is False and nested["result"]["code"] == 200
    assert len(base64.b64decode(nested["result"]["body"])) == 51 * 6


@pytest.mark.parametrize("params,text", [
    ({}, 'Invalid ifelse request: no valid "if" field'),
    ({"if": []}, 'Invalid ifelse request: no valid "if" field'),
    ({"if": {}, "then": {"method": "info", "params": {}}},
     'Invalid ifelse request: must specify at least one "if" condition'),
    ({"if": {"hf_at_least": [19]}}, 'Invalid ifelse request: at least one of "then"/"else" required'),
    ({"if": {"hf_at_least": [19]}, "then": 5}, "Invalid ifelse request: then must be an object"),
    ({"if": {"hf_at_least": [19]}, "else": {"method": "info"}},
     "Invalid ifelse request: else must have method/params keys"),
    ({"if": {"hf_at_least": [19]}, "then": {"method": "fly", "params": {}}},
     'Invalid ifelse request method "then"'),
    ({"if": {"hf_at_least": ["19"]}, "then": {"method": "info", "params": {}}},
     "Invalid value given for 'hf_at_least': expected integer array"),
    ({"if": {"height_at_least": "1"}, "then": {"method": "info", "params": {}}},
     "Invalid value given for 'height_at_least': expected integer"),
])
async def test_ifelse_parse_errors(handler, params, text):
    r = await call(handler, "ifelse", params)
    assert (r.status, r.body) == (400, "invalid request: " + text)


async def test_ifelse_is_not_a_batch_subrequest(handler):
    r = await call(handler, "batch", {"requests": [{"method": "ifelse", "params": {
        "if": {"hf_at_least": [19]}, "then": {"method": "info", "params": {}}}}]})
    assert (r.status, r.body) == (
        400, "invalid request: Invalid batch subrequest: subrequests may not contain meta-requests")


# --- group subaccounts ---------------------------------------------------------------------------

def subaccount(owner: Identity, flags: int, prefix: int = 0x03,
               hex_token: bool = False) -> tuple[Identity, bytes, dict[str, str]]:
    member = Identity.generate()
    token = SubaccountToken.make(prefix, flags, member.ed25519_public)
    fields = {"subaccount": token.raw.hex() if hex_token else token.b64,
              "subaccount_sig": b64(sign_token(owner, token))}
    return member, token.raw, fields


def sub_store(group: Identity, member: Identity, fields: dict[str, str], ns: int, data: bytes,
              ts: int | None = None) -> dict[str, Any]:
    ts = ts or now_ms()
    return {"pubkey": gid(group), "namespace": ns, "timestamp": ts, "ttl": 86_400_000, "data": b64(data),
            "signature": gsign(member, f"store{ns}{ts}"), **fields}


def sub_retrieve(group: Identity, member: Identity, fields: dict[str, str], ns: int) -> dict[str, Any]:
    ts = now_ms()
    return {"pubkey": gid(group), "namespace": ns, "timestamp": ts,
            "signature": gsign(member, f"retrieve{ns}{ts}"), **fields}


async def test_subaccount_store_retrieve_and_permissions(handler, group):
    writer, _, wf = subaccount(group, READ | WRITE)
    r = await call(handler, "store", sub_store(group, writer, wf, 42, b"abc"))
    assert r.status == 200, r.body
    h = message_hash(gid(group), 42, b"abc")
    r = await call(handler, "retrieve", sub_retrieve(group, writer, wf, 42))
    assert r.status == 200 and [m["hash"] for m in r.body["messages"]] == [h]
    reader, _, rf = subaccount(group, READ, hex_token=True)
    r = await call(handler, "store", sub_store(group, reader, rf, 42, b"nope"))
    assert (r.status, r.body) == (401, "store signature verification failed")
    r = await call(handler, "retrieve", sub_retrieve(group, reader, rf, 42))
    assert r.status == 200
    ts = now_ms()
    r = await call(handler, "delete", {"pubkey": gid(group), "messages": [h],
                                       "signature": gsign(writer, "delete" + h), **wf})
    assert (r.status, r.body) == (401, "delete_msgs signature verification failed")
    admin, _, af = subaccount(group, READ | WRITE | DELETE)
    r = await call(handler, "delete_all", {"pubkey": gid(group), "namespace": 42, "timestamp": ts,
                                           "signature": gsign(admin, f"delete_all42{ts}"), **af})
    assert r.status == 200 and r.body["swarm"][handler.my_ed]["deleted"] == [h]
    # a token signed by someone else, or for another network prefix, is refused
    intruder = Identity.generate()
    forger, _, ff = subaccount(intruder, READ | WRITE)
    r = await call(handler, "retrieve", sub_retrieve(group, forger, ff, 42))
    assert (r.status, r.body) == (401, "retrieve signature verification failed")
    other, _, of = subaccount(group, READ, prefix=0x05)
    r = await call(handler, "retrieve", sub_retrieve(group, other, of, 42))
    assert r.status == 401


async def test_subaccount_revocation_flow(handler, group, net):
    me = net[0]
    member, token, fields = subaccount(group, READ | WRITE)
    assert (await call(handler, "store", sub_store(group, member, fields, 42, b"m"))).status == 200
    ts = now_ms()
    assert (await call(handler, "store", {"pubkey": gid(group), "namespace": -11, "timestamp": ts,
                                          "ttl": 60_000, "data": b64(b"bye"),
                                          "signature": gsign(group, f"store-11{ts}")})).status == 200

    def listing() -> dict[str, Any]:
        t = now_ms()
        return {"pubkey": gid(group), "timestamp": t, "signature": gsign(group, f"revoked_subaccounts{t}")}

    r = await call(handler, "revoked_subaccounts", listing())
    assert r.status == 200 and r.body["revoked_subaccounts"] == [] and r.body["hf"] == list(HARDFORK)
    r = await call(handler, "revoke_subaccount", {
        "pubkey": gid(group), "revoke": token.hex(), "timestamp": ts,
        "signature": gsign(group, f"revoke_subaccount{ts}".encode() + token)})
    assert r.status == 200, r.body
    mine = r.body["swarm"][me.ed25519_hex]
    assert set(mine) == {"signature"} and "t" in r.body  # 2.8.0: no count in revoke's answer
    assert verify_ed25519(me.ed25519_public, gid(group).encode() + str(ts).encode() + token,
                          base64.b64decode(mine["signature"]))
    assert handler.fwd.calls[-1][0] == "revoke_subaccount"  # fanned out to the swarm
    r = await call(handler, "revoked_subaccounts", listing())
    assert r.body["revoked_subaccounts"] == [b64(token)]
    r = await call(handler, "retrieve", sub_retrieve(group, member, fields, 42))
    assert (r.status, r.body) == (401, "retrieve signature verification failed")
    r = await call(handler, "store", sub_store(group, member, fields, 42, b"again"))
    assert r.status == 401
    r = await call(handler, "retrieve", sub_retrieve(group, member, fields, -11))  # unrevocable
    assert r.status == 200 and len(r.body["messages"]) == 1
    r = await call(handler, "unrevoke_subaccount", {
        "pubkey": gid(group), "unrevoke": [b64(token), b64(bytes(36))], "timestamp": ts + 1,
        "signature": gsign(group, f"unrevoke_subaccount{ts + 1}".encode() + token + bytes(36))})
    assert r.status == 200 and r.body["swarm"][me.ed25519_hex]["count"] == 1
    r = await call(handler, "retrieve", sub_retrieve(group, member, fields, 42))
    assert r.status == 200 and len(r.body["messages"]) == 1
    # a forwarded revocation answers its own result
    r = await handler.handle("revoke_subaccount", {
        "pubkey": gid(group), "revoke": [b64(token)], "timestamp": ts,
        "signature": gsign(group, f"revoke_subaccount{ts}".encode() + token)}, forwarded=True)
    assert r.status == 200 and set(r.body) == {"signature"} and "swarm" not in r.body


async def test_revocation_endpoints_checks(handler, group):
    member, token, fields = subaccount(group, READ | WRITE | DELETE)
    ts = now_ms()
    # only the owner may revoke: a subaccount signature does not count
    r = await call(handler, "revoke_subaccount", {
        "pubkey": gid(group), "revoke": [b64(token)], "timestamp": ts,
        "signature": gsign(member, f"revoke_subaccount{ts}".encode() + token), **fields})
    assert (r.status, r.body) == (401, "revoke_subaccount signature verification failed")
    old = ts - 120_000
    r = await call(handler, "unrevoke_subaccount", {
        "pubkey": gid(group), "unrevoke": [b64(token)], "timestamp": old,
        "signature": gsign(group, f"unrevoke_subaccount{old}".encode() + token)})
    assert (r.status, r.body) == (406, "unrevoke_subaccount timestamp too far from current time")
    r = await call(handler, "revoke_subaccount", {
        "pubkey": gid(group), "revoke": [b64(token)] * 51, "timestamp": ts, "signature": gsign(group, "x")})
    assert (r.status, r.body) == (
        400, "invalid request: invalid revoke: cannot revoke more than 50 subaccounts at once")
    r = await call(handler, "revoke_subaccount", {
        "pubkey": gid(group), "revoke": ["abc"], "timestamp": ts, "signature": gsign(group, "x")})
    assert (r.status, r.body) == (
        400, "invalid request: invalid revoke: expected base64 or hex-encoded subaccount tag")
    r = await call(handler, "unrevoke_subaccount", {
        "pubkey": gid(group), "timestamp": ts, "signature": gsign(group, "x")})
    assert (r.status, r.body) == (400, "invalid request: Required field 'unrevoke' missing")


async def test_subaccount_parse_errors(handler, group):
    member, token, fields = subaccount(group, READ)
    base = sub_retrieve(group, member, fields, 42)
    r = await call(handler, "retrieve", {**base, "subaccount_sig": None})
    assert (r.status, r.body) == (
        400, "invalid request: invalid subaccount: subaccount_sig is required when using subaccount")
    r = await call(handler, "retrieve", {**base, "subaccount": "abcd"})
    assert (r.status, r.body) == (
        400, "invalid request: invalid subaccount: expected base64 or hex-encoded subaccount token")
    r = await call(handler, "retrieve", {**base, "subaccount_sig": "AAAA"})
    assert (r.status, r.body) == (
        400, "invalid request: invalid subaccount signature: expected base64 encoded Ed25519 signature")
    r = await call(handler, "retrieve", {**base, "subaccount": ""})  # empty token: no subaccount
    assert (r.status, r.body) == (401, "retrieve signature verification failed")


async def test_subaccount_without_delete_only_extends(handler, group):
    ts = now_ms()
    r = await call(handler, "store", {"pubkey": gid(group), "timestamp": ts, "ttl": 60_000,
                                      "data": b64(b"keep")})
    h = r.body["hash"]
    member, _, fields = subaccount(group, READ | WRITE)
    later, sooner = ts + 3_600_000, ts + 30_000

    def expire(exp: int, mode: str = "", **extra: Any) -> dict[str, Any]:
        return {"pubkey": gid(group), "messages": [h], "expiry": exp,
                "signature": gsign(member, f"expire{mode}{exp}{h}"), **fields, **extra}

    r = await call(handler, "expire", expire(later))
    assert r.status == 200 and r.body["swarm"][handler.my_ed]["updated"] == [h]
    r = await call(handler, "expire", expire(sooner))  # would shorten: silently not applied
    mine = r.body["swarm"][handler.my_ed]
    assert r.status == 200 and mine["updated"] == [] and "unchanged" not in mine
    r = await call(handler, "expire", expire(sooner, "shorten", shorten=True))
    assert (r.status, r.body) == (400, "expire: shorten parameter cannot be used with this subaccount "
                                       "token (missing delete access)")
    gts = now_ms()
    r = await call(handler, "get_expiries", {"pubkey": gid(group), "messages": [h], "timestamp": gts,
                                             "signature": gsign(member, f"get_expiries{gts}{h}"), **fields})
    assert r.status == 200 and r.body["expiries"] == {h: later}


# --- public outboxes -----------------------------------------------------------------------------

async def test_public_outbox_store_needs_owner_retrieve_is_open(handler, group):
    ts = now_ms()
    unsigned = {"pubkey": gid(group), "namespace": -21, "timestamp": ts, "ttl": 60_000, "data": b64(b"pub")}
    r = await call(handler, "store", unsigned)
    assert (r.status, r.body) == (401, "store: signature required to store to namespace -21")
    r = await call(handler, "store", {**unsigned, "signature": gsign(group, f"store-21{ts}")})
    assert r.status == 200
    r = await call(handler, "retrieve", {"pubkey": gid(group), "namespace": -21})
    assert r.status == 200 and [m["hash"] for m in r.body["messages"]] == [
        message_hash(gid(group), -21, b"pub")]
    # a newer message replaces it
    r = await call(handler, "store", {**unsigned, "timestamp": ts + 1, "data": b64(b"pub2"),
                                      "signature": gsign(group, f"store-21{ts + 1}")})
    r = await call(handler, "retrieve", {"pubkey": gid(group), "namespace": -21})
    assert [m["hash"] for m in r.body["messages"]] == [message_hash(gid(group), -21, b"pub2")]
    # other negative namespaces stay private
    r = await call(handler, "retrieve", {"pubkey": gid(group), "namespace": -20})
    assert (r.status, r.body) == (400, "invalid request: Required field 'signature' missing")
    # storing to an outbox replaces what it holds, so a subaccount needs delete too
    member, _, fields = subaccount(group, READ | WRITE)
    r = await call(handler, "store", sub_store(group, member, fields, -21, b"sub"))
    assert (r.status, r.body) == (401, "store signature verification failed")
    moderator, _, mf = subaccount(group, READ | WRITE | DELETE)
    r = await call(handler, "store", sub_store(group, moderator, mf, -21, b"mod", ts + 2))
    assert r.status == 200


# --- unprefixed (testnet) pubkeys ----------------------------------------------------------------

async def test_unprefixed_pubkey_is_an_05_account(handler, net):
    me, _, view = net
    ident = find(view, lambda i: "05" + i.ed25519_hex)
    bare = ident.ed25519_hex
    r = await call(handler, "store", {"pubkey": bare, "timestamp": now_ms(), "ttl": 60_000, "data": b64(b"bare")})
    assert r.status == 200 and r.body["hash"] == message_hash("05" + bare, 0, b"bare")
    ts = now_ms()
    r = await call(handler, "retrieve", {"pubkey": bare.upper(), "timestamp": ts,
                                         "signature": gsign(ident, f"retrieve{ts}")})
    assert r.status == 200 and [m["hash"] for m in r.body["messages"]] == [message_hash("05" + bare, 0, b"bare")]
    r = await call(handler, "delete_all", {"pubkey": bare, "timestamp": ts,
                                           "signature": gsign(ident, f"delete_all{ts}")})
    mine = r.body["swarm"][me.ed25519_hex]
    # the node signs the prefixed form, as the storage server's prefixed_hex() does
    assert verify_ed25519(me.ed25519_public, f"05{bare}{ts}{mine['deleted'][0]}".encode(),
                          base64.b64decode(mine["signature"]))
    r = await call(handler, "get_swarm", {"pubkey": bare})
    assert r.status == 200 and r.body["swarm"] == format(view.swarm_of("05" + bare), "x")


# --- error texts ---------------------------------------------------------------------------------

async def test_error_texts_match_the_storage_server(handler, acct):
    ts = now_ms()
    good = {"pubkey": acct.session_id, "timestamp": ts, "pubkey_ed25519": acct.ed25519_hex,
            "signature": signing.sign_request(acct, signing.retrieve_message(0, ts))}
    cases = [
        ("retrieve", {**good, "signature": "AAAA"},
         400, "invalid request: invalid signature: expected base64 encoded Ed25519 signature"),
        ("retrieve", {**good, "pubkey_ed25519": "00" * 31},
         400, "invalid request: Invalid pubkey_ed25519: expected 64 hex char or 32 byte pubkey"),
        ("retrieve", {**good, "pubkey_ed25519": "zz" * 32},
         400, "invalid request: invalid pubkey_ed25519: value is not hex"),
        ("get_swarm", {"pubkey": "05abcd"}, 400, "invalid request: Pubkey must be 66 hex digits/33 bytes long"),
        ("store", {"pubkey": "05abcd", "timestamp": ts, "ttl": 60_000, "data": ""},
         400, "invalid request: Pubkey must be 66 hex digits (33 bytes) long"),
        # a missing signature is the parser's 400 (the storage server and PROTOCOL.md §4)
        ("retrieve", {"pubkey": acct.session_id, "timestamp": ts},
         400, "invalid request: Required field 'signature' missing"),
        ("expire_all", {"pubkey": acct.session_id, "expiry": ts},
         400, "invalid request: Required field 'signature' missing"),
        ("batch", {"requests": [{"method": "retrieve", "params": {"pubkey": acct.session_id,
                                                                   "timestamp": ts}}]},
         400, "invalid request: Required field 'signature' missing"),
        # pubKey is an alias of store / retrieve / get_swarm only
        ("delete_all", {"pubKey": acct.session_id, "timestamp": ts, "signature": good["signature"]},
         400, "invalid request: Required field 'pubkey' missing"),
    ]
    for method, params, status, text in cases:
        r = await call(handler, method, params)
        assert (r.status, r.body) == (status, text), (method, params)
    # the raw 32-byte form of pubkey_ed25519 is accepted
    r = await call(handler, "retrieve", {**good, "pubkey_ed25519": "x" * 32})
    assert (r.status, r.body) == (401, "retrieve signature verification failed")
