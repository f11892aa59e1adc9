"""Seeded WAN profiles: every node of a testnet placed in a region of a small world model, with
the delay, jitter and access-link bandwidth that region gives it.

A :class:`WanProfile` is pure data derived from a seed and the node names only
(:func:`wan_profile`): the same seed and names always give the same profile, whatever the order
the names come in, so a failing run replays with its seed. :func:`apply_wan` puts a profile on a
running testnet through :class:`~harness.faults.actions.Faults` (a ``latency`` and a
``bandwidth`` fault per node, tagged ``wan``, so they stack with other faults on the same node
and are removed like any fault). :class:`Wan` is the same as one fault kind (action ``wan``,
parameters ``seed`` and ``bandwidth``, no target: every node), for schedules and the CLI: with
``DEFAULT_REGISTRY.with_kinds(Wan())`` (or once it is in the default registry) it is
``Faults.apply("wan", seed="42")`` and ``testnet fault wan [--seed S] [--no-bandwidth]``.

What the numbers mean on our network (docs/faults.md): a ``latency`` toxic on a node's proxy
delays the data that node sends back on every connection made *to* it, so each request that
reaches a node (from a client or a peer) pays that node's ``latency_ms ± jitter_ms`` once; the
``bandwidth`` toxic (both directions) caps what crosses the node's proxy at ``kbps`` kilobytes
(1000 bytes) per second. An onion request pays the delay of every node on its route (guard,
relays, destination) and the destination's wait for its slowest swarm peer:
:meth:`WanProfile.slowest_route_ms` bounds that from the profile.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.faults.fault import Fault


class AppliesToxics(Protocol):
    """What :func:`apply_wan` uses of :class:`harness.faults.actions.Faults` (a protocol, so
    that this model does not import the layer that applies faults)."""

    def latency(self, node: str, ms: int, jitter: int = ..., **opts: Any) -> Fault: ...

    def bandwidth(self, node: str, kbps: int, **opts: Any) -> Fault: ...

#: the tag of the toxics a WAN profile adds (toxic names end in ``_wan``)
WAN_TAG = "wan"


@dataclass(frozen=True)
class Region:
    """A region of the world model: the one-way delay its nodes add to what they send
    (``latency_ms``: access link plus distance to the rest of the network), its spread
    (``jitter_ms``), its access-link cap (``kbps``, kilobytes per second) and how often nodes
    are placed there (``weight``)."""

    name: str
    latency_ms: int
    jitter_ms: int
    kbps: int
    weight: int = 1

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a region needs a name")
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError(f"region {self.name}: latency_ms and jitter_ms must be >= 0")
        if self.jitter_ms > self.latency_ms:
            raise ValueError(f"region {self.name}: jitter_ms ({self.jitter_ms}) must not exceed "
                             f"latency_ms ({self.latency_ms})")
        if self.kbps < 1:
            raise ValueError(f"region {self.name}: kbps must be >= 1")
        if self.weight < 1:
            raise ValueError(f"region {self.name}: weight must be >= 1")


#: a coarse world: where storage servers are hosted, roughly (weights), and what a node there
#: adds to each request it answers. Delays are one-way, relative to a fast core network.
DEFAULT_REGIONS: tuple[Region, ...] = (
    Region("eu-central", latency_ms=10, jitter_ms=2, kbps=2000, weight=4),
    Region("us-east", latency_ms=35, jitter_ms=5, kbps=2000, weight=3),
    Region("us-west", latency_ms=60, jitter_ms=8, kbps=1000, weight=2),
    Region("ap-southeast", latency_ms=100, jitter_ms=15, kbps=500, weight=2),
    Region("sa-east", latency_ms=80, jitter_ms=12, kbps=250, weight=1),
    Region("af-south", latency_ms=120, jitter_ms=25, kbps=125, weight=1),
)

#: each node's delay is its region's times a factor drawn from this range (hosts differ)
LATENCY_SPREAD = (0.8, 1.25)


@dataclass(frozen=True)
class NodeLink:
    """What the profile gives one node: its region, added delay ± jitter, and bandwidth cap."""

    node: str
    region: str
    latency_ms: int
    jitter_ms: int
    kbps: int

    def cost_ms(self, payload_bytes: int = 0) -> float:
        """The most one request through this node can pay for it: the delay plus the whole
        jitter plus sending ``payload_bytes`` through its cap."""
        return self.latency_ms + self.jitter_ms + payload_bytes / (self.kbps * 1000.0) * 1000.0

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "region": self.region, "latency_ms": self.latency_ms,
                "jitter_ms": self.jitter_ms, "kbps": self.kbps}


@dataclass(frozen=True)
class WanProfile:
    """Per-node WAN conditions (nodes sorted by name), made by :func:`wan_profile`."""

    seed: str
    links: tuple[NodeLink, ...]

    @property
    def nodes(self) -> list[str]:
        return [link.node for link in self.links]

    def by_node(self) -> dict[str, NodeLink]:
        return {link.node: link for link in self.links}

    def __getitem__(self, node: str) -> NodeLink:
        for link in self.links:
            if link.node == node:
                return link
        raise KeyError(f"node {node!r} is not in the WAN profile (nodes: {', '.join(self.nodes)})")

    def regions(self) -> dict[str, list[str]]:
        """Region -> its nodes."""
        out: dict[str, list[str]] = {}
        for link in self.links:
            out.setdefault(link.region, []).append(link.node)
        return out

    def slowest_route_ms(self, nodes: int, payload_bytes: int = 0) -> float:
        """The most the profile can add to one request crossing ``nodes`` distinct nodes once
        each with ``payload_bytes``: the sum of the ``nodes`` largest :meth:`NodeLink.cost_ms`.
        An onion store crosses guard, relays and destination and waits for the slowest swarm
        peer: ``path_hops + 2`` nodes."""
        if nodes < 0:
            raise ValueError(f"nodes must be >= 0, got {nodes}")
        costs = sorted((link.cost_ms(payload_bytes) for link in self.links), reverse=True)
        return float(sum(costs[:nodes]))

    def least_route_ms(self, route: Iterable[str], either_end: bool = False) -> float:
        """The least the profile adds to one request whose route crosses ``route`` (node names;
        nodes outside the profile add nothing): the sum of ``latency_ms - jitter_ms``.

        ``either_end``: a hop after the first may use a connection the next node opened to the
        previous one (through the *previous* node's proxy), so a hop adds only the smaller delay
        of its two ends (the first hop, client to guard, always crosses the guard's proxy)."""
        links = self.by_node()

        def least(n: str) -> float:
            return float(links[n].latency_ms - links[n].jitter_ms) if n in links else 0.0

        hops = list(route)
        if not either_end:
            return sum(least(n) for n in hops)
        return sum(least(n) if i == 0 else min(least(hops[i - 1]), least(n))
                   for i, n in enumerate(hops))

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "nodes": [link.to_json() for link in self.links]}

    def describe(self) -> str:
        """One line per node: ``sn01 us-east 38±5 ms, 2000 KB/s``."""
        return "\n".join(f"{n.node} {n.region} {n.latency_ms}±{n.jitter_ms} ms, {n.kbps} KB/s"
                         for n in self.links)


def wan_profile(seed: str | int, nodes: Iterable[str],
                regions: Sequence[Region] = DEFAULT_REGIONS) -> WanProfile:
    """The WAN profile of ``nodes`` for ``seed``: each node (in name order) is placed in a
    region drawn by weight from ``random.Random(f"{seed}/wan")`` and gets the region's delay
    times a factor in :data:`LATENCY_SPREAD`, its jitter and its bandwidth cap. Deterministic:
    it depends on the seed, the set of names and the regions only."""
    names = sorted(set(nodes))
    if not names:
        raise ValueError("a WAN profile needs at least one node")
    if not regions:
        raise ValueError("a WAN profile needs at least one region")
    seen: set[str] = set()
    for r in regions:
        if r.name in seen:
            raise ValueError(f"region {r.name!r} is listed twice")
        seen.add(r.name)
    rng = random.Random(f"{seed}/wan")
    weights = [r.weight for r in regions]
    links = []
    for name in names:
        region = rng.choices(list(regions), weights=weights)[0]
        factor = rng.uniform(*LATENCY_SPREAD)
        latency = max(round(region.latency_ms * factor), region.jitter_ms)
        links.append(NodeLink(node=name, region=region.name, latency_ms=latency,
                              jitter_ms=region.jitter_ms, kbps=region.kbps))
    return WanProfile(seed=str(seed), links=tuple(links))


def profile_from_json(data: Mapping[str, Any]) -> WanProfile:
    """Rebuild a profile from :meth:`WanProfile.to_json` (a report's data)."""
    return WanProfile(seed=str(data["seed"]), links=tuple(
        NodeLink(node=str(n["node"]), region=str(n["region"]), latency_ms=int(n["latency_ms"]),
                 jitter_ms=int(n["jitter_ms"]), kbps=int(n["kbps"])) for n in data["nodes"]))


def apply_wan(faults: AppliesToxics, profile: WanProfile, *, bandwidth: bool = True) -> list[Fault]:
    """Put ``profile`` on the testnet of ``faults``: per node a ``latency`` fault
    (``latency_ms`` ± ``jitter_ms`` on what the node sends back) and, with ``bandwidth``, a
    ``bandwidth`` fault (``kbps``, both directions), all tagged :data:`WAN_TAG`. Returns the
    faults (``Fault.remove()`` each, or leave it to the ``Faults`` context)."""
    applied: list[Fault] = []
    for link in profile.links:
        applied.append(faults.latency(link.node, link.latency_ms, jitter=link.jitter_ms,
                                      tag=WAN_TAG))
        if bandwidth:
            applied.append(faults.bandwidth(link.node, link.kbps, stream="both", tag=WAN_TAG))
    return applied


__all__ = ["DEFAULT_REGIONS", "LATENCY_SPREAD", "WAN_TAG", "NodeLink", "Region",
           "WanProfile", "apply_wan", "profile_from_json", "wan_profile"]
