"""The seed as an oxend stand-in, without sockets: real-node list, keys, the six commands, liveness."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from nodes.common.proof import build_proof
from nodes.protocol.keys import Identity, derive_seed
from nodes.protocol.swarm import UNASSIGNED_SWARM, SwarmParams
from nodes.seed.__main__ import parse_args, parse_hardfork
from nodes.seed.omq import framing
from nodes.seed.omq.commands import OxendCommands
from nodes.seed.omq.config import (
    OxenMQConfigError,
    RealNodeSpec,
    legacy_pubkey,
    load_real_nodes,
    oxend_privkeys,
    parse_real_nodes,
)
from nodes.seed.registry import LIVENESS_OXENMQ, SeedConfig, SeedCore

pytestmark = pytest.mark.unit

SEED = "unit"
SMALL = SwarmParams(min_swarm_size=3, ideal_swarm_margin=0, new_swarm_size=3)


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def spec(i: int, **over: Any) -> dict[str, Any]:
    d = {"name": f"sn{i:02d}", "endpoint": f"tcp://127.0.0.1:{24000 + i}", "public_ip": f"127.60.0.{i}",
         "storage_port": 22021, "storage_lmq_port": 23000 + i}
    d.update(over)
    return d


def ident(name: str) -> Identity:
    return Identity.from_seed(derive_seed(SEED, "node", name))


def make(n: int = 4, hardfork: tuple[int, int] = (19, 4)) -> tuple[OxendCommands, FakeClock]:
    clock = FakeClock()
    core = SeedCore(SeedConfig(testnet_seed=SEED, params=SMALL, hardfork=hardfork, oxenmq_timeout=90.0,
                               proof_timeout=6.0), clock=clock)
    cmds = OxendCommands(core, parse_real_nodes({"nodes": [spec(i) for i in range(1, n + 1)]}), SEED,
                         rng_factory=lambda: random.Random(1))
    cmds.register_all()
    return cmds, clock


def call(cmds: OxendCommands, name: str, command: str, body: Any = None, route: bytes = b"r") -> list[bytes] | None:
    data = [] if body is None else [json.dumps(body).encode()]
    return cmds.handle(name, route, command, data)


def ok_json(answer: list[bytes] | None) -> Any:
    assert answer is not None and answer[0] == b"200", answer
    assert len(answer) == 2
    return json.loads(answer[1])


# --- configuration ---------------------------------------------------------------------------------

def test_real_node_list_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "real.json"
    path.write_text(json.dumps({"nodes": [spec(1, version=[2, 8, 0]), spec(2, endpoint="ipc:///tmp/x.sock")]}))
    specs = load_real_nodes(path)
    assert [s.name for s in specs] == ["sn01", "sn02"] and specs[0].version == (2, 8, 0)
    assert RealNodeSpec.from_json(specs[0].to_json(), "x") == specs[0]
    bad = [
        ({"nodes": [spec(1), spec(1, endpoint="tcp://127.0.0.1:1")]}, "name 'sn01' appears twice"),
        ({"nodes": [spec(1), spec(2, endpoint=spec(1)["endpoint"])]}, "appears twice"),
        ({"nodes": [spec(1, endpoint="udp://1.2.3.4:5")]}, "must start with ipc:// or tcp://"),
        ({"nodes": [spec(1, endpoint="tcp://localhost:5")]}, "tcp://<IPv4>:<port"),
        ({"nodes": [spec(1, endpoint="ipc://relative.sock")]}, "absolute path"),
        ({"nodes": [spec(1, endpoint="ipc:///" + "d" * 120)]}, "longer than 107"),
        ({"nodes": [spec(1, public_ip="0.0.0.0")]}, "public_ip"),
        ({"nodes": [spec(1, storage_port=0)]}, "storage_port"),
        ({"nodes": [spec(1, version="2.8.0")]}, "version"),
        ({"nodes": [spec(1, secret="x")]}, "unknown field"),
        ({"node": []}, "{\"nodes\": [...]}"),
    ]
    for data, message in bad:
        with pytest.raises(OxenMQConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
            parse_real_nodes(data)
    path.write_text("{nope")
    with pytest.raises(OxenMQConfigError, match="not valid JSON"):
        load_real_nodes(path)
    with pytest.raises(OxenMQConfigError, match="cannot read"):
        load_real_nodes(tmp_path / "missing.json")


def test_cli_options(tmp_path: Path) -> None:
    path = tmp_path / "real.json"
    path.write_text(json.dumps({"nodes": [spec(1)]}))
    args = parse_args(["--oxenmq-nodes", str(path), "--hardfork", "19.4", "--oxenmq-timeout", "60"])
    assert [s.name for s in args.real_nodes] == ["sn01"] and args.hardfork == (19, 4)
    assert args.oxenmq_timeout == 60 and args.oxenmq_min_nodes == 10
    assert parse_args(["--oxenmq-min-nodes", "0"]).oxenmq_min_nodes == 0
    assert parse_args([]).real_nodes == []
    assert parse_hardfork("21.1") == (21, 1)
    for bad in ("19.2", "19", "x.y", "18.9"):
        with pytest.raises(ValueError, match="hardfork"):
            parse_hardfork(bad)
    for bad_args in (["--oxenmq-nodes", str(tmp_path / "missing.json")], ["--oxenmq-min-nodes", "-1"],
                     ["--hardfork", "19.2"], ["--oxenmq-timeout", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad_args)


def test_env_names_the_real_node_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "real.json"
    path.write_text(json.dumps({"nodes": [spec(3)]}))
    monkeypatch.setenv("SESSION_TESTNET_OXENMQ_NODES", str(path))
    assert [s.name for s in parse_args([]).real_nodes] == ["sn03"]


def test_keys_give_the_ed25519_pubkey_as_legacy_key() -> None:
    node = ident("sn01")
    keys = oxend_privkeys(node)
    assert keys["service_node_ed25519_privkey"] == node.ed25519_secret.hex()
    assert keys["service_node_ed25519_privkey"] == node.seed.hex() + node.ed25519_hex
    assert keys["service_node_x25519_privkey"] == node.x25519_secret.hex()
    assert legacy_pubkey(keys["service_node_privkey"]) == node.ed25519_public
    assert all(len(bytes.fromhex(v)) in (32, 64) for v in keys.values())


# --- commands --------------------------------------------------------------------------------------

def test_configured_nodes_are_listed_before_they_speak() -> None:
    cmds, _ = make(4)
    assert len(cmds.core.nodes) == 4
    node = cmds.core.nodes[ident("sn01").ed25519_hex]
    assert node.liveness == LIVENESS_OXENMQ and node.public_ip == "127.60.0.1"
    assert (node.storage_port, node.storage_lmq_port, node.admin_port) == (22021, 23001, 0)
    assert node.pubkey_x25519 == ident("sn01").x25519_hex


def test_privkey_answer_is_for_the_endpoint_node() -> None:
    cmds, _ = make()
    for name in ("sn01", "sn02"):
        assert ok_json(call(cmds, name, "admin.get_service_node_privkey")) == oxend_privkeys(ident(name))


def test_get_service_nodes_shape_and_unchanged() -> None:
    cmds, _ = make(4)
    cmds.core.produce_block()
    fields = {k: True for k in ("service_node_pubkey", "swarm_id", "storage_port", "public_ip", "height",
                                "block_hash", "hardfork", "snode_revision", "funded", "pubkey_x25519",
                                "pubkey_ed25519", "storage_lmq_port")}
    res = ok_json(call(cmds, "sn01", "rpc.get_service_nodes", {"fields": fields, "active_only": False}))
    assert (res["height"], res["hardfork"], res["snode_revision"]) == (1, 19, 4)
    assert res["block_hash"] == cmds.core.block_hash
    states = {s["service_node_pubkey"]: s for s in res["service_node_states"]}
    assert set(states) == {ident(f"sn{i:02d}").ed25519_hex for i in range(1, 5)}
    one = states[ident("sn02").ed25519_hex]
    assert set(one) == set(fields) - {"height", "block_hash", "hardfork", "snode_revision"}
    assert (one["public_ip"], one["storage_lmq_port"], one["funded"]) == ("127.60.0.2", 23002, True)
    assert one["pubkey_ed25519"] == one["service_node_pubkey"]
    assert all(s["swarm_id"] != UNASSIGNED_SWARM for s in states.values())
    same = ok_json(call(cmds, "sn01", "rpc.get_service_nodes", {"fields": fields,
                                                                "poll_block_hash": res["block_hash"]}))
    assert same["unchanged"] is True and "service_node_states" not in same
    cmds.core.produce_block()
    newer = ok_json(call(cmds, "sn01", "rpc.get_service_nodes", {"poll_block_hash": res["block_hash"]}))
    assert newer["unchanged"] is False and len(newer["service_node_states"]) == 4


def test_decommissioned_node_is_listed_with_the_invalid_swarm() -> None:
    cmds, _ = make(4)
    cmds.core.produce_block()
    cmds.core.decommission(ident("sn03").ed25519_hex)
    res = ok_json(call(cmds, "sn01", "rpc.get_service_nodes", {"active_only": False}))
    by_key = {s["service_node_pubkey"]: s for s in res["service_node_states"]}
    assert by_key[ident("sn03").ed25519_hex]["swarm_id"] == 2**64 - 1


def test_block_hash_answers() -> None:
    cmds, _ = make()
    for _ in range(3):
        cmds.core.produce_block()
    assert ok_json(call(cmds, "sn01", "rpc.get_block_hash", {"height": [2]})) == cmds.core.block_hash_at(2).hex()
    both = ok_json(call(cmds, "sn01", "rpc.get_block_hash", {"height": [1, 3]}))
    assert both == {"1": cmds.core.block_hash_at(1).hex(), "3": cmds.core.block_hash}
    for body in ({"height": [9]}, {"height": 2}, {}):
        answer = call(cmds, "sn01", "rpc.get_block_hash", body)
        assert answer is not None and answer[0] == b"400"


def test_ping_is_recorded_and_sets_the_version() -> None:
    cmds, clock = make()
    me = ident("sn02")
    body = {"version": [2, 8, 0], "pubkey_ed25519": me.ed25519_hex, "https_port": 22021, "omq_port": 23002}
    assert ok_json(call(cmds, "sn02", "admin.storage_server_ping", body)) == {"status": "OK"}
    assert cmds.core.nodes[me.ed25519_hex].version == (2, 8, 0)
    clock.t += 5
    snap = {n["name"]: n for n in cmds.snapshot()["nodes"]}
    assert snap["sn02"]["pings"]["count"] == 1 and snap["sn02"]["pings"]["last"] == body
    assert snap["sn02"]["pings"]["last_age"] == 5.0
    assert snap["sn01"]["pings"]["count"] == 0
    wrong = call(cmds, "sn01", "admin.storage_server_ping", body)  # sn02's key on sn01's endpoint
    assert wrong is not None and wrong[0] == b"400" and b"not the key" in wrong[1]


def test_sub_block_then_already() -> None:
    cmds, _ = make()
    assert call(cmds, "sn01", "sub.block", route=b"a") == [b"OK"]
    assert call(cmds, "sn01", "sub.block", route=b"a") == [b"ALREADY"]
    assert call(cmds, "sn01", "sub.block", route=b"b") == [b"OK"]
    assert cmds.subscribers["sn01"] == {b"a", b"b"} and cmds.subscribers["sn02"] == set()
    cmds.core.produce_block()
    height, block_hash = cmds.block_notification()
    assert height == b"1" and block_hash == cmds.core.block_hash_at(1) and len(block_hash) == 32


def test_peer_reports_are_recorded() -> None:
    cmds, _ = make()
    about = ident("sn03").ed25519_hex
    for passed in (True, True, False):
        assert ok_json(call(cmds, "sn01", "admin.report_peer_status",
                            {"type": "storage", "pubkey": about, "passed": passed})) == {"status": "OK"}
    call(cmds, "sn02", "admin.report_peer_status", {"type": "storage", "pubkey": about, "passed": True})
    snap = {n["name"]: n for n in cmds.snapshot()["nodes"]}
    sent = snap["sn01"]["peer_reports_sent"]
    assert (sent["passed"], sent["failed"]) == (2, 1) and sent["by_subject"][about]["last_passed"] is False
    got = snap["sn03"]["peer_reports_received"]
    assert (got["passed"], got["failed"]) == (3, 1)
    bad = call(cmds, "sn01", "admin.report_peer_status", {"type": "lokinet", "pubkey": about, "passed": True})
    assert bad is not None and bad[0] == b"400"


def test_unknown_command_and_bad_json() -> None:
    cmds, _ = make()
    assert cmds.handle("sn01", b"r", "rpc.get_info", []) is None
    answer = cmds.handle("sn01", b"r", "rpc.get_service_nodes", [b"{not json"])
    assert answer is not None and answer[0] == b"400" and b"not JSON" in answer[1]


def test_framing() -> None:
    msg = framing.parse([b"id", b"rpc.get_block_hash", b"tag1", b"{}"])
    assert (msg.route, msg.command, msg.rest) == (b"id", "rpc.get_block_hash", [b"tag1", b"{}"])
    assert framing.reply(b"id", b"tag1", [b"200", b"{}"]) == [b"id", b"REPLY", b"tag1", b"200", b"{}"]
    assert framing.unknown_command(b"id", "x.y") == [b"id", b"UNKNOWNCOMMAND", b"x.y"]
    assert framing.hello(b"id") == [b"id", b"HELLO"]
    with pytest.raises(framing.FramingError):
        framing.parse([b"id"])


# --- liveness --------------------------------------------------------------------------------------

def test_silent_real_node_is_deregistered_and_comes_back() -> None:
    cmds, clock = make(4)
    python_node = Identity.from_seed(derive_seed(SEED, "node", "py01"))
    cmds.core.accept_proof(build_proof(python_node, public_ip="127.0.9.1", storage_port=22021,
                                       storage_lmq_port=0, admin_port=22030, timestamp_ms=int(clock() * 1000)))
    cmds.core.produce_block()
    clock.t += 30  # beyond the proof timeout (6 s), within the OxenMQ timeout (90 s)
    for i in (1, 2, 3):
        call(cmds, f"sn{i:02d}", "sub.block")
    result = cmds.core.produce_block()
    assert result.deregistered == [python_node.ed25519_hex]
    assert ident("sn04").ed25519_hex in cmds.core.nodes
    clock.t += 70  # sn04 silent for 100 s, the others for 70 s
    result = cmds.core.produce_block()
    assert result.deregistered == [ident("sn04").ed25519_hex]
    assert {n["name"]: n["status"] for n in cmds.snapshot()["nodes"]}["sn04"] == "deregistered"
    # it speaks again: listed again, and the listing it gets already holds it
    res = ok_json(call(cmds, "sn04", "rpc.get_service_nodes", {}))
    assert ident("sn04").ed25519_hex in {s["service_node_pubkey"] for s in res["service_node_states"]}


def test_first_list_is_held_below_the_bootstrap_threshold() -> None:
    cmds, _ = make(4)  # min_first_list defaults to 10, the server's testnet threshold
    first = [json.dumps({"active_only": False}).encode()]
    assert cmds.first_list_held("rpc.get_service_nodes", first) is not None
    assert cmds.first_list_held("rpc.get_service_nodes", []) is not None
    polled = [json.dumps({"poll_block_hash": "ab" * 32}).encode()]
    assert cmds.first_list_held("rpc.get_service_nodes", polled) is None
    assert cmds.first_list_held("sub.block", []) is None
    cmds.min_first_list = 4
    assert cmds.first_list_held("rpc.get_service_nodes", first) is None
    # a listed node without an OxenMQ port is "missing contact info" for the server (> 3 % of 5)
    python_node = Identity.from_seed(derive_seed(SEED, "node", "py01"))
    cmds.core.accept_proof(build_proof(python_node, public_ip="127.0.9.1", storage_port=22021, storage_lmq_port=0,
                                       admin_port=22030, timestamp_ms=int(cmds.core.clock() * 1000)))
    held = cmds.first_list_held("rpc.get_service_nodes", first)
    assert held is not None and "1 without contact info" in held
    cmds.min_first_list = 0  # the guard is off
    assert cmds.first_list_held("rpc.get_service_nodes", first) is None


def test_hardfork_below_19_3_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 19.3"):
        SeedConfig(testnet_seed=SEED, hardfork=(19, 2))


def test_the_stand_in_reports_the_chains_start_height() -> None:
    """With ``--start-height`` the real servers see a long-running chain's height, like our nodes."""
    clock = FakeClock()
    core = SeedCore(SeedConfig(testnet_seed=SEED, params=SMALL, hardfork=(19, 4), start_height=1_000_000),
                    clock=clock)
    cmds = OxendCommands(core, parse_real_nodes({"nodes": [spec(i) for i in range(1, 5)]}), SEED,
                         rng_factory=lambda: random.Random(1), min_first_list=0)
    cmds.register_all()
    core.produce_block()
    listing = ok_json(call(cmds, "sn01", "rpc.get_service_nodes", {"active_only": True}))
    assert listing["height"] == 1_000_001
    assert cmds.block_notification()[0] == b"1000001"
    assert ok_json(call(cmds, "sn01", "rpc.get_block_hash", {"height": [1_000_000]})) == \
        core.block_hash_at(1_000_000).hex()
