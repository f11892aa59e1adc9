"""Read-only storage RPCs clients use to find their way: info, get_swarm (and its alias),
oxend_request, active_nodes_bin, the 421 wrong-swarm answer, and the HTTP framing of the storage
port.  Sources: docs/conformance.md, section "Directory"."""

from __future__ import annotations

import base64
import ipaddress
import json
import struct
from typing import Any

import pytest

from .wire import (
    SNODE_KEYS,
    Account,
    Wire,
    assert_t_hf,
    b64,
    is_hex,
    is_int,
    zbase32,
)

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker", "swarm")]


def check_swarm_body(wire: Wire, body: dict[str, Any], account: Account, *, what: str) -> None:
    """The get_swarm / 421 body: {"snodes": [...], "swarm": "<hex>", "t", "hf"} listing every
    member of the account's swarm with the fields session-storage-server swarm_to_json writes."""
    assert_t_hf(body, what=what)
    expected = {n.ed25519: n for n in wire.swarm_of(account)}
    swarm = body.get("swarm")
    assert isinstance(swarm, str), f"{what}: 'swarm' must be a hex string, got {swarm!r}"
    assert swarm == f"{next(iter(expected.values())).swarm_id:x}", (
        f"{what}: swarm {swarm!r} is not '{{:x}}' of the account's swarm id")
    snodes = body.get("snodes")
    assert isinstance(snodes, list) and snodes, f"{what}: no snodes"
    got = {}
    for sn in snodes:
        assert SNODE_KEYS <= set(sn), f"{what}: member lacks {sorted(SNODE_KEYS - set(sn))}: {sn}"
        ed = sn["pubkey_ed25519"]
        assert ed in expected, f"{what}: {ed} is not a member of the account's swarm"
        seed_view = expected[ed]
        # "port" is the deprecated string form of port_https (desktop builds its URLs from it)
        assert isinstance(sn["port"], str) and sn["port"] == str(sn["port_https"]), sn
        assert is_int(sn["port_https"]) and sn["port_https"] == seed_view.port, sn
        assert is_int(sn["port_omq"]) and sn["port_omq"] > 0, sn
        assert is_int(sn["port_quic"]) and sn["port_quic"] == sn["port_omq"], sn
        assert sn["ip"] == seed_view.ip and sn["ip"] != "0.0.0.0"
        ipaddress.IPv4Address(sn["ip"])
        assert sn["pubkey_x25519"] == seed_view.x25519
        assert is_hex(sn["pubkey_legacy"], 64)
        assert sn["address"] == zbase32(bytes.fromhex(sn["pubkey_legacy"])) + ".snode", sn
        got[ed] = sn
    assert set(got) == set(expected), f"{what}: swarm members {sorted(got)} != {sorted(expected)}"


async def test_info(wire: Wire) -> None:
    for node in wire.nodes:
        r = await wire.rpc(node, "info", {})
        body = r.expect(200)
        assert_t_hf(body, what=f"info@{node}")
        v = body.get("version")
        assert isinstance(v, list) and len(v) == 3 and all(is_int(x) for x in v), v
        assert is_int(body.get("timestamp")) and abs(body["timestamp"] - body["t"]) < 5000


@pytest.mark.parametrize("method", ["get_swarm", "get_snodes_for_pubkey"])
async def test_get_swarm(wire: Wire, method: str) -> None:
    for style in ("session", "group", "ed05"):
        acct = Account.new(style)
        for node in wire.nodes:  # any node answers get_swarm, member or not
            body = (await wire.rpc(node, method, {"pubkey": acct.pubkey})).expect(200)
            check_swarm_body(wire, body, acct, what=f"{method}@{node}")


async def test_get_swarm_pubKey_alias_and_extra_params(wire: Wire, account: Account) -> None:
    """Old clients send pubKey; desktop's SwarmForSubRequest adds a nested 'params' object the
    server must ignore."""
    node = wire.nodes[0]
    body = (await wire.rpc(node, "get_swarm", {"pubKey": account.pubkey})).expect(200)
    check_swarm_body(wire, body, account, what="get_swarm(pubKey)")
    desktop = {"pubkey": account.pubkey, "params": {"active_only": True, "fields": {
        "public_ip": True, "storage_port": True, "pubkey_x25519": True, "pubkey_ed25519": True}}}
    r = await wire.rpc(node, "batch", {"requests": [{"method": "get_swarm", "params": desktop}]})
    res = r.expect(200)["results"][0]
    assert res["code"] == 200, res
    check_swarm_body(wire, res["body"], account, what="batch get_swarm")


