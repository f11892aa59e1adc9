"""Per-viewer node lists of the seed's oxend stand-in: ``peer_ips`` in the real-node file make one
node's list show named peers at other addresses (its link proxies), nobody else's."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from test_seed_oxenmq import SEED, SMALL, FakeClock, call, ident, ok_json, spec

from nodes.seed.omq.commands import GET_SERVICE_NODES, OxendCommands, viewer_listing
from nodes.seed.omq.config import OxenMQConfigError, parse_real_nodes
from nodes.seed.registry import SeedConfig, SeedCore

pytestmark = pytest.mark.unit

FIELDS = {"fields": {"service_node_pubkey": True, "public_ip": True, "storage_port": True,
                     "storage_lmq_port": True, "swarm_id": True, "block_hash": True}}


def make(specs: list[dict[str, Any]]) -> OxendCommands:
    core = SeedCore(SeedConfig(testnet_seed=SEED, params=SMALL, hardfork=(19, 4), oxenmq_timeout=90.0,
                               proof_timeout=6.0), clock=FakeClock())
    cmds = OxendCommands(core, parse_real_nodes({"nodes": specs}), SEED,
                         rng_factory=lambda: random.Random(1))
    cmds.register_all()
    return cmds


def addresses(listing: dict[str, Any]) -> dict[str, tuple[str, int, int]]:
    by_key = {ident(f"sn{i:02d}").ed25519_hex: f"sn{i:02d}" for i in range(1, 11)}
    return {by_key[e["service_node_pubkey"]]: (e["public_ip"], e["storage_port"], e["storage_lmq_port"])
            for e in listing["service_node_states"]}


def test_viewer_listing_replaces_only_the_named_peers_ip() -> None:
    listing = {"height": 5, "service_node_states": [
        {"service_node_pubkey": "aa", "public_ip": "127.1.1.1", "storage_port": 1},
        {"service_node_pubkey": "bb", "public_ip": "127.1.2.1", "storage_port": 2}]}
    seen = viewer_listing(listing, {"bb": "127.1.2.3"})
    assert [e["public_ip"] for e in seen["service_node_states"]] == ["127.1.1.1", "127.1.2.3"]
    assert seen["service_node_states"][1]["storage_port"] == 2 and seen["height"] == 5
    # the registry's listing itself is untouched
    assert listing["service_node_states"][1]["public_ip"] == "127.1.2.1"
    assert viewer_listing(listing, {}) is listing
    assert viewer_listing({"unchanged": True}, {"bb": "127.1.2.3"}) == {"unchanged": True}


def test_each_node_sees_its_peers_at_its_own_addresses() -> None:
    specs = [spec(i) for i in range(1, 5)]
    specs[0]["peer_ips"] = {"sn02": "127.60.2.3", "sn03": "127.60.3.3"}
    specs[1]["peer_ips"] = {"sn01": "127.60.1.4"}
    cmds = make(specs)
    a = addresses(ok_json(call(cmds, "sn01", GET_SERVICE_NODES, FIELDS)))
    assert a["sn02"] == ("127.60.2.3", 22021, 23002) and a["sn03"] == ("127.60.3.3", 22021, 23003)
    assert a["sn01"] == ("127.60.0.1", 22021, 23001) and a["sn04"] == ("127.60.0.4", 22021, 23004)
    b = addresses(ok_json(call(cmds, "sn02", GET_SERVICE_NODES, FIELDS)))
    assert b["sn01"] == ("127.60.1.4", 22021, 23001) and b["sn03"] == ("127.60.0.3", 22021, 23003)
    c = addresses(ok_json(call(cmds, "sn03", GET_SERVICE_NODES, FIELDS)))
    assert c == {f"sn{i:02d}": (f"127.60.0.{i}", 22021, 23000 + i) for i in range(1, 5)}
    # clients (the JSON-RPC listing) see every node at its advertised address
    public = cmds.core.get_service_nodes(FIELDS, random.Random(1))
    assert {e["public_ip"] for e in public["service_node_states"]} == {f"127.60.0.{i}" for i in range(1, 5)}
    # the observations show what each viewer was given
    snap = {n["name"]: n["peer_ips"] for n in cmds.snapshot()["nodes"]}
    assert snap["sn01"] == {"sn02": "127.60.2.3", "sn03": "127.60.3.3"} and snap["sn04"] == {}


@pytest.mark.parametrize(("peer_ips", "message"), [
    ({"sn09": "127.60.9.3"}, "names sn09, which the list does not hold"),
    ({"sn01": "127.60.1.3"}, "names the node itself"),
    ({"sn02": "0.0.0.0"}, r"peer_ips\['sn02'\]` must be a dotted IPv4"),
    ({"sn02": "host"}, "must be a dotted IPv4"),
    (["sn02"], "must be an object"),
])
def test_bad_peer_ips_are_refused_naming_the_entry(peer_ips: Any, message: str) -> None:
    specs = [spec(1, peer_ips=peer_ips), spec(2)]
    with pytest.raises(OxenMQConfigError, match=message):
        parse_real_nodes({"nodes": specs})


def test_peer_ips_round_trip_through_json() -> None:
    specs = parse_real_nodes({"nodes": [spec(1, peer_ips={"sn02": "127.60.2.3"}), spec(2)]})
    again = parse_real_nodes(json.loads(json.dumps({"nodes": [s.to_json() for s in specs]})))
    assert again == specs and again[0].peer_ips == (("sn02", "127.60.2.3"),)
