"""Which node implementation the pytest plugin's testnets run (``--testnet-nodes``), and the
scenarios that need what an implementation lacks (marker ``node_capabilities``).

``--testnet-nodes N[:KIND[=PATH]]`` (repeatable, the grammar of ``testnet up --nodes``) gives the
node groups of every testnet the fixtures start. A fixture asks for a shape (``swarms``,
``swarm_size``); on the user's groups it gets:

- the same ``swarm_size``;
- at least as many nodes as it asked for: when the groups hold fewer, the last group grows by the
  difference; when they hold more (e.g. ``10:oxen-storage`` for a scenario of 2 × 3: a testnet of
  real servers needs 10), the groups are kept as given;
- ``swarms = nodes // swarm_size`` (the seed places the remainder: 10 nodes in swarms of 3 make 3
  swarms, one of them of 4).

``@pytest.mark.node_capabilities("partition", "observations")`` says what a test needs of the
nodes (the capabilities of :meth:`harness.nodekinds.base.NodeKind.capabilities`: fault families,
``observations``, ``join``); under ``--testnet-nodes`` it is skipped when a group's kind lacks one,
with the reason the kind gives (so it runs as soon as the kind gains the capability).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields, replace
from typing import Any

import pytest

from harness.nodekinds import group_kind
from harness.suites.families import CAPABILITY_MARKER
from harness.topology import NodeGroup, Topology, TopologyError

OPTION = "--testnet-nodes"
_DEFAULTS = {f.name: f.default for f in fields(Topology)}


def parse_groups(specs: Iterable[str]) -> tuple[NodeGroup, ...]:
    """``N[:KIND[=PATH]]`` specs as node groups; a bad spec is a usage error naming it."""
    try:
        return tuple(NodeGroup.parse(s) for s in specs)
    except TopologyError as e:
        raise pytest.UsageError(f"{OPTION}: {e}") from None


def node_groups(config: pytest.Config) -> tuple[NodeGroup, ...]:
    """The groups of ``--testnet-nodes`` (empty: the fixtures' own topologies, our nodes)."""
    return parse_groups(config.getoption(OPTION) or ())


def check_groups(groups: Sequence[NodeGroup]) -> None:
    """A usage error, before anything starts, for groups no testnet can have (fewer than 10
    real nodes, python and real nodes mixed): the default shape on them must be a topology."""
    try:
        Topology(**on_groups({}, groups))
    except TopologyError as e:
        raise pytest.UsageError(f"{OPTION}: {e}") from None


def on_groups(topology: dict[str, Any], groups: Sequence[NodeGroup]) -> dict[str, Any]:
    """The topology fields of a fixture's testnet run on ``groups`` (see the module doc); a
    topology that names its own ``nodes`` keeps them."""
    if not groups or topology.get("nodes"):
        return topology
    swarm_size = int(topology.get("swarm_size", _DEFAULTS["swarm_size"]))
    wanted = int(topology.get("swarms", _DEFAULTS["swarms"])) * swarm_size
    have = sum(g.count for g in groups)
    if wanted > have:
        groups = (*groups[:-1], replace(groups[-1], count=groups[-1].count + wanted - have))
    count = sum(g.count for g in groups)
    return {**topology, "nodes": tuple(groups), "swarms": max(1, count // swarm_size)}


def lacking(groups: Sequence[NodeGroup], needed: Iterable[str]) -> str | None:
    """Why a test that needs the capabilities ``needed`` cannot run on ``groups`` (None: it
    can), from the first kind that lacks one."""
    need = list(needed)
    for group in groups:
        reason = group_kind(group).lacking(need)
        if reason:
            return reason
    return None


def skip_lacking(items: Iterable[pytest.Item], groups: Sequence[NodeGroup]) -> None:
    """Mark the items whose ``node_capabilities`` the groups' kinds lack as skipped."""
    if not groups:
        return
    for item in items:
        needed = [str(c) for m in item.iter_markers(CAPABILITY_MARKER) for c in m.args]
        reason = lacking(groups, needed) if needed else None
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def replay_options(groups: Sequence[NodeGroup]) -> list[str]:
    """The ``testnet suite run`` options that choose ``groups`` again."""
    return [opt for g in groups for opt in ("--nodes", g.spec())]


__all__ = ["CAPABILITY_MARKER", "OPTION", "check_groups", "lacking", "node_groups", "on_groups", "parse_groups",
           "replay_options", "skip_lacking"]
