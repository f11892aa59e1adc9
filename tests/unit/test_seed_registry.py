"""Seed core: proofs, blocks, swarms, admin state changes, oxend-style listing (no sockets)."""

from __future__ import annotations

import base64
import random
from collections import Counter
from typing import Any

import pytest

from nodes.common.proof import build_proof
from nodes.protocol.constants import HARDFORK
from nodes.protocol.keys import Identity, derive_seed
from nodes.protocol.swarm import UNASSIGNED_SWARM, SwarmParams, assign_swarms
from nodes.seed.registry import (
    NODE_FIELDS,
    InvalidParams,
    RequestError,
    SeedConfig,
    SeedCore,
    parse_fields,
    requested,
)

pytestmark = pytest.mark.unit

SEED = "unit"
SMALL = SwarmParams(min_swarm_size=3, ideal_swarm_margin=0, new_swarm_size=3)
SECOND = 0x7FFF_FFFF_FFFF_FFFF


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def ident(i: int) -> Identity:
    return Identity.from_seed(derive_seed(SEED, "node", f"sn{i:02d}"))


def proof(identity: Identity, clock: FakeClock, *, ip: str | None = None, port: int = 22021,
          ts_offset_s: float = 0.0, **overrides: Any) -> dict[str, Any]:
    ip = ip or f"127.0.{identity.ed25519_public[0]}.1"
    body = build_proof(identity, public_ip=ip, storage_port=port, storage_lmq_port=22020, admin_port=22030,
                       version=[2, 10, 0], timestamp_ms=int((clock() + ts_offset_s) * 1000))
    body.update(overrides)
    return body


def make_core(expect: int = 0, timeout: float = 6.0) -> tuple[SeedCore, FakeClock]:
    clock = FakeClock()
    return SeedCore(SeedConfig(testnet_seed=SEED, expect=expect, params=SMALL, proof_timeout=timeout),
                    clock=clock), clock


def register(core: SeedCore, clock: FakeClock, ids: list[Identity]) -> None:
    for i in ids:
        assert core.accept_proof(proof(i, clock)) == {"height": core.height, "registered": True}


def listing(core: SeedCore, **params: Any) -> dict[str, Any]:
    return core.get_service_nodes(params, random.Random(1))


# --- proofs ----------------------------------------------------------------------------------

def test_first_proof_registers_unassigned_node() -> None:
    core, clock = make_core()
    i = ident(1)
    register(core, clock, [i])
    states = listing(core)["service_node_states"]
    assert len(states) == 1
    s = states[0]
    assert s["pubkey_ed25519"] == s["service_node_pubkey"] == i.ed25519_hex
    assert s["pubkey_x25519"] == i.x25519_hex
    assert s["active"] is True and s["funded"] is True
    assert s["swarm_id"] == UNASSIGNED_SWARM
    assert s["storage_server_version"] == [2, 10, 0]
    assert core.revision > 0


def test_proof_refresh_updates_address_and_liveness() -> None:
    core, clock = make_core()
    i = ident(1)
    register(core, clock, [i])
    clock.t += 3
    core.accept_proof(proof(i, clock, ip="127.0.9.1", port=23000))
    node = core.nodes[i.ed25519_hex]
    assert (node.public_ip, node.storage_port, node.last_proof) == ("127.0.9.1", 23000, clock.t)
    assert len(core.nodes) == 1


@pytest.mark.parametrize(("mutate", "status", "needle"), [
    (lambda b: b.update(signature=base64.b64encode(b"\x00" * 64).decode()), 401, "signature"),
    (lambda b: b.update(storage_port=b["storage_port"] + 1), 401, "signature"),  # signed field altered
    (lambda b: b.update(pubkey_x25519="00" * 32), 400, "pubkey_x25519"),
    (lambda b: b.update(public_ip="0.0.0.0"), 400, "public_ip"),
    (lambda b: b.update(public_ip="not-an-ip"), 400, "public_ip"),
    (lambda b: b.pop("storage_port"), 400, "storage_port"),
    (lambda b: b.update(version=[2, 10]), 400, "version"),
    (lambda b: b.update(timestamp="now"), 400, "timestamp"),
    (lambda b: b.update(signature="***"), 400, "base64"),
    (lambda b: b.update(pubkey_ed25519="zz" * 32), 400, "pubkey_ed25519"),
])
def test_bad_proofs_are_rejected(mutate: Any, status: int, needle: str) -> None:
    core, clock = make_core()
    body = proof(ident(1), clock)
    mutate(body)
    with pytest.raises(RequestError) as exc:
        core.accept_proof(body)
    assert exc.value.status == status
    assert needle in exc.value.message
    assert core.nodes == {}


