"""Path and node policy of the client (docs/client.md, "node failures", "path failures", "guard
unreachable", "exclusions relaxed in order"): strikes and drops of nodes and paths, the
quarantine of a failed path's nodes, nodes that refused a direct connection, and the order in
which these exclusions are relaxed when the pool is too small to honour them.

:class:`PathPolicy` owns that state; the failure classification
(:mod:`harness.client.failures`) and the client call it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import TypeVar

from .config import ClientConfig
from .errors import NoPathError
from .paths import OnionPath, PathSet
from .pool import NodePool
from .records import AttemptRecord
from .snode import Snode, SwarmEntry

T = TypeVar("T")


class PathPolicy:
    """Failure bookkeeping and avoidance rules for one client.

    ``pool``, ``paths`` and ``swarms`` (the client's swarm cache, by account) are shared with
    the client: a node dropped here leaves the cached swarms and is repaired out of the paths.
    """

    def __init__(self, config: ClientConfig, pool: NodePool, paths: PathSet,
                 swarms: dict[str, SwarmEntry]) -> None:
        self.config = config
        self.pool = pool
        self.paths = paths
        self.swarms = swarms
        #: nodes of recently dropped / retired paths -> until when (monotonic)
        self._quarantine: dict[str, float] = {}
        #: nodes that refused or dropped a direct connection (failed guard test) -> until when
        self._unreachable: dict[str, float] = {}
        #: nodes on every failed route since the last reset and on no route that worked since,
        #: how many failures that is, and when the last one was (see route_failed)
        self._suspects: set[str] | None = None
        self._suspect_failures = 0
        self._suspect_last = 0.0

    def forget_node(self, ed: str, a: AttemptRecord | None) -> None:
        """After a node left the pool: remove it from swarm caches and repair the paths."""
        for entry in self.swarms.values():
            entry.members = [m for m in entry.members if m.ed25519 != ed]
        for path, what in self.paths.repair(ed, self.pool.nodes(), exclude=self.quarantined()):
            if a is not None:
                a.actions.append(f"path_{what}:{path.id}")

    def drop_node(self, node_ed: str, reason: str, a: AttemptRecord | None) -> None:
        self.pool.drop(node_ed, reason)
        if a is not None:
            a.actions.append(f"drop_node:{node_ed[-8:]}")
        self.forget_node(node_ed, a)

    def strike_node(self, node: Snode | str, reason: str, a: AttemptRecord | None) -> None:
        ed = node if isinstance(node, str) else node.ed25519
        dropped = self.pool.strike(ed, reason)
        if a is not None:
            a.actions.append(f"strike_node:{ed[-8:]}")
        if dropped:
            if a is not None:
                a.actions.append(f"drop_node:{ed[-8:]}")
            self.forget_node(ed, a)

    def strike_path(self, path: OnionPath, a: AttemptRecord, skip: Collection[str] = frozenset()) -> None:
        if self.paths.get(path.id) is None:
            return
        dropped = self.paths.strike(path)
        a.actions.append(f"strike_path:{path.id}")
        if dropped:
            # libsession: a path over its strike threshold makes every node on it suspect
            a.actions.append(f"drop_path:{path.id}")
            self.quarantine_path(path)
            for hop in path.hops:
                if hop.ed25519 not in skip:
                    self.strike_node(hop, "on a failed path", a)

    def route_failed(self, route: set[str], a: AttemptRecord) -> str | None:
        """An attempt through ``route`` (its path's hops and its destination) failed without a
        node being named: a 504 "Request time out" relayed by the guard, or no answer through
        the path. Returns the node this singles out as possibly dead, else None; the client
        then asks it directly and calls :meth:`convict` if it does not answer.

        The client keeps the nodes common to every such failure since the last reset, minus
        the nodes of the routes that worked since (they answered). Once two failures or more
        leave exactly one node, that node is the suspect and the bookkeeping starts over; when
        the failures have no node in common (two unrelated faults), it starts over from the
        newest one; failures older than ``path_quarantine`` are forgotten.

        Production clients only strike the path on a 504 (session-desktop
        ``incrementBadPathCountOrDrop``, libsession ``PathTimedOut``: penalize_path) and rebuild
        it away from its nodes, so on mainnet the next route shares no node with the failed
        one. On a small network the rebuilt path holds the same nodes (nothing else is free)
        and a dead or frozen node can be on every route a request can take: the destination
        through one path, a relay of the only path that fits the other destinations. Path
        strikes then never end the failures. A node on every failed route and on none that
        worked is what libsession drops at once when a relay names it (502 "Next node is
        currently unreachable": force_remove_node). On a small network two *unrelated* faults
        (two relays that drop what they should pass on) also leave one node in common by
        chance: an honest one, the destination of one route and the guard of the other. What
        tells them apart is whether the suspect answers when asked directly, as a new guard
        is tested (session-desktop testGuardNode): a dead or frozen node does not. On mainnet
        two failed routes share no node and this never fires."""
        now = time.monotonic()
        if self._suspects is None or now - self._suspect_last > self.config.path_quarantine:
            self._suspects, self._suspect_failures = set(route), 1
        else:
            common = self._suspects & route
            if common:
                self._suspects, self._suspect_failures = common, self._suspect_failures + 1
            else:  # no common cause: start over from this failure
                self._suspects, self._suspect_failures = set(route), 1
        self._suspect_last = now
        if (self._suspect_failures < 2 or len(self._suspects) != 1
                or not self.config.drop_route_suspects):
            return None
        (suspect,) = self._suspects
        self._suspects = None
        a.actions.append(f"suspect_on_every_failed_route:{suspect[-8:]}")
        return suspect

    def convict(self, suspect: str, a: AttemptRecord) -> None:
        """The suspect of :meth:`route_failed` did not answer a direct request either: drop it
        (pool, swarm caches, paths repaired); a node that is not dead comes back with the next
        pool refresh."""
        self.drop_node(suspect, "on every failed route and on none that worked since, and "
                                "no answer to a direct request", a)

    def acquit(self, suspect: str, a: AttemptRecord) -> None:
        """The suspect of :meth:`route_failed` answered a direct request: it is alive, and the
        failures it shared were another node's doing (their paths are struck as usual)."""
        a.actions.append(f"suspect_answered:{suspect[-8:]}")

    def route_worked(self, route: set[str]) -> None:
        """An attempt through ``route`` got its answer: its nodes are not the suspects."""
        if self._suspects is not None:
            self._suspects -= route

    def retire_path(self, path: OnionPath, a: AttemptRecord) -> None:
        if self.paths.remove(path):
            a.actions.append(f"drop_path:{path.id}")
            self.quarantine_path(path)

    def quarantine_path(self, path: OnionPath) -> None:
        """libsession rebuilds a failed path excluding that path's nodes; we keep them out of
        new paths for ``path_quarantine`` seconds (unless no path can be built without them)."""
        until = time.monotonic() + self.config.path_quarantine
        for h in path.hops:
            self._quarantine[h.ed25519] = until

    def quarantined(self) -> set[str]:
        now = time.monotonic()
        for ed in [e for e, t in self._quarantine.items() if t <= now]:
            del self._quarantine[ed]
        return set(self._quarantine)

    def mark_unreachable(self, node: Snode) -> None:
        """A direct connection to ``node`` failed: keep it out of new paths and prefer other
        destinations for ``path_quarantine`` seconds (it is likely down)."""
        self._unreachable[node.ed25519] = time.monotonic() + self.config.path_quarantine

    def unreachable_nodes(self) -> set[str]:
        now = time.monotonic()
        for ed in [e for e, t in self._unreachable.items() if t <= now]:
            del self._unreachable[ed]
        return set(self._unreachable)

    def prefer_reachable(self, nodes: list[Snode]) -> list[Snode]:
        """``nodes`` without the ones that recently refused a direct connection, unless that
        leaves none."""
        down = self.unreachable_nodes()
        return [n for n in nodes if n.ed25519 not in down] or nodes

    def graded(self, build: Callable[[set[str]], T]) -> T:
        """Build while avoiding suspect nodes, relaxing step by step: first without quarantined
        (failed-path) and unreachable (failed guard test) nodes, then without the unreachable
        ones only, then with every node of the pool."""
        unreachable = self.unreachable_nodes()
        tiers = [self.quarantined() | unreachable, unreachable, set()]
        last: NoPathError | None = None
        for i, ex in enumerate(tiers):
            if i and ex == tiers[i - 1]:
                continue
            try:
                return build(ex)
            except NoPathError as exc:
                last = exc
        assert last is not None
        raise last