async def test_oxend_request_get_service_nodes(wire: Wire) -> None:
    """desktop GetServiceNodesSubRequest (inside a batch) and a direct call: the oxend result is
    wrapped as {"result": ..., "t", "hf"}."""
    params = {"endpoint": "get_service_nodes", "params": {"active_only": True, "fields": {
        "public_ip": True, "storage_port": True, "pubkey_x25519": True, "pubkey_ed25519": True}}}
    everyone = {n.ed25519 for n in wire.nodes}
    for node in wire.nodes:
        direct = (await wire.rpc(node, "oxend_request", params)).expect(200)
        assert_t_hf(direct, what=f"oxend_request@{node}")
        batch = (await wire.rpc(node, "batch", {"requests": [
            {"method": "oxend_request", "params": params}]})).expect(200)["results"][0]
        assert batch["code"] == 200, batch
        for body in (direct, batch["body"]):
            states = body["result"]["service_node_states"]
            assert {s["pubkey_ed25519"] for s in states} == everyone
            for s in states:
                assert set(s) == set(params["params"]["fields"]), s
                assert is_int(s["storage_port"]) and s["public_ip"] != "0.0.0.0"
            assert is_int(body["t"])


async def test_oxend_request_whitelist(wire: Wire) -> None:
    r = await wire.rpc(wire.nodes[0], "oxend_request", {"endpoint": "get_info", "params": {}})
    assert r.status == 400, str(r)
    assert r.text == "invalid request: Invalid oxend endpoint 'get_info'", r.text
    r = await wire.rpc(wire.nodes[0], "oxend_request", {})
    assert r.status == 400 and r.text == "invalid request: Required field 'endpoint' missing", r.text


def parse_active_nodes_bin(blob: bytes) -> dict[str, dict[str, Any]]:
    """libsession service_node::process_snode_cache_bin: 51-byte records."""
    assert len(blob) % 51 == 0 and blob, f"active_nodes_bin size {len(blob)} is not k*51"
    out = {}
    for i in range(0, len(blob), 51):
        rec = blob[i:i + 51]
        ed = rec[:32].hex()
        (swarm,) = struct.unpack(">Q", rec[32:40])
        ip = str(ipaddress.IPv4Address(rec[40:44]))
        https, quic = struct.unpack(">HH", rec[44:48])
        out[ed] = {"swarm": swarm, "ip": ip, "https": https, "quic": quic,
                   "version": list(rec[48:51])}
    return out


async def test_active_nodes_bin(wire: Wire) -> None:
    """The compact node list current libsession fetches its snode pool with
    (snode_pool.cpp _launch_next_refresh_request: "active_nodes_bin")."""
    full = (await wire.seed("get_n_service_nodes", {"active_only": True})).expect(200)
    seed = {s["pubkey_ed25519"]: s for s in full["result"]["service_node_states"]}
    node = wire.nodes[0]
    r = await wire.rpc(node, "active_nodes_bin", {})
    assert r.status == 200, str(r)
    assert r.content_type == "application/octet-stream", r.content_type
    recs = parse_active_nodes_bin(r.body)
    assert set(recs) == set(seed)
    for ed, rec in recs.items():
        s = seed[ed]
        assert rec == {"swarm": s["swarm_id"], "ip": s["public_ip"], "https": s["storage_port"],
                       "quic": s["storage_lmq_port"], "version": s["storage_server_version"]}
    # in a batch (and through onion requests) the binary body is base64
    res = (await wire.rpc(node, "batch", {"requests": [
        {"method": "active_nodes_bin", "params": {}}]})).expect(200)["results"][0]
    assert res["code"] == 200 and isinstance(res["body"], str)
    assert parse_active_nodes_bin(base64.b64decode(res["body"])) == recs


