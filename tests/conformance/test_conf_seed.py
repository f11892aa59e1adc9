"""The seed's JSON-RPC as the production bootstrap code uses it (oxend get_n_service_nodes /
get_service_nodes over HTTP and HTTPS).  Sources: docs/conformance.md, section "Seed"."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from .wire import Wire, is_hex, is_int

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker", "swarm")]

#: session-desktop SeedNodeAPI.ts getSnodesFromSeedUrl (+ the fields SnodeRequestTypes.ts
#: GetServicesNodesFromSeedRequest adds in newer releases)
DESKTOP_FIELDS = {"public_ip": True, "storage_port": True, "pubkey_x25519": True,
                  "pubkey_ed25519": True, "storage_server_version": True,
                  "requested_unlock_height": True, "height": True}
#: session-storage-server ServiceNode::bootstrap_data (oxenss/snode/service_node.cpp)
STORAGE_SERVER_FIELDS = {f: True for f in (
    "service_node_pubkey", "swarm_id", "storage_port", "public_ip", "height", "block_hash",
    "hardfork", "snode_revision", "pubkey_x25519", "pubkey_ed25519", "storage_lmq_port",
    "storage_server_version")}
#: result-level (not per-node) fields a caller may ask for
TOP_LEVEL = {"height", "block_hash", "hardfork", "snode_revision", "target_height", "status"}
#: PROTOCOL.md §3 per-node fields; oxend also lists requested_unlock_height
ALL_NODE_FIELDS = {"public_ip", "storage_port", "storage_lmq_port", "pubkey_ed25519",
                   "pubkey_x25519", "service_node_pubkey", "swarm_id", "storage_server_version",
                   "funded", "active", "requested_unlock_height"}

SCHEMES = [pytest.param(False, id="http"), pytest.param(True, id="https")]


def libsession_parse(sn: dict[str, Any]) -> dict[str, Any]:
    """libsession-util service_node::from_json (src/network/service_node.cpp): what a node entry
    must satisfy to be accepted into a libsession snode pool."""
    pk = sn["pubkey_ed25519"]
    assert is_hex(pk, 64), f"pubkey_ed25519 is not 64 hex: {pk!r}"
    ver = sn.get("storage_server_version", [0, 0, 0])
    if isinstance(ver, list):
        assert all(is_int(x) for x in ver), f"storage_server_version {ver!r}"
    else:
        assert isinstance(ver, str) and all(p.isdigit() for p in ver.split(".")), ver
        ver = [int(p) for p in ver.split(".")]
    ip = sn["public_ip"] if "public_ip" in sn else sn["ip"]
    assert isinstance(ip, str) and ip != "0.0.0.0", f"unusable ip {ip!r}"
    ipaddress.IPv4Address(ip)
    port = sn.get("storage_https_port", sn.get("storage_port", sn.get("port_https")))
    assert is_int(port) and 0 < port < 65536, f"https port must be a JSON integer, got {port!r}"
    omq = sn.get("storage_lmq_port", sn.get("port_omq"))
    assert is_int(omq) and 0 < omq < 65536, f"omq port must be a non-zero integer, got {omq!r}"
    if "swarm_id" in sn:
        assert is_int(sn["swarm_id"]) and 0 <= sn["swarm_id"] < 2**64, sn["swarm_id"]
    return {"ed25519": pk, "ip": ip, "port": port, "omq": omq, "version": ver}


def check_entry(sn: dict[str, Any], requested: set[str]) -> None:
    per_node = requested - TOP_LEVEL
    missing = per_node - set(sn)
    assert not missing, f"requested fields missing from {sn}: {sorted(missing)}"
    extra = set(sn) - per_node
    assert not extra, f"fields that were not requested are returned: {sorted(extra)} in {sn}"


async def test_desktop_bootstrap_request(wire: Wire, testnet: Any) -> None:
    """session-desktop's seed request (no "id", only some fields) and its checks: HTTP 200,
    Content-Type exactly application/json, result.service_node_states with usable entries."""
    for https in (False, True):
        r = await wire.seed("get_n_service_nodes", {"active_only": True, "fields": DESKTOP_FIELDS},
                            https=https, with_id=False)
        body = r.expect(200)
        assert isinstance(body.get("result"), dict), f"no result object: {body!r:.300}"
        states = body["result"]["service_node_states"]
        assert isinstance(states, list) and states
        valid = [s for s in states if s.get("public_ip") and s["public_ip"] != "0.0.0.0"]
        assert len(valid) == len(states) == len(testnet.nodes)
        assert is_int(body["result"].get("height")), "requested 'height' is missing"
        for sn in states:
            check_entry(sn, set(DESKTOP_FIELDS))
            assert is_hex(sn["pubkey_x25519"], 64) and is_hex(sn["pubkey_ed25519"], 64)
            assert is_int(sn["storage_port"]) and 0 < sn["storage_port"] < 65536
            assert is_int(sn["requested_unlock_height"])
            v = sn["storage_server_version"]
            assert isinstance(v, list) and len(v) == 3 and all(is_int(x) for x in v), v
            # libsession picks final hops among nodes >= 2.8.0 (onion_request_router)
            assert tuple(v) >= (2, 8, 0), f"storage_server_version {v} is below 2.8.0"


@pytest.mark.parametrize("https", SCHEMES)
async def test_seed_content_type_is_exactly_json(wire: Wire, https: bool) -> None:
    """session-desktop rejects a seed answer whose Content-Type is not exactly
    'application/json' (SeedNodeAPI.ts: headers.get('Content-Type') !== APPLICATION_JSON)."""
    r = await wire.seed("get_n_service_nodes", {"active_only": True, "fields": DESKTOP_FIELDS},
                        https=https, with_id=False)
    assert r.status == 200
    assert r.content_type == "application/json", f"Content-Type is {r.content_type!r}"


@pytest.mark.parametrize("https", SCHEMES)
@pytest.mark.parametrize("method", ["get_n_service_nodes", "get_service_nodes"])
async def test_all_fields_when_fields_absent(wire: Wire, testnet: Any, https: bool,
                                             method: str) -> None:
    body = (await wire.seed(method, {"active_only": True}, https=https)).expect(200)
    res = body["result"]
    assert is_int(res["height"]) and is_hex(res["block_hash"], 64)
    states = res["service_node_states"]
    assert len(states) == len(testnet.nodes)
    for sn in states:
        missing = ALL_NODE_FIELDS - set(sn)
        assert not missing, f"{method}: fields missing without a 'fields' filter: {sorted(missing)}"
        libsession_parse(sn)
        assert sn["active"] is True and sn["funded"] is True
        assert sn["service_node_pubkey"] == sn["pubkey_ed25519"] or is_hex(
            sn["service_node_pubkey"], 64)
        assert is_int(sn["swarm_id"]), f"swarm_id must be an integer, got {sn['swarm_id']!r}"


async def test_jsonrpc_envelope(wire: Wire) -> None:
    body = (await wire.seed("get_n_service_nodes", {"active_only": True,
                                                    "fields": {"pubkey_ed25519": True}})).expect(200)
    assert body.get("jsonrpc") == "2.0"
    assert body.get("id") == "0", f"the request id is not echoed: {body.get('id')!r}"
    assert "error" not in body


async def test_unknown_method_is_a_jsonrpc_error(wire: Wire) -> None:
    r = await wire.seed("no_such_method", {})
    body = r.json
    assert "result" not in body, f"unknown method answered with a result: {body!r:.200}"
    err = body.get("error")
    assert isinstance(err, dict) and is_int(err.get("code")) and isinstance(
        err.get("message"), str), f"no JSON-RPC error object: {body!r:.200}"


async def test_storage_server_bootstrap_fields(wire: Wire, testnet: Any) -> None:
    """The field set the storage server itself bootstraps with: top-level height, block_hash,
    hardfork, snode_revision and per-node entries libsession can parse."""
    body = (await wire.seed("get_service_nodes", {"fields": STORAGE_SERVER_FIELDS})).expect(200)
    res = body["result"]
    assert is_int(res["height"]) and is_hex(res["block_hash"], 64)
    assert is_int(res["hardfork"]) and res["hardfork"] >= 19
    assert is_int(res["snode_revision"])
    nodes = [libsession_parse(sn) for sn in res["service_node_states"]]
    for sn in res["service_node_states"]:
        check_entry(sn, set(STORAGE_SERVER_FIELDS))
    assert len({n["ed25519"] for n in nodes}) == len(testnet.nodes)


@pytest.mark.parametrize("https", SCHEMES)
async def test_libsession_bootstrap_fields(wire: Wire, https: bool) -> None:
    """libsession Network::get_service_nodes: active_only + public_ip/pubkey_ed25519/
    storage_lmq_port, optional limit."""
    fields = {"public_ip": True, "pubkey_ed25519": True, "storage_lmq_port": True}
    body = (await wire.seed("get_service_nodes", {"active_only": True, "fields": fields},
                            https=https)).expect(200)
    for sn in body["result"]["service_node_states"]:
        check_entry(sn, set(fields))
        assert is_int(sn["storage_lmq_port"]) and sn["storage_lmq_port"] > 0
        ipaddress.IPv4Address(sn["public_ip"])


async def test_limit_returns_a_subset(wire: Wire, testnet: Any) -> None:
    everyone = {n.ed25519 for n in wire.nodes}
    for limit in (1, 2, len(everyone)):
        body = (await wire.seed("get_n_service_nodes", {
            "active_only": True, "limit": limit, "fields": {"pubkey_ed25519": True}})).expect(200)
        got = [s["pubkey_ed25519"] for s in body["result"]["service_node_states"]]
        assert len(got) == limit, f"limit {limit} returned {len(got)} nodes"
        assert len(set(got)) == limit and set(got) <= everyone


async def test_active_only_false_lists_active_flag(wire: Wire, testnet: Any) -> None:
    body = (await wire.seed("get_n_service_nodes", {
        "active_only": False, "fields": {"pubkey_ed25519": True, "active": True}})).expect(200)
    states = body["result"]["service_node_states"]
    assert len(states) >= len(testnet.nodes)
    assert all(isinstance(s["active"], bool) for s in states)
    assert {s["pubkey_ed25519"] for s in states if s["active"]} == {n.ed25519 for n in wire.nodes}


async def test_no_unusable_addresses(wire: Wire) -> None:
    """Both desktop and libsession drop 0.0.0.0 / port 0 entries; an active node must never be
    listed that way."""
    body = (await wire.seed("get_n_service_nodes", {"active_only": True})).expect(200)
    for sn in body["result"]["service_node_states"]:
        assert sn["public_ip"] not in ("", "0.0.0.0")
        assert sn["storage_port"] != 0 and sn["storage_lmq_port"] != 0


async def test_swarm_ids_partition_the_nodes(wire: Wire, testnet: Any) -> None:
    """swarm_id is a JSON integer; the seed's swarms are those the harness reports."""
    body = (await wire.seed("get_n_service_nodes", {
        "active_only": True, "fields": {"pubkey_ed25519": True, "swarm_id": True}})).expect(200)
    by_swarm: dict[int, set[str]] = {}
    for sn in body["result"]["service_node_states"]:
        assert is_int(sn["swarm_id"]) and 0 <= sn["swarm_id"] < 2**64 - 1
        by_swarm.setdefault(sn["swarm_id"], set()).add(sn["pubkey_ed25519"])
    expected = {sid: {testnet.node(n).pubkey_ed25519 for n in names}
                for sid, names in testnet.swarms().items()}
    assert by_swarm == expected
