"""Readiness is protocol state: a node is ready only once its view of its swarm matches the seed's."""

from __future__ import annotations

from harness.network import NodeReadiness, Readiness

A, B, C = "aa" * 32, "bb" * 32, "cc" * 32


def ready_node(**kw) -> NodeReadiness:
    base = dict(name="n0", registered=True, active=True, swarm_id=0, node_swarm_id=0,
                swarm_members=(A, B, C), node_swarm_members=(A, B, C), answering=True)
    base.update(kw)
    return NodeReadiness(**base)


def test_ready_when_views_agree():
    n = ready_node()
    assert n.ready and n.missing() == "ready"
    assert Readiness(seed_ok=True, nodes={"n0": n}).ready


def test_stale_member_view_is_not_ready():
    # same swarm id, but the node fetched the block before C joined: its fan-out would miss C
    n = ready_node(node_swarm_members=(A, B))
    assert not n.ready
    assert "differs from the seed's" in n.missing() and "2 members" in n.missing()
    assert not Readiness(seed_ok=True, nodes={"n0": n}).ready


def test_other_gaps_are_named():
    assert "not registered" in ready_node(registered=False).missing()
    assert "node reports" in ready_node(node_swarm_id=5).missing()
    assert "not answering" in ready_node(answering=False, error="HTTP 503").missing()
    assert not Readiness(seed_ok=False, nodes={"n0": ready_node()}).ready