@pytest.mark.parametrize("offset", [-61.0, 61.0])
def test_proof_outside_60s_window_is_400(offset: float) -> None:
    core, clock = make_core()
    with pytest.raises(RequestError) as exc:
        core.accept_proof(proof(ident(1), clock, ts_offset_s=offset))
    assert exc.value.status == 400 and "clock" in exc.value.message
    core.accept_proof(proof(ident(1), clock, ts_offset_s=offset * 0.9))  # inside the window: fine


def test_non_object_proof_is_400() -> None:
    core, _ = make_core()
    with pytest.raises(RequestError) as exc:
        core.accept_proof([1, 2])
    assert exc.value.status == 400


# --- blocks and swarms -----------------------------------------------------------------------

def test_first_block_waits_for_expected_nodes() -> None:
    core, clock = make_core(expect=3)
    register(core, clock, [ident(1), ident(2)])
    assert not core.ready_for_first_block()
    register(core, clock, [ident(3)])
    assert core.ready_for_first_block()
    core.produce_block()
    assert not core.ready_for_first_block()  # only the very first block waits


def test_expect_zero_is_ready_at_once() -> None:
    core, _ = make_core(expect=0)
    assert core.ready_for_first_block()
    result = core.produce_block()
    assert result.height == 1 and result.swarm_sizes == {}


def test_six_nodes_make_two_swarms_matching_assign_swarms() -> None:
    core, clock = make_core(expect=6)
    ids = [ident(i) for i in range(1, 7)]
    register(core, clock, ids)
    result = core.produce_block()
    assert result.height == 1 and result.recomputed
    assert result.block_hash == derive_seed(SEED, "block", "1").hex() == core.block_hash
    assert result.swarm_sizes == {0: 3, SECOND: 3}
    expected = assign_swarms({}, [i.ed25519_hex for i in ids], derive_seed(SEED, "block", "1"), SMALL)
    assert {pk: n.swarm_id for pk, n in core.nodes.items()} == expected
    res = listing(core, active_only=True)
    assert res["height"] == 1 and res["block_hash"] == result.block_hash and res["hardfork"] == HARDFORK[0]
    assert Counter(s["swarm_id"] for s in res["service_node_states"]) == Counter({0: 3, SECOND: 3})


def test_blocks_without_membership_change_keep_swarms() -> None:
    core, clock = make_core()
    register(core, clock, [ident(i) for i in range(1, 7)])
    core.produce_block()
    before = {pk: n.swarm_id for pk, n in core.nodes.items()}
    for _ in range(3):
        clock.t += 1
        register(core, clock, [ident(i) for i in range(1, 7)])
        result = core.produce_block()
        assert not result.recomputed
    assert {pk: n.swarm_id for pk, n in core.nodes.items()} == before
    assert core.height == 4


def test_silent_node_is_deregistered_and_swarms_recomputed() -> None:
    core, clock = make_core(timeout=6.0)
    ids = [ident(i) for i in range(1, 7)]
    register(core, clock, ids)
    core.produce_block()
    silent = ids[0]
    clock.t += 4
    register(core, clock, ids[1:])
    assert not core.produce_block().deregistered  # 4 s < timeout
    clock.t += 3  # silent: 7 s, others: 3 s
    register(core, clock, ids[1:])
    result = core.produce_block()
    assert result.deregistered == [silent.ed25519_hex]
    assert result.recomputed
    assert silent.ed25519_hex not in core.nodes
    # 2 swarms of 3 minus one node: the 2-node swarm dissolves into the other one
    assert result.swarm_sizes == {next(iter(result.swarm_sizes)): 5}
    assert silent.ed25519_hex not in {s["pubkey_ed25519"] for s in listing(core)["service_node_states"]}


def test_new_node_after_first_block_is_assigned_at_next_block() -> None:
    core, clock = make_core()
    register(core, clock, [ident(i) for i in range(1, 7)])
    core.produce_block()
    register(core, clock, [ident(7)])
    assert core.nodes[ident(7).ed25519_hex].swarm_id == UNASSIGNED_SWARM
    assert core.nodes[ident(7).ed25519_hex].registration_height == 1
    result = core.produce_block()
    assert result.recomputed
    assert core.nodes[ident(7).ed25519_hex].swarm_id in (0, SECOND)


