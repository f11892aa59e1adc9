"""The client's node pool and per-node failure counters.

As session-desktop (``snodeFailureCount``, ``snodeFailureThreshold = 3``): every failure that a
node is blamed for adds one strike; at the threshold the node is dropped from the pool (and from
every cached swarm, and repaired out of the onion paths by the client).  A node the network says
does not exist (``Next node not found: X``) is dropped at once.  A refresh from the seed replaces
the pool; dropped nodes the seed still lists come back with their counters reset (as
session-desktop resets the counter of a node it drops).

Without a seed (unreachable, as behind a firewall) the pool comes from the service nodes
themselves, as session-desktop's ``getSnodePoolFromSnodes`` does: the client starts from a node
list it kept (``SessionClient(nodes=…)``, the app's database), asks :data:`NODES_ASKED` random
nodes of it for ``oxend_request`` ``get_service_nodes`` through its onion paths, and keeps the
nodes every answer agrees on (:func:`agreed`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from typing import Any

from .snode import Snode

#: nodes asked for their node list when the pool is refreshed without a seed (session-desktop
#: getSnodePoolFromSnodes: ``sampleSize(existingSnodePool, 3)``)
NODES_ASKED = 3


def nodes_from_listing(data: Any) -> list[Snode] | None:
    """The usable nodes of a ``get_service_nodes`` answer (an ``oxend_request`` body
    ``{"result": {"service_node_states": […]}}`` or the seed's ``result``); None when it has no
    node list."""
    result = data.get("result", data) if isinstance(data, dict) else None
    states = result.get("service_node_states") if isinstance(result, dict) else None
    if not isinstance(states, list):
        return None
    return [n for n in (Snode.from_seed_entry(e) for e in states) if n is not None]


def agreed(lists: Sequence[Sequence[Snode]]) -> list[Snode]:
    """The nodes every list names (same key, address and port), in the first list's order:
    session-desktop keeps the intersection of the answers of the nodes it asked."""
    if not lists:
        return []
    keys = [{(n.ed25519, n.ip, n.port) for n in nodes} for nodes in lists[1:]]
    return [n for n in lists[0] if all((n.ed25519, n.ip, n.port) in k for k in keys)]


class NodePool:
    def __init__(self, failure_threshold: int = 3, rng: random.Random | None = None) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        self.failure_threshold = failure_threshold
        self._rng = rng or random.Random()
        self._nodes: dict[str, Snode] = {}
        self._failures: dict[str, int] = {}
        self.refreshed_at: float | None = None
        self.height: int | None = None
        #: every node dropped since the last refresh: ed25519 -> reason
        self.dropped: dict[str, str] = {}

    # -- content -------------------------------------------------------------------------------
    def replace(self, nodes: Iterable[Snode], *, height: int | None = None) -> None:
        self._nodes = {n.ed25519: n for n in nodes}
        for ed in list(self._failures):
            if ed not in self._nodes:
                del self._failures[ed]
        self.dropped = {}
        self.refreshed_at = time.monotonic()
        self.height = height

    def load(self, nodes: Iterable[Snode]) -> None:
        """Start from a kept node list (an app's database): the pool holds it but counts as
        never refreshed, so the next refresh still asks the network."""
        self.replace(nodes)
        self.refreshed_at = None

    def add(self, node: Snode) -> None:
        """Learn a node (e.g. a swarm member the seed list did not have yet)."""
        if node.ed25519 not in self.dropped:
            self._nodes[node.ed25519] = node

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, ed25519: object) -> bool:
        return ed25519 in self._nodes

    def get(self, ed25519: str) -> Snode | None:
        return self._nodes.get(ed25519)

    def nodes(self) -> list[Snode]:
        return list(self._nodes.values())

    def age(self) -> float | None:
        if self.refreshed_at is None:
            return None
        return time.monotonic() - self.refreshed_at

    def random_node(self, exclude: Iterable[str] = ()) -> Snode | None:
        ex = set(exclude)
        candidates = [n for n in self._nodes.values() if n.ed25519 not in ex]
        return self._rng.choice(candidates) if candidates else None

    # -- failure counters ----------------------------------------------------------------------
    def failures(self, ed25519: str) -> int:
        return self._failures.get(ed25519, 0)

    def strike(self, ed25519: str, reason: str = "failure") -> bool:
        """One failure for a node; True if this dropped it (threshold reached)."""
        count = self._failures.get(ed25519, 0) + 1
        if count >= self.failure_threshold:
            self.drop(ed25519, f"{reason} ({count} failures)")
            return True
        self._failures[ed25519] = count
        return False

    def drop(self, ed25519: str, reason: str) -> bool:
        """Remove a node now; True if it was in the pool."""
        self._failures.pop(ed25519, None)
        self.dropped[ed25519] = reason
        return self._nodes.pop(ed25519, None) is not None

    def reset(self, ed25519: str) -> None:
        self._failures.pop(ed25519, None)
