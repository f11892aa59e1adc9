"""Swarm space, swarm lookup, MT19937-64 and swarm assignment (PROTOCOL.md §2)."""

from __future__ import annotations

from collections import Counter

import pytest

from nodes.protocol.keys import SessionID, derive_seed
from nodes.protocol.swarm import (
    MAX_SWARM_ID,
    MT19937_64,
    PRODUCTION,
    UNASSIGNED_SWARM,
    SwarmParams,
    assign_swarms,
    block_seed,
    new_swarm_id,
    swarm_for,
    swarm_space,
    uniform_distribution_portable,
)

pytestmark = pytest.mark.unit

SMALL = SwarmParams(min_swarm_size=3, ideal_swarm_margin=0, new_swarm_size=3)
SECOND = 0x7FFF_FFFF_FFFF_FFFF
THIRD = 0xBFFF_FFFF_FFFF_FFFF


def node_keys(n: int, tag: str = "t") -> list[str]:
    return [derive_seed(tag, "node", f"sn{i:02d}").hex() for i in range(n)]


def block(h: int, seed: str = "t") -> bytes:
    return derive_seed(seed, "block", str(h))


def sizes(assignment: dict[str, int]) -> dict[int, int]:
    return dict(Counter(assignment.values()))


def members(assignment: dict[str, int]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for pk, sid in assignment.items():
        out.setdefault(sid, set()).add(pk)
    return out


# --- swarm_space -----------------------------------------------------------------------------

@pytest.mark.parametrize(("sid", "expected"), [
    ("05" + "0" * 48 + "0123456789abcdef", 0x0123456789ABCDEF),
    ("053506f4a71324b7dd114eddbf4e311f39dde243e1f2cb97c40db1961f70ebaae8", 17589930838143112648),
    ("05" + "f" * 63 + "e", 1),
])
def test_swarm_space_vectors(sid: str, expected: int) -> None:
    assert swarm_space(sid) == expected
    assert swarm_space(SessionID.parse(sid)) == expected
    assert swarm_space(bytes.fromhex(sid)) == expected


def test_swarm_space_ignores_prefix() -> None:
    key = "3506f4a71324b7dd114eddbf4e311f39dde243e1f2cb97c40db1961f70ebaae8"
    assert swarm_space("03" + key) == swarm_space("05" + key)


@pytest.mark.parametrize("bad", ["05abc", "zz" * 33, b"\x05" * 32])
def test_swarm_space_rejects_bad_input(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        swarm_space(bad)


# --- swarm_for -------------------------------------------------------------------------------

IDS = [100, 200, 300, 400]


@pytest.mark.parametrize(("v", "expected"), [
    (150, 100),  # tie goes left
    (151, 200),
    (149, 100),
    (100, 100),
    (200, 200),
    (250, 200),
    (251, 300),
    (400, 400),
    # wrap-around: above the largest id, the right neighbour is the smallest id
    (2**64 - 1, 100),
    (401, 400),
    # below the smallest id: left neighbour is the largest id
    (0, 100),
    (99, 100),
])
def test_swarm_for_examples(v: int, expected: int) -> None:
    assert swarm_for(v, IDS) == expected
    assert swarm_for(v, reversed(IDS)) == expected


def test_swarm_for_wraparound_distances() -> None:
    ids = [10, 2**64 - 10]
    # 0 is 10 from both sides (u64 wrap) -> tie goes left (= the largest id)
    assert swarm_for(0, ids) == 2**64 - 10
    assert swarm_for(1, ids) == 10
    assert swarm_for(2**64 - 1, ids) == 2**64 - 10
    # exactly half way going the long way round
    assert swarm_for(2**63, [0, 2**63 + 1]) == 2**63 + 1


def test_swarm_for_single_and_unassigned() -> None:
    assert swarm_for(12345, [7]) == 7
    assert swarm_for(2**64 - 1, [7, UNASSIGNED_SWARM]) == 7
    with pytest.raises(ValueError):
        swarm_for(5, [])
    with pytest.raises(ValueError):
        swarm_for(5, [UNASSIGNED_SWARM])


# --- MT19937-64 ------------------------------------------------------------------------------

def test_mt19937_64_matches_std() -> None:
    rng = MT19937_64(5489)
    out = [rng.next_u64() for _ in range(10000)]
    assert out[0] == 14514284786278117030  # std::mt19937_64{}() first output
    assert out[-1] == 9981545732273789042  # C++ standard [rand.predef]: 10000th output


def test_uniform_distribution_portable() -> None:
    rng = MT19937_64(5489)
    first = 14514284786278117030
    secure_max = 2**64 - 1 - (2**64 - 1) % 10
    assert uniform_distribution_portable(rng, 10) == first // (secure_max // 10)
    rng = MT19937_64(1)
    draws = [uniform_distribution_portable(rng, 3) for _ in range(300)]
    assert set(draws) == {0, 1, 2}
    assert uniform_distribution_portable(MT19937_64(9), 1) == 0
    with pytest.raises(ValueError):
        uniform_distribution_portable(rng, 0)


def test_block_seed_little_endian() -> None:
    assert block_seed(bytes([1, 0, 0, 0, 0, 0, 0, 0]) + b"\xff" * 24) == 1
    assert block_seed(bytes(range(8))) == 0x0706050403020100


# --- params / new swarm id -------------------------------------------------------------------

def test_params_validation() -> None:
    assert PRODUCTION == SwarmParams(5, 2, 7)
    with pytest.raises(ValueError):
        SwarmParams(min_swarm_size=0)
    with pytest.raises(ValueError):
        SwarmParams(ideal_swarm_margin=-1)
    with pytest.raises(ValueError):
        SwarmParams(min_swarm_size=5, new_swarm_size=4)


def test_new_swarm_id_midpoints() -> None:
    assert new_swarm_id([]) == 0
    assert new_swarm_id([0]) == SECOND
    assert new_swarm_id([0, SECOND]) == THIRD
    assert new_swarm_id([0, SECOND, THIRD]) == 0x3FFF_FFFF_FFFF_FFFF
    # largest gap is the wrap-around one and the midpoint falls past MAX_ID
    assert new_swarm_id([MAX_SWARM_ID - 10]) == (MAX_SWARM_ID - 10 + (2**64 - 1) // 2) - MAX_SWARM_ID - 1


# --- assign_swarms ---------------------------------------------------------------------------

def test_six_nodes_make_two_swarms_of_three() -> None:
    nodes = node_keys(6)
    a = assign_swarms({}, nodes, block(1), SMALL)
    assert set(a) == set(nodes)
    assert sizes(a) == {0: 3, SECOND: 3}


def test_nine_nodes_make_three_swarms_of_three() -> None:
    a = assign_swarms({}, node_keys(9), block(1), SMALL)
    assert sizes(a) == {0: 3, SECOND: 3, THIRD: 3}


def test_deterministic_and_order_independent() -> None:
    nodes = node_keys(20)
    a = assign_swarms({}, nodes, block(3), SMALL)
    b = assign_swarms({}, list(reversed(nodes)), block(3), SMALL)
    assert a == b
    # the membership (not only the sizes) depends on the block hash
    others = [assign_swarms({}, nodes, block(h), SMALL) for h in range(4, 10)]
    assert any(members(o) != members(a) for o in others)


def test_unassigned_marker_is_a_new_node() -> None:
    nodes = node_keys(6)
    base = assign_swarms({}, nodes, block(1), SMALL)
    explicit = assign_swarms({pk: UNASSIGNED_SWARM for pk in nodes}, nodes, block(1), SMALL)
    assert base == explicit


def test_three_new_nodes_split_two_swarms_into_three() -> None:
    nodes = node_keys(9)
    first = assign_swarms({}, nodes[:6], block(1), SMALL)
    assert sizes(first) == {0: 3, SECOND: 3}
    second = assign_swarms(first, nodes, block(2), SMALL)
    assert sizes(second) == {0: 3, SECOND: 3, THIRD: 3}
    # the new swarm takes its members from the enlarged ones; the result is still all 9 nodes
    assert set(second) == set(nodes)


def test_stable_when_nothing_changes() -> None:
    nodes = node_keys(9)
    a = assign_swarms({}, nodes, block(1), SMALL)
    assert assign_swarms(a, nodes, block(2), SMALL) == a


def test_node_leaving_keeps_other_assignments() -> None:
    nodes = node_keys(12)
    a = assign_swarms({}, nodes, block(1), SMALL)
    big = [sid for sid, n in sizes(a).items() if n > SMALL.min_swarm_size]
    leaver = next(pk for pk in nodes if a[pk] in big) if big else nodes[0]
    remaining = [pk for pk in nodes if pk != leaver]
    b = assign_swarms(a, remaining, block(2), SMALL)
    assert leaver not in b
    if big:
        assert b == {pk: a[pk] for pk in remaining}
    else:  # every swarm was at the minimum: only the leaver's swarm may be reshuffled
        changed = {pk for pk in remaining if b[pk] != a[pk]}
        assert changed <= {pk for pk in remaining if a[pk] == a[leaver]}


def test_node_leaving_swarm_at_minimum_keeps_others_where_possible() -> None:
    # swarms A:4 B:3 C:3; one B node leaves -> Robin Hood steals from A, B and C keep members
    n = node_keys(10)
    cur = {**{pk: 10 for pk in n[:4]}, **{pk: 20 for pk in n[4:7]}, **{pk: 30 for pk in n[7:]}}
    active = [pk for pk in n if pk != n[4]]
    out = assign_swarms(cur, active, block(5), SMALL)
    assert sizes(out) == {10: 3, 20: 3, 30: 3}
    for pk in n[5:]:
        assert out[pk] == cur[pk]
    moved = [pk for pk in n[:4] if out[pk] != 10]
    assert len(moved) == 1 and out[moved[0]] == 20


def test_dissolution_into_smallest_swarm() -> None:
    # A:4 B:3 C:3, two C nodes leave; A has excess 1 < deficit 2, so C dissolves into B (smallest)
    n = node_keys(10)
    cur = {**{pk: 10 for pk in n[:4]}, **{pk: 20 for pk in n[4:7]}, **{pk: 30 for pk in n[7:]}}
    active = n[:8]
    out = assign_swarms(cur, active, block(7), SMALL)
    assert sizes(out) == {10: 4, 20: 4}
    assert out[n[7]] == 20
    assert all(out[pk] == cur[pk] for pk in n[:7])


def test_everything_below_minimum_collapses_into_one_swarm() -> None:
    n = node_keys(4)
    cur = {n[0]: 10, n[1]: 20, n[2]: 30, n[3]: 30}
    out = assign_swarms(cur, n, block(1), SMALL)
    assert len(set(out.values())) == 1 and set(out) == set(n)


def test_no_active_nodes() -> None:
    assert assign_swarms({"aa" * 32: 0}, [], block(1), SMALL) == {}


def test_production_params_twelve_nodes() -> None:
    a = assign_swarms({}, node_keys(12), block(1))
    assert all(n >= PRODUCTION.min_swarm_size for n in sizes(a).values())
    assert sum(sizes(a).values()) == 12
    # 14 = 2 * 7 nodes: excess 9 >= NEW_SWARM_SIZE + margin -> two swarms of 7
    b = assign_swarms({}, node_keys(14), block(1))
    assert sizes(b) == {0: 7, SECOND: 7}


def test_large_network_respects_minimum() -> None:
    for params in (SMALL, PRODUCTION):
        a = assign_swarms({}, node_keys(100), block(9), params)
        assert len(a) == 100
        assert min(sizes(a).values()) >= params.min_swarm_size
        # growing in batches keeps every swarm healthy too
        grown = assign_swarms(a, node_keys(100) + node_keys(30, "x"), block(10), params)
        assert len(grown) == 130 and min(sizes(grown).values()) >= params.min_swarm_size