def test_decommission_and_recommission() -> None:
    core, clock = make_core()
    ids = [ident(i) for i in range(1, 8)]
    register(core, clock, ids)
    core.produce_block()
    victim = ids[2].ed25519_hex
    out = core.decommission(victim)
    assert out["status"] == "decommissioned" and out["changed"]
    entry = next(s for s in listing(core)["service_node_states"] if s["pubkey_ed25519"] == victim)
    assert entry["active"] is False and entry["funded"] is True and entry["swarm_id"] == UNASSIGNED_SWARM
    assert entry["decommission_count"] == 1
    assert victim not in {s["pubkey_ed25519"] for s in listing(core, active_only=True)["service_node_states"]}
    assert core.decommission(victim)["changed"] is False  # idempotent
    assert core.produce_block().recomputed
    assert core.nodes[victim].swarm_id == UNASSIGNED_SWARM
    # a proof does not reactivate a decommissioned node
    core.accept_proof(proof(ids[2], clock))
    assert core.nodes[victim].active is False
    out = core.recommission(victim)
    assert out["status"] == "active" and out["changed"]
    assert core.nodes[victim].swarm_id == UNASSIGNED_SWARM
    core.produce_block()
    assert core.nodes[victim].swarm_id != UNASSIGNED_SWARM


def test_deregister_then_reregister_is_a_new_node() -> None:
    core, clock = make_core()
    ids = [ident(i) for i in range(1, 7)]
    register(core, clock, ids)
    core.produce_block()
    core.produce_block()
    pk = ids[0].ed25519_hex
    assert core.deregister(pk)["status"] == "deregistered"
    assert pk not in core.nodes
    register(core, clock, [ids[0]])
    node = core.nodes[pk]
    assert node.swarm_id == UNASSIGNED_SWARM and node.registration_height == 2
    assert core.produce_block().recomputed  # same active set, but the node is unassigned
    assert core.nodes[pk].swarm_id != UNASSIGNED_SWARM


@pytest.mark.parametrize("op", ["decommission", "recommission", "deregister"])
def test_admin_ops_unknown_and_bad_keys(op: str) -> None:
    core, _ = make_core()
    with pytest.raises(RequestError) as exc:
        getattr(core, op)("ab" * 32)
    assert exc.value.status == 404
    for bad in (None, "xyz", 5):
        with pytest.raises(RequestError) as exc:
            getattr(core, op)(bad)
        assert exc.value.status == 400


# --- listing (oxend GET_SERVICE_NODES) -------------------------------------------------------

def test_field_selection_modes() -> None:
    core, clock = make_core()
    register(core, clock, [ident(1), ident(2)])
    core.produce_block()
    full = listing(core)["service_node_states"][0]
    assert tuple(full) == NODE_FIELDS
    d = listing(core, fields={"public_ip": True, "swarm_id": True, "funded": False})
    assert [set(s) for s in d["service_node_states"]] == [{"public_ip", "swarm_id"}] * 2
    assert "snode_revision" not in d and "target_height" not in d
    assert {"height", "block_hash", "hardfork", "status"} <= set(d)
    lst = listing(core, fields=["pubkey_ed25519", "storage_port", "snode_revision"])
    assert set(lst["service_node_states"][0]) == {"pubkey_ed25519", "storage_port"}
    assert lst["snode_revision"] == HARDFORK[1]
    minus = listing(core, fields=["all", "-swarm", "-pubkey_x25519"])
    assert set(minus["service_node_states"][0]) == set(NODE_FIELDS) - {"swarm", "pubkey_x25519"}
    assert set(listing(core, fields={"all": True})["service_node_states"][0]) == set(NODE_FIELDS)
    assert full["swarm"] == f"{full['swarm_id']:x}"


def test_parse_fields_and_requested() -> None:
    assert parse_fields(None) == set() and parse_fields(["all"]) == set()
    assert parse_fields({"a": True, "b": False}) == {"a"}
    assert requested(set(), "x") and requested({"x"}, "x") and not requested({"y"}, "x")
    assert requested({"all", "-y"}, "x") and not requested({"all", "-x"}, "x")
    for bad in ("public_ip", 3, [1], {"a": "yes"}):
        with pytest.raises(InvalidParams):
            parse_fields(bad)


def test_limit_and_filters() -> None:
    core, clock = make_core()
    ids = [ident(i) for i in range(1, 9)]
    register(core, clock, ids)
    core.produce_block()
    all_pks = sorted(i.ed25519_hex for i in ids)
    unlimited = [s["pubkey_ed25519"] for s in listing(core, fields=["pubkey_ed25519"])["service_node_states"]]
    assert unlimited == all_pks  # limit 0: everything, sorted
    seen: set[tuple[str, ...]] = set()
    for seed in range(20):
        res = core.get_service_nodes({"limit": 3}, random.Random(seed))["service_node_states"]
        pks = tuple(s["pubkey_ed25519"] for s in res)
        assert len(pks) == 3 and len(set(pks)) == 3 and set(pks) <= set(all_pks)
        seen.add(pks)
    assert len(seen) > 5  # a random subset, not a fixed one
    shuffled = core.get_service_nodes({"limit": -1}, random.Random(3))["service_node_states"]
    assert sorted(s["pubkey_ed25519"] for s in shuffled) == all_pks
    assert len(core.get_service_nodes({"limit": 100}, random.Random(3))["service_node_states"]) == 8
    pick = listing(core, service_node_pubkeys=[ids[0].ed25519_hex.upper(), "00" * 32])
    assert [s["pubkey_ed25519"] for s in pick["service_node_states"]] == [ids[0].ed25519_hex]


