"""Onion path selection rules and path failure counters (pure)."""

from __future__ import annotations

import random

import pytest

from harness.client.errors import NoPathError
from harness.client.paths import SUBNET_AUTO, SUBNET_OFF, SUBNET_STRICT, PathSet, build_path, pick_hops
from harness.client.snode import Snode

pytestmark = pytest.mark.unit


def node(i: int, ip: str | None = None) -> Snode:
    return Snode(ed25519=f"{i:064x}", x25519=f"{i + 1000:064x}", ip=ip or f"10.0.{i}.1", port=22021)


def subnet_nodes(n: int) -> list[Snode]:
    return [node(i) for i in range(1, n + 1)]


def assert_valid(path_hops: list[Snode]) -> None:
    assert len({h.ed25519 for h in path_hops}) == len(path_hops)
    assert len({h.ip for h in path_hops}) == len(path_hops)


def test_pick_hops_never_repeats_a_subnet_or_ip():
    # 4 subnets with 3 nodes each: any 4 picked nodes must come from 4 different /24s
    nodes = [node(10 * s + k, f"10.1.{s}.{k + 1}") for s in range(4) for k in range(3)]
    for seed in range(50):
        chosen = pick_hops(nodes, 4, rng=random.Random(seed))
        assert chosen is not None
        assert len({c.subnet24 for c in chosen}) == 4
    assert pick_hops(nodes, 5, rng=random.Random(1)) is None  # only 4 subnets exist
    assert pick_hops(nodes, 5, rng=random.Random(1), enforce_subnet=False) is not None


def test_pick_hops_refuses_two_nodes_on_one_ip_even_without_subnet_rule():
    nodes = [node(1, "10.0.0.1"), node(2, "10.0.0.1"), node(3, "10.0.0.1")]
    assert pick_hops(nodes, 2, rng=random.Random(0), enforce_subnet=False) is None
    assert pick_hops(nodes, 1, rng=random.Random(0), enforce_subnet=False) is not None


def test_two_paths_have_distinct_guards_and_are_disjoint_and_subnet_diverse():
    nodes = subnet_nodes(9)
    for seed in range(30):
        ps = PathSet(rng=random.Random(seed))
        ps.add(ps.build(nodes))
        ps.add(ps.build(nodes))
        a, b = ps.paths
        assert len(a.hops) == len(b.hops) == 3
        assert a.guard.ed25519 != b.guard.ed25519
        assert not ({h.ed25519 for h in a.hops} & {h.ed25519 for h in b.hops})
        all_hops = a.hops + b.hops
        assert len({h.subnet24 for h in all_hops}) == 6  # libsession: diversity across paths
        assert a.relaxed == b.relaxed == ()
        for p in ps.paths:
            assert_valid(p.hops)


def test_destination_is_never_on_the_chosen_path():
    nodes = subnet_nodes(6)
    ps = PathSet(rng=random.Random(3))
    ps.add(ps.build(nodes))
    ps.add(ps.build(nodes))
    for dest in nodes:
        for _ in range(20):
            p = ps.choose(dest.ed25519)
            assert p is not None
            assert not p.contains(dest.ed25519)


def test_choose_returns_none_when_every_path_contains_the_destination():
    nodes = subnet_nodes(4)
    ps = PathSet(count=1, rng=random.Random(0))
    p = ps.build(nodes)
    ps.add(p)
    assert ps.choose(p.hops[1].ed25519) is None
    outside = next(n for n in nodes if not p.contains(n.ed25519))
    assert ps.choose(outside.ed25519) is p


def test_choose_prefers_paths_not_in_avoid():
    nodes = subnet_nodes(9)
    ps = PathSet(rng=random.Random(5))
    ps.add(ps.build(nodes))
    ps.add(ps.build(nodes))
    first = ps.paths[0]
    for _ in range(20):
        assert ps.choose(None, avoid={first.id}) is ps.paths[1]
    # when every fitting path is to be avoided, one is still returned
    assert ps.choose(None, avoid={p.id for p in ps.paths}) is not None


def test_small_network_relaxes_rules_and_records_it():
    nodes = subnet_nodes(4)  # 2 disjoint 3-hop paths impossible
    ps = PathSet(rng=random.Random(1))
    ps.add(ps.build(nodes))
    second = ps.build(nodes)
    ps.add(second)
    assert "shared_hops" in second.relaxed
    assert ps.paths[0].guard.ed25519 != second.guard.ed25519
    assert not ps.paths[0].contains(second.guard.ed25519)
    assert_valid(second.hops)


def test_single_subnet_network_auto_relaxes_strict_refuses_off_ignores():
    nodes = [node(i, f"172.20.0.{i + 1}") for i in range(1, 8)]  # one docker-like /24
    auto = build_path(nodes, [], subnet_diversity=SUBNET_AUTO, rng=random.Random(0))
    assert "no_subnet_diversity" in auto.relaxed
    assert_valid(auto.hops)
    off = build_path(nodes, [], subnet_diversity=SUBNET_OFF, rng=random.Random(0))
    assert off.relaxed == ()
    with pytest.raises(NoPathError, match="distinct /24"):
        build_path(nodes, [], subnet_diversity=SUBNET_STRICT, rng=random.Random(0))


def test_too_few_nodes_raise_no_path_error_with_counts():
    with pytest.raises(NoPathError) as ei:
        build_path(subnet_nodes(2), [], rng=random.Random(0))
    assert "2 usable nodes" in str(ei.value)
    with pytest.raises(NoPathError):
        build_path(subnet_nodes(5), [], exclude={n.ed25519 for n in subnet_nodes(3)}, rng=random.Random(0))


def test_path_is_dropped_after_three_failures():
    nodes = subnet_nodes(9)
    ps = PathSet(rng=random.Random(0), failure_threshold=3)
    p = ps.build(nodes)
    ps.add(p)
    assert ps.strike(p) is False
    assert ps.strike(p) is False
    assert ps.get(p.id) is p and p.failures == 2
    assert ps.strike(p) is True
    assert ps.get(p.id) is None and ps.missing() == 2
    assert ps.strike(p) is False  # already gone


def test_repair_replaces_a_relay_in_place_and_drops_a_path_whose_guard_left():
    nodes = subnet_nodes(9)
    ps = PathSet(rng=random.Random(2))
    ps.add(ps.build(nodes))
    ps.add(ps.build(nodes))
    a, b = ps.paths
    middle = a.hops[1]
    res = ps.repair(middle.ed25519, [n for n in nodes if n.ed25519 != middle.ed25519])
    assert res == [(a, "replaced")]
    assert not a.contains(middle.ed25519) and len(a.hops) == 3
    assert a.hops[0] == a.guard  # guard unchanged
    assert not ({h.ed25519 for h in a.hops} & {h.ed25519 for h in b.hops})
    assert_valid(a.hops)
    res = ps.repair(b.guard.ed25519, nodes)
    assert res == [(b, "dropped")] and ps.get(b.id) is None


def test_path_set_validates_settings():
    with pytest.raises(ValueError):
        PathSet(count=0)
    with pytest.raises(ValueError):
        PathSet(subnet_diversity="sometimes")