async def swarm_bound_requests(wire: Wire, account: Account) -> dict[str, dict[str, Any]]:
    ts = wire.now()
    fake = "A" * 43
    return {
        "store": {"pubkey": account.pubkey, "timestamp": ts, "ttl": 60_000, "data": b64(b"x")},
        "retrieve": wire.retrieve_params(account),
        "delete": {"messages": [fake], **account.auth("delete" + fake)},
        "delete_all": {"timestamp": ts, **account.auth(f"delete_all{ts}")},
        "delete_before": {"before": ts, **account.auth(f"delete_before{ts}")},
        "expire": {"messages": [fake], "expiry": ts + 60_000,
                   **account.auth(f"expire{ts + 60_000}{fake}")},
        "expire_all": {"expiry": ts + 60_000, **account.auth(f"expire_all{ts + 60_000}")},
        "get_expiries": {"messages": [fake], "timestamp": ts,
                         **account.auth(f"get_expiries{ts}{fake}")},
    }


async def test_421_wrong_swarm(wire: Wire, account: Account) -> None:
    """Every swarm-bound method sent to a node outside the account's swarm answers 421 with the
    get_swarm body of the right swarm (request_handler.cpp handle_wrong_swarm); desktop
    (handle421InvalidSwarm) and libsession replace their cached swarm with body.snodes."""
    outsider = wire.outsider(account)
    for method, params in (await swarm_bound_requests(wire, account)).items():
        r = await wire.rpc(outsider, method, params)
        assert r.status == 421, f"{method} to a non-member: {r}"
        check_swarm_body(wire, r.json, account, what=f"421 for {method}")


async def test_421_inside_batch(wire: Wire, account: Account) -> None:
    outsider = wire.outsider(account)
    reqs = await swarm_bound_requests(wire, account)
    res = (await wire.rpc(outsider, "batch", {"requests": [
        {"method": "retrieve", "params": reqs["retrieve"]}]})).expect(200)["results"][0]
    assert res["code"] == 421, res
    check_swarm_body(wire, res["body"], account, what="421 in batch")


async def test_content_types(wire: Wire, account: Account) -> None:
    """The storage server labels JSON bodies exactly "application/json" and error strings
    exactly "text/plain" (oxenss/server/https.cpp HTTPS::render / error_response)."""
    node = wire.member(account)
    r = await wire.rpc(node, "info", {})
    assert r.status == 200 and r.content_type == "application/json", str(r)
    r = await wire.rpc(node, "retrieve", {"pubkey": account.pubkey})
    assert r.status == 401 and r.content_type == "text/plain", str(r)
    r = await wire.rpc(wire.outsider(account), "retrieve", wire.retrieve_params(account))
    assert r.status == 421 and r.content_type == "application/json", str(r)


async def test_get_stats_v1(wire: Wire) -> None:
    """Deprecated but still served: GET /get_stats/v1 -> {"version": "x.y.z"} (https.cpp)."""
    node = wire.nodes[0]
    info = (await wire.rpc(node, "info", {})).expect(200)
    r = await wire.get(f"{node.url}/get_stats/v1")
    body = r.expect(200)
    assert body == {"version": ".".join(str(x) for x in info["version"])}, body


async def test_unknown_path_is_404(wire: Wire) -> None:
    node = wire.nodes[0]
    r = await wire.post(f"{node.url}/storage_rpc/v2", b"{}")
    assert r.status == 404, str(r)
    assert r.text == "post /storage_rpc/v2 Not Found", r.text
    r = await wire.get(f"{node.url}/storage_rpc/v1")
    assert r.status == 404, str(r)
    # and the node keeps serving
    (await wire.rpc(node, "info", {})).expect(200)


async def test_storage_rpc_body_framing(wire: Wire, account: Account) -> None:
    """{"method", "params"} with or without the jsonrpc key desktop adds; unknown extra keys are
    ignored."""
    node = wire.member(account)
    for body in ({"method": "get_swarm", "params": {"pubkey": account.pubkey}},
                 {"jsonrpc": "2.0", "id": 7, "method": "get_swarm",
                  "params": {"pubkey": account.pubkey}}):
        r = await wire.rpc_raw(node, json.dumps(body).encode())
        check_swarm_body(wire, r.expect(200), account, what=f"framing {sorted(body)}")