def test_poll_block_hash() -> None:
    core, clock = make_core()
    register(core, clock, [ident(1)])
    core.produce_block()
    same = listing(core, poll_block_hash=core.block_hash)
    assert same["unchanged"] is True and "service_node_states" not in same
    other = listing(core, poll_block_hash="00" * 32)
    assert other["unchanged"] is False and len(other["service_node_states"]) == 1


VIEW = ["pubkey_ed25519", "pubkey_x25519", "swarm_id", "active", "public_ip", "storage_port"]


def test_poll_nodes_hash_answers_unchanged_until_a_listed_node_changes() -> None:
    core, clock = make_core()
    ids = [ident(i) for i in range(1, 5)]
    register(core, clock, ids)
    core.produce_block()
    first = listing(core, fields=VIEW, poll_nodes_hash="")
    digest = first["nodes_hash"]
    assert first["unchanged"] is False and len(first["service_node_states"]) == 4
    clock.t += 1
    for i in ids:  # proofs and new blocks change nothing listed: unchanged, but the new height
        core.accept_proof(proof(i, clock))
    core.produce_block()
    same = listing(core, fields=VIEW, poll_nodes_hash=digest)
    assert same["unchanged"] is True and "service_node_states" not in same
    assert same["nodes_hash"] == digest and same["height"] == core.height
    core.decommission(ids[0].ed25519_hex)  # a listed field changed: the whole list again
    changed = listing(core, fields=VIEW, poll_nodes_hash=digest)
    assert changed["unchanged"] is False and changed["nodes_hash"] != digest
    assert changed["service_node_states"] == listing(core, fields=VIEW)["service_node_states"]
    register(core, clock, [ident(9)])
    assert len(listing(core, fields=VIEW, poll_nodes_hash=changed["nodes_hash"])["service_node_states"]) == 5


def test_poll_nodes_hash_is_ignored_where_a_digest_cannot_hold() -> None:
    core, clock = make_core()
    register(core, clock, [ident(i) for i in range(1, 4)])
    for params in ({"poll_nodes_hash": ""},  # every field: last_uptime_proof changes each proof
                   {"fields": VIEW, "limit": 2, "poll_nodes_hash": ""}):  # a random subset
        out = listing(core, **params)
        assert "nodes_hash" not in out and "service_node_states" in out


@pytest.mark.parametrize("params", [
    [1, 2], {"active_only": "yes"}, {"limit": "3"}, {"limit": True}, {"fields": "public_ip"},
    {"service_node_pubkeys": "ab"}, {"poll_block_hash": 5}, {"poll_nodes_hash": 5},
])
def test_invalid_params(params: Any) -> None:
    core, _ = make_core()
    with pytest.raises(InvalidParams):
        core.get_service_nodes(params, random.Random(0))


# --- persistence -----------------------------------------------------------------------------

def test_state_round_trip_keeps_layout() -> None:
    core, clock = make_core()
    register(core, clock, [ident(i) for i in range(1, 8)])
    core.decommission(ident(7).ed25519_hex)
    core.produce_block()
    data = core.to_json()
    clock2 = FakeClock(clock.t + 100)
    restored = SeedCore(SeedConfig(testnet_seed=SEED, params=SMALL), clock=clock2)
    restored.load_json(data)
    assert restored.height == 1 and restored.block_hash == core.block_hash
    assert restored.swarms() == core.swarms() and len(core.swarms()) == 2
    assert restored.nodes[ident(7).ed25519_hex].active is False
    # last proofs restart from "now": a restarted seed does not deregister everyone at once
    assert all(n.last_proof == clock2.t for n in restored.nodes.values())
    # the active set is unchanged since the last recomputation: the next block keeps the layout
    result = restored.produce_block()
    assert result.height == 2 and not result.recomputed and not result.deregistered
    assert restored.swarms() == core.swarms()


def test_state_of_another_testnet_is_refused() -> None:
    core, _ = make_core()
    other = SeedCore(SeedConfig(testnet_seed="other"), clock=FakeClock())
    with pytest.raises(ValueError, match="testnet seed"):
        other.load_json(core.to_json())
