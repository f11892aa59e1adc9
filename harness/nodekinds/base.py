"""What every node implementation tells the harness: how to run it, how to judge it ready, and
what it can be asked to do.

A :class:`NodeKind` is stateless: the testnet (addresses, ports, data dir, keys) comes in through
a :class:`NodeContext` built by :mod:`harness.network`, so this package never imports the
network or backend layers.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from harness.state import NetworkState, NodeRecord

#: fault families (see docs/nodes.md): which groups of faults a node implementation supports
NETWORK = "network"      # Toxiproxy toxics on the node's proxies (latency, bandwidth, timeout, reset)
CHURN = "churn"          # kill / stop / start / restart / pause (process signals, docker)
PARTITION = "partition"  # per-link proxies between nodes (node -> node traffic via link addresses)
BEHAVIOUR = "behaviour"  # misbehaviours switched on through the node's admin interface
CLOCK = "clock"          # clock skew through the node's admin interface
ALL_FAULT_FAMILIES = frozenset({NETWORK, CHURN, PARTITION, BEHAVIOUR, CLOCK})
#: capabilities beyond fault families (scenarios name what they need: docs/suites.md)
OBSERVATIONS = "observations"  # the node reports what it saw (admin interface: observations)
JOIN = "join"                  # nodes of this kind can join a running testnet (add_nodes)
#: every capability a scenario can require of the nodes it runs on
CAPABILITIES = ALL_FAULT_FAMILIES | {OBSERVATIONS, JOIN}


class GroupSpec(Protocol):
    """A node group as the implementations read it (``harness.topology.NodeGroup``)."""

    @property
    def kind(self) -> str: ...
    @property
    def path(self) -> str | None: ...
    @property
    def ref(self) -> str | None: ...
    @property
    def has_admin(self) -> bool | None: ...


class NodeKindError(ValueError):
    """A node implementation cannot be used as asked; the message says why and what to do."""


@dataclass(frozen=True)
class NodeContext:
    """Everything a node implementation needs to start one node of one testnet."""

    state: NetworkState
    node: NodeRecord
    #: the address the node binds (its own address behind the proxy)
    listen_ip: str
    #: the node's data dir as its process sees it
    data_dir: str
    #: a log file for the node (None: the runtime captures its output)
    log_file: str | None
    #: the node's deterministic Ed25519 seed (hex), for implementations that take their key from
    #: the harness (ours, through :meth:`NodeKind.env`); the real server fetches its own from the seed
    key_seed_hex: str
    #: the topology's fields (harness.topology.Topology.to_dict())
    topology: dict[str, Any]


@dataclass
class NodeView:
    """What one node says about itself (from its admin interface, or from the seed's OxenMQ
    observations and protocol answers for nodes without one)."""

    swarm_id: int | None = None
    swarm_members: tuple[str, ...] | None = None
    answering: bool = False
    error: str | None = None


class NodeKind(abc.ABC):
    """One node implementation (ours, the real storage server, …)."""

    #: registry name (``python``, ``oxen-storage``)
    name: ClassVar[str]
    #: whether the node has the testnet admin interface (observations, behaviours, clock); fixed
    #: per implementation, except the user's own nodes, whose groups declare it
    has_admin: bool
    #: fault families this implementation supports (see the constants above)
    fault_families: frozenset[str]
    #: backends that can run it
    backends: ClassVar[frozenset[str]]
    #: True: the node cannot be re-pointed at a link proxy at run time (no peer overrides), so
    #: every pair of such nodes talks through a link proxy of its own from the start, and
    #: per-link faults act on those (toxics, enable/disable) instead of creating link proxies
    routes_pairs: ClassVar[bool] = False
    #: new nodes of this kind can join a running testnet (``Testnet.add_nodes``)
    can_join: ClassVar[bool] = False
    #: node-to-node requests may travel over a connection the *other* node opened (through the
    #: other node's proxy): a fault on one node's proxies then does not slow every exchange with
    #: it (the real server's OxenMQ reuses a connection between two nodes in both directions;
    #: ours open an HTTPS connection to the peer's proxy for each request they send)
    peer_links_either_way: ClassVar[bool] = False
    #: seconds a node may wait for a *killed* swarm peer before it answers a store (0: a killed
    #: peer's refused connection fails the forwarded request at once, as for ours; the real
    #: server's OxenMQ queues it until its 5 s forward timeout)
    dead_peer_wait_s: ClassVar[float] = 0.0

    #: True: ``argv()`` are arguments of the backend's Python interpreter
    runs_python: ClassVar[bool] = False
    #: True: the node writes the log file the backend names; False: it logs to stdout/stderr
    writes_log_file: ClassVar[bool] = False

    def __init__(self, path: str | None = None) -> None:
        #: the group's path: ``PATH`` in ``12:oxen-storage=PATH`` (None for ``python``)
        self.path = path

    @classmethod
    def for_record(cls, node: NodeRecord) -> NodeKind:
        """The implementation as far as a node's state record tells it (what faults it takes,
        its proxies): enough for commands that act on a running testnet."""
        return cls()

    def check(self, backend: str = "process") -> None:  # noqa: B027 - optional hook
        """Raise :class:`NodeKindError` if this implementation cannot run on ``backend`` here
        (missing binary, libraries, tools); called before anything starts."""

    def container_image(self, client: Any, progress: Callable[[str], None]) -> str | None:
        """The docker backend's image for these nodes (built if needed; ``client`` is a Docker
        SDK client), or None for the project's node image (``python -m …`` commands)."""
        return None

    #: capabilities the container's entrypoint needs before it drops them (docker backend)
    container_caps: ClassVar[tuple[str, ...]] = ()

    def supports(self, family: str) -> bool:
        return family in self.fault_families

    def capabilities(self) -> frozenset[str]:
        """What the harness can do with nodes of this kind: its fault families, plus
        ``observations`` with an admin interface and ``join`` when nodes can join later."""
        return self.fault_families | ({OBSERVATIONS} if self.has_admin else set()) \
            | ({JOIN} if self.can_join else set())

    def lacking(self, needed: Iterable[str]) -> str | None:
        """Why nodes of this kind cannot serve something that needs the capabilities
        ``needed`` (None when they can): derived from :meth:`capabilities`, so it goes away as
        soon as the kind gains them."""
        unknown = sorted(set(needed) - CAPABILITIES)
        if unknown:
            raise ValueError(f"unknown node capabilities {unknown}; known: {sorted(CAPABILITIES)}")
        missing = sorted(set(needed) - self.capabilities())
        if not missing:
            return None
        what = {OBSERVATIONS: "node observations (the testnet admin interface)",
                JOIN: "nodes joining a running testnet", BEHAVIOUR: "behaviour faults (admin "
                "interface)", CLOCK: "clock skew (admin interface)"}
        return (f"needs {', '.join(what.get(m, f'{m} faults') for m in missing)}, which "
                f"{self.name} nodes do not support (they support: "
                f"{', '.join(sorted(self.capabilities()))})")

    def refuse_fault(self, family: str, node: str, backend: str | None = None) -> None:
        """Raise :class:`NodeKindError` if faults of ``family`` cannot act on ``node`` (on
        ``backend``, when given)."""
        if not self.supports(family):
            raise NodeKindError(
                f"node {node} runs {self.name!r}, which does not support {family} faults "
                f"(supported: {', '.join(sorted(self.fault_families))}); "
                + ("they need the testnet admin interface, which only our python nodes have"
                   if family in (BEHAVIOUR, CLOCK) else "see docs/nodes.md"))

    @abc.abstractmethod
    def argv(self, ctx: NodeContext) -> list[str]:
        """The node's command line (prepares its data dir as needed): the program first, or,
        when :attr:`runs_python`, the arguments of the backend's interpreter
        (``-m nodes.snode …``). Never key material or tokens (``ps`` shows argv to every local
        user): those go through :meth:`env`, files or the seed."""

    def env(self, ctx: NodeContext) -> dict[str, str]:
        """Secrets the node reads from its environment (key seed, admin and join tokens); the
        backend passes them to the process or container, never on the command line."""
        return {}

    def proxies(self, node: NodeRecord) -> list[dict[str, Any]]:
        """The Toxiproxy proxies in front of ``node`` (Toxiproxy ``populate`` entries): by
        default one, its HTTPS port at the advertised address forwarding to its own address."""
        if not node.proxy:
            return []
        return [{"name": node.proxy, "listen": f"{node.public_ip}:{node.storage_port}",
                 "upstream": f"{node.bind_ip}:{node.storage_port}", "enabled": True}]

    def udp_relays(self, node: NodeRecord) -> list[dict[str, str]]:
        """UDP relays (``{"listen", "upstream"}``) the node needs next to its Toxiproxy proxies
        (Toxiproxy relays TCP only)."""
        return []

    @abc.abstractmethod
    async def probe(self, session: Any, state: NetworkState,
                    nodes: dict[str, tuple[NodeRecord, int | None]]) -> dict[str, NodeView]:
        """Ask each node (or the seed about it) what it knows, for readiness. ``nodes`` maps
        name -> (record, the seed's swarm assignment or None); ``session`` is an aiohttp
        session that does not verify TLS (nodes use self-signed certificates)."""
